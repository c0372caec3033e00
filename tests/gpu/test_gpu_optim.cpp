// CUDA optimizer and mixed-precision kernels against a simple host reference
// written here (PyTorch's formulas, the order of kernels.hpp): SGD (momentum,
// dampening, nesterov, first step, per-segment lr/weight decay, gaps between
// segments), AdamW over three steps, the `skip` device flag and the device count
// of applied steps, tables longer than one launch's 64 segments,
// unscale_and_check, sum_of_squares, scale_by, cast_into.
// CUDA-only: the optim::cuda entry points exist only in CUDA builds.
#ifdef COHORT_WITH_CUDA
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/optim/kernels_cuda.hpp"
#include "core/optim/loss_scaler.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using core::optim::AdamWConfig;
using core::optim::SgdConfig;
using core::optim::UpdateSegment;
namespace gpu_optim = core::optim::cuda;

constexpr Tol kOptim{1e-5, 1e-6};
// The base learning rate the kernels read on the device; segments scale it.
constexpr float kBaseLr = 2.0f;

Tensor base_lr() {
  return to_gpu(Tensor::from_vector({kBaseLr}, Shape{1}, DType::f32));
}

// A segment's learning rate as the kernels form it (f32 product).
double lr_of(const UpdateSegment& s) {
  return static_cast<double>(kBaseLr * s.lr_scale);
}

// Segments with gaps (elements outside every segment must not change).
std::vector<UpdateSegment> segments_with_gaps(int64_t n, int count) {
  std::vector<UpdateSegment> segs;
  const int64_t step = n / count;
  for (int i = 0; i < count; ++i) {
    UpdateSegment s;
    s.offset = i * step + 1;
    s.count = std::max<int64_t>(step - 3, 0);
    s.lr_scale = 0.005f * static_cast<float>(1 + i % 5);
    s.weight_decay = (i % 2) ? 0.0f : 1e-2f;
    segs.push_back(s);
  }
  return segs;
}

void host_sgd(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& buf,
              const std::vector<UpdateSegment>& segs, const SgdConfig& c, bool first) {
  for (const UpdateSegment& s : segs)
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      const size_t k = static_cast<size_t>(i);
      double d = g[k] + s.weight_decay * p[k];
      if (c.momentum != 0) {
        buf[k] = first ? d : c.momentum * buf[k] + (1.0 - c.dampening) * d;
        d = c.nesterov ? d + c.momentum * buf[k] : buf[k];
      }
      p[k] -= lr_of(s) * d;
    }
}

void host_adamw(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m,
                std::vector<double>& v, const std::vector<UpdateSegment>& segs,
                const AdamWConfig& c, int64_t step) {
  const double bc1 = 1 - std::pow(c.beta1, step), bc2 = 1 - std::pow(c.beta2, step);
  for (const UpdateSegment& s : segs)
    for (int64_t i = s.offset; i < s.offset + s.count; ++i) {
      const size_t k = static_cast<size_t>(i);
      p[k] *= 1 - lr_of(s) * s.weight_decay;
      m[k] = c.beta1 * m[k] + (1 - c.beta1) * g[k];
      v[k] = c.beta2 * v[k] + (1 - c.beta2) * g[k] * g[k];
      p[k] -= lr_of(s) * (m[k] / bc1) / (std::sqrt(v[k] / bc2) + c.eps);
    }
}

Tensor from_host(const std::vector<double>& v) {
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}, DType::f32);
}

// The device count of updates applied before the next one (kernels.hpp).
Tensor applied_count(int64_t n) {
  return to_gpu(Tensor::from_vector({static_cast<double>(n)}, Shape{1}, DType::i64));
}

void check_sgd(const SgdConfig& c, int segment_count, const std::string& name) {
  SCOPED_TRACE(name);
  const int64_t n = 5000;
  const std::vector<UpdateSegment> segs = segments_with_gaps(n, segment_count);
  std::vector<double> p = random_cpu(Shape{n}, 1).to_vector();
  std::vector<double> buf = random_cpu(Shape{n}, 2).to_vector();
  Tensor pg = to_gpu(from_host(p)), bg = to_gpu(from_host(buf));
  for (int step = 0; step < 3; ++step) {
    const std::vector<double> g = random_cpu(Shape{n}, 10 + step).to_vector();
    host_sgd(p, g, buf, segs, c, step == 0);
    gpu_optim::sgd_step(gpu(), pg, to_gpu(from_host(g)), bg, segs, base_lr(), c,
                        applied_count(step), Tensor());
  }
  expect_near("sgd params", pg, from_host(p), kOptim);
  if (c.momentum != 0) expect_near("sgd momentum buffer", bg, from_host(buf), kOptim);
}

TEST(GpuOptim, SgdMatchesHostReference) {
  check_sgd({0.0f, 0.0f, false}, 3, "plain SGD");
  check_sgd({0.9f, 0.0f, false}, 3, "momentum");
  check_sgd({0.9f, 0.1f, false}, 5, "momentum + dampening");
  check_sgd({0.9f, 0.0f, true}, 4, "nesterov");
  check_sgd({0.9f, 0.0f, false}, 150, "150 segments (3 launches)");
}

TEST(GpuOptim, SgdWithoutMomentumNeedsNoBuffer) {
  const int64_t n = 100;
  const std::vector<UpdateSegment> segs = segments_with_gaps(n, 2);
  std::vector<double> p = random_cpu(Shape{n}, 3).to_vector(), none;
  const std::vector<double> g = random_cpu(Shape{n}, 4).to_vector();
  Tensor pg = to_gpu(from_host(p)), undefined;
  gpu_optim::sgd_step(gpu(), pg, to_gpu(from_host(g)), undefined, segs, base_lr(), SgdConfig{},
                      applied_count(0), Tensor());
  host_sgd(p, g, none, segs, SgdConfig{}, true);
  expect_near("sgd without momentum", pg, from_host(p), kOptim);
}

void check_adamw(int segment_count) {
  SCOPED_TRACE(fmt::format("{} segments", segment_count));
  const int64_t n = 4000;
  const std::vector<UpdateSegment> segs = segments_with_gaps(n, segment_count);
  const AdamWConfig c;
  std::vector<double> p = random_cpu(Shape{n}, 20).to_vector();
  std::vector<double> m(static_cast<size_t>(n), 0.0), v(static_cast<size_t>(n), 0.0);
  Tensor pg = to_gpu(from_host(p)), mg = to_gpu(from_host(m)), vg = to_gpu(from_host(v));
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<double> g = random_cpu(Shape{n}, 30 + step, -0.1, 0.1).to_vector();
    host_adamw(p, g, m, v, segs, c, step);
    gpu_optim::adamw_step(gpu(), pg, to_gpu(from_host(g)), mg, vg, segs, base_lr(), c,
                          applied_count(step - 1), Tensor());
  }
  expect_near("adamw params", pg, from_host(p), {2e-5, 1e-6});
  expect_near("adamw exp_avg", mg, from_host(m), kOptim);
  expect_near("adamw exp_avg_sq", vg, from_host(v), kOptim);
}

TEST(GpuOptim, AdamWMatchesHostReference) {
  check_adamw(3);
  check_adamw(64);
  check_adamw(65);  // one more than a launch holds
}

TEST(GpuOptim, SkipFlagMakesStepsNoOps) {
  const int64_t n = 1000;
  const std::vector<UpdateSegment> segs = segments_with_gaps(n, 3);
  const Tensor p0 = random_cpu(Shape{n}, 40), g = to_gpu(random_cpu(Shape{n}, 41));
  const Tensor skip = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  const Tensor no_skip = to_gpu(Tensor::from_vector({0.0}, Shape{1}, DType::f32));
  Tensor pg = to_gpu(p0), buf = to_gpu(random_cpu(Shape{n}, 42));
  const Tensor buf0 = to_cpu_f32(buf);
  gpu_optim::sgd_step(gpu(), pg, g, buf, segs, base_lr(), {0.9f, 0.0f, false}, applied_count(1),
                      skip);
  expect_equal("sgd params with skip = 1", pg, p0);
  expect_equal("sgd momentum with skip = 1", buf, buf0);
  Tensor m = to_gpu(Tensor::zeros(Shape{n}, DType::f32)),
         v = to_gpu(Tensor::zeros(Shape{n}, DType::f32));
  gpu_optim::adamw_step(gpu(), pg, g, m, v, segs, base_lr(), AdamWConfig{}, applied_count(0), skip);
  expect_equal("adamw params with skip = 1", pg, p0);
  expect_equal("adamw exp_avg with skip = 1", m, Tensor::zeros(Shape{n}, DType::f32));
  gpu_optim::adamw_step(gpu(), pg, g, m, v, segs, base_lr(), AdamWConfig{}, applied_count(0),
                        no_skip);
  int changed = 0;
  const std::vector<double> a = values(pg), b = p0.to_vector();
  for (size_t i = 0; i < a.size(); ++i)
    changed += a[i] != b[i];
  EXPECT_GT(changed, 900) << "skip = 0 must update";
}

// The applied-step count moves on the device, and only for steps not skipped.
TEST(GpuOptim, SkippedStepsAreNotCounted) {
  const Tensor skip = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  const Tensor no_skip = to_gpu(Tensor::from_vector({0.0}, Shape{1}, DType::f32));
  Tensor applied = applied_count(0);
  gpu_optim::count_applied_step(gpu(), applied, skip);
  gpu_optim::count_applied_step(gpu(), applied, no_skip);
  gpu_optim::count_applied_step(gpu(), applied, Tensor());
  gpu_optim::count_applied_step(gpu(), applied, skip);
  EXPECT_EQ(applied.item(gpu().stream()), 2.0);
}

TEST(GpuOptim, UnscaleAndCheck) {
  const int64_t n = 10000;
  const Tensor g0 = random_cpu(Shape{n}, 50, -100, 100);
  const Tensor inv = to_gpu(Tensor::from_vector({0.125}, Shape{1}, DType::f32));
  Tensor found = to_gpu(Tensor::zeros(Shape{1}, DType::f32));
  Tensor g = to_gpu(g0);
  gpu_optim::unscale_and_check(gpu(), g, inv, found);
  std::vector<double> expected = g0.to_vector();
  for (double& e : expected)
    e *= 0.125;
  expect_equal("unscaled grads (exact: power of two)", g, from_host(expected));
  EXPECT_EQ(values(found)[0], 0.0) << "finite grads must leave the flag alone";

  for (double bad : {static_cast<double>(INFINITY), static_cast<double>(NAN)}) {
    std::vector<double> gv = g0.to_vector();
    gv[7777] = bad;
    Tensor gb = to_gpu(from_host(gv));
    Tensor f = to_gpu(Tensor::zeros(Shape{1}, DType::f32));
    gpu_optim::unscale_and_check(gpu(), gb, inv, f);
    EXPECT_EQ(values(f)[0], 1.0) << "non-finite value " << bad << " not flagged";
  }
  // A set flag stays set even when this buffer is finite (several buffers share it).
  Tensor f = to_gpu(Tensor::from_vector({1.0}, Shape{1}, DType::f32));
  Tensor g2 = to_gpu(g0);
  gpu_optim::unscale_and_check(gpu(), g2, inv, f);
  EXPECT_EQ(values(f)[0], 1.0);
}

// The loss scaler's update runs on the device and follows the same rule as the
// CPU: back off on overflow, grow after the interval, seed/inverse/flag in step.
TEST(GpuOptim, LossScalerUpdatesOnTheDevice) {
  core::optim::LossScalerConfig c;
  c.enabled = true;
  c.init_scale = 1024;
  c.growth_interval = 2;
  core::optim::LossScaler scaler(c, gpu().device());
  core::optim::LossScaler host(c, Device::cpu());
  Context host_ctx;
  const std::vector<std::vector<double>> steps = {{1.0, 2.0}, {INFINITY, 1.0}, {1.0}, {1.0},
                                                  {NAN},      {3.0},           {3.0}};
  for (const std::vector<double>& values_of_step : steps) {
    Tensor g = to_gpu(from_host(values_of_step));
    Tensor gh = from_host(values_of_step);
    scaler.unscale(gpu(), g);
    host.unscale(host_ctx, gh);
    scaler.update(gpu());
    host.update(host_ctx);
    const core::optim::LossScalerState a = scaler.state(gpu()), b = host.state(host_ctx);
    EXPECT_EQ(a.scale, b.scale);
    EXPECT_EQ(a.growth_tracker, b.growth_tracker);
    EXPECT_EQ(a.skipped_steps, b.skipped_steps);
    EXPECT_EQ(scaler.last_step_skipped(gpu()), host.last_step_skipped(host_ctx));
    EXPECT_EQ(values(scaler.seed())[0], a.scale);
    EXPECT_EQ(values(scaler.skip_flag())[0], 0.0);
  }
  EXPECT_EQ(scaler.state(gpu()).skipped_steps, 2);
}

TEST(GpuOptim, SumOfSquaresAndScaleBy) {
  const int64_t n = 123457;
  const Tensor x = random_cpu(Shape{n}, 60);
  double exact = 0;
  for (double v : x.to_vector())
    exact += v * v;
  const Tensor xs = to_gpu(x);
  const Tensor s = gpu_optim::sum_of_squares(gpu(), xs);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_NEAR(values(s)[0], exact, exact * 1e-6);

  Tensor y = to_gpu(x);
  gpu_optim::scale_by(gpu(), y, to_gpu(Tensor::from_vector({0.5}, Shape{1}, DType::f32)));
  std::vector<double> half = x.to_vector();
  for (double& v : half)
    v *= 0.5;
  expect_equal("scale_by 0.5", y, from_host(half));
}

// Clipping's factor is computed on the device: max_norm / (norm + 1e-6) above the
// limit, 1 below it and for a NaN norm.
TEST(GpuOptim, ClipFactorOnTheDevice) {
  for (double sum_squares : {25.0, 0.25, static_cast<double>(NAN)}) {
    const Tensor ss = to_gpu(Tensor::from_vector({sum_squares}, Shape{1}, DType::f32));
    Tensor norm = to_gpu(Tensor::zeros(Shape{1}, DType::f32));
    Tensor factor = to_gpu(Tensor::zeros(Shape{1}, DType::f32));
    gpu_optim::clip_factor(gpu(), ss, 1.0, norm, factor);
    if (std::isnan(sum_squares)) {
      EXPECT_TRUE(std::isnan(values(norm)[0]));
      EXPECT_EQ(values(factor)[0], 1.0);
      continue;
    }
    const double n = std::sqrt(sum_squares);
    EXPECT_NEAR(values(norm)[0], n, 1e-6);
    EXPECT_NEAR(values(factor)[0], n > 1.0 ? 1.0 / (n + 1e-6) : 1.0, 1e-6);
  }
}

TEST(GpuOptim, CastIntoRoundTrips) {
  const Tensor master = random_cpu(Shape{3001}, 70, -10, 10);
  for (DType d : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(name_of(d));
    Tensor compute = Tensor::empty(Shape{3001}, d, Device::cuda(0), gpu().stream());
    gpu_optim::cast_into(gpu(), compute, to_gpu(master));
    expect_equal("f32 -> low precision (round to nearest even)", compute, master.cast_cpu(d));
    Tensor back = Tensor::empty(Shape{3001}, DType::f32, Device::cuda(0), gpu().stream());
    gpu_optim::cast_into(gpu(), back, compute);
    expect_equal("low precision -> f32 (exact)", back, master.cast_cpu(d).cast_cpu(DType::f32));
  }
  Tensor same = Tensor::empty(Shape{3001}, DType::f32, Device::cuda(0), gpu().stream());
  gpu_optim::cast_into(gpu(), same, to_gpu(master));
  expect_equal("f32 -> f32 copy", same, master);
}

}  // namespace
}  // namespace cohort::gputest
#endif  // COHORT_WITH_CUDA
