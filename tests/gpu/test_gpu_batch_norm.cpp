// Batch norm on CUDA against the CPU ops: training forward (output, saved
// statistics, running statistics), backward (dx, dgamma, dbeta, accumulate),
// the fused relu and add+relu variants, evaluation mode, frozen parameters, a
// large multi-block case with a large mean, and SyncBN through a fake reducer.
// Training cases run twice: on cuDNN (where it accepts the configuration) and on
// the own kernels.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/batch_norm_cudnn.hpp"
#endif
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

using core::ops::BatchNormArgs;
using core::ops::BatchNormGrads;
using core::ops::BatchNormPath;
using core::ops::BatchNormSaved;

const char* path_name(BatchNormPath p) {
  switch (p) {
    case BatchNormPath::kernels:
      return "own kernels";
    case BatchNormPath::cudnn:
      return "cuDNN + epilogue";
    case BatchNormPath::cudnn_fused:
      return "cuDNN fused";
  }
  return "?";
}

// The switch exists in CUDA builds only (elsewhere these tests report skipped).
#ifdef COHORT_WITH_CUDA
bool cudnn_bn_enabled() {
  return core::ops::cuda::cudnn_batch_norm_enabled();
}
void set_cudnn_bn(bool use) {
  core::ops::cuda::set_cudnn_batch_norm_enabled(use);
}
int64_t cudnn_bn_backward_count() {
  return core::ops::cuda::cudnn_batch_norm_counts().backward;
}
#else
bool cudnn_bn_enabled() {
  return false;
}
void set_cudnn_bn(bool) {}
int64_t cudnn_bn_backward_count() {
  return 0;
}
#endif

// Sets whether training batch norm tries cuDNN, restoring the setting on exit.
class CudnnBatchNorm {
 public:
  explicit CudnnBatchNorm(bool use) : m_before(cudnn_bn_enabled()) { set_cudnn_bn(use); }
  ~CudnnBatchNorm() { set_cudnn_bn(m_before); }
  CudnnBatchNorm(const CudnnBatchNorm&) = delete;
  CudnnBatchNorm& operator=(const CudnnBatchNorm&) = delete;

 private:
  bool m_before;
};

// BN parameters and running statistics, one copy per device.
struct BnParams {
  Tensor gamma, beta, running_mean, running_var;
};

BnParams make_params(int64_t c, uint64_t seed) {
  return {random_cpu(Shape{c}, seed, 0.5, 1.5), random_cpu(Shape{c}, seed + 1, -0.5, 0.5),
          random_cpu(Shape{c}, seed + 2, -0.2, 0.2), random_cpu(Shape{c}, seed + 3, 0.5, 1.5)};
}

BnParams upload(const BnParams& p) {
  return {to_gpu(p.gamma), to_gpu(p.beta), to_gpu(p.running_mean), to_gpu(p.running_var)};
}

BnParams copy(const BnParams& p) {
  return {p.gamma.clone(), p.beta.clone(), p.running_mean.clone(), p.running_var.clone()};
}

constexpr Tol kStats{1e-5, 1e-6};      // f32 statistics from identical inputs
constexpr Tol kParamGrad{1e-4, 1e-5};  // sums over rows in another order

struct BnCase {
  Shape x;
  double lo, hi;  // input range (an offset range exercises the variance's precision)
  bool relu, residual;
  bool training;
  // The GPU's parameters, running statistics and parameter gradients as views at
  // an odd offset into larger buffers, like the graph's flat buffers (not 16-byte
  // aligned: the cuDNN path must copy them through aligned scratch and back).
  bool param_views = false;
};

// A copy of a CPU tensor on the GPU as a view one element into a larger buffer.
Tensor to_gpu_view(const Tensor& t) {
  Tensor buffer = Tensor::zeros(Shape{t.numel() + 1}, t.dtype(), gpu().device(), gpu().stream());
  Tensor view = buffer.flat(1, t.numel()).view(t.shape());
  view.copy_from(t, gpu().stream());
  return view;
}

void check_batch_norm_once(const BnCase& c, DType dtype, uint64_t seed) {
  SCOPED_TRACE(fmt::format("batch norm x {} in [{}, {}) {}{}{} {}", c.x.str(), c.lo, c.hi,
                           c.relu ? "relu " : "", c.residual ? "residual " : "",
                           c.training ? "train" : "eval", name_of(dtype)));
  const int64_t ch = c.x.dim(-1);
  const Tensor x = random_cpu(c.x, seed, c.lo, c.hi, dtype);
  const Tensor res = random_cpu(c.x, seed + 1, -1, 1, dtype);
  const Tensor dy = random_cpu(c.x, seed + 2, -1, 1, dtype);
  const BnParams p = make_params(ch, seed + 3);
  BnParams pc = copy(p), pg = upload(p);
  if (c.param_views)
    pg = {to_gpu_view(p.gamma), to_gpu_view(p.beta), to_gpu_view(p.running_mean),
          to_gpu_view(p.running_var)};

  BatchNormArgs args_cpu, args_gpu;
  args_cpu.momentum = args_gpu.momentum = 0.1;
  args_cpu.eps = args_gpu.eps = 1e-5;
  args_cpu.relu = args_gpu.relu = c.relu;
  if (c.residual) {
    args_cpu.residual = res;
    args_gpu.residual = to_gpu(res, dtype);
  }
  BatchNormSaved saved_cpu, saved_gpu;
  const Tensor xg = to_gpu(x, dtype);
  Tensor y_cpu, y_gpu;
  if (c.training) {
    y_cpu = core::ops::batch_norm_train(cpu(), x, pc.gamma, pc.beta, pc.running_mean,
                                        pc.running_var, args_cpu, saved_cpu);
    y_gpu = core::ops::batch_norm_train(gpu(), xg, pg.gamma, pg.beta, pg.running_mean,
                                        pg.running_var, args_gpu, saved_gpu);
  } else {
    y_cpu = core::ops::batch_norm_eval(cpu(), x, pc.gamma, pc.beta, pc.running_mean, pc.running_var,
                                       args_cpu, saved_cpu);
    y_gpu = core::ops::batch_norm_eval(gpu(), xg, pg.gamma, pg.beta, pg.running_mean,
                                       pg.running_var, args_gpu, saved_gpu);
  }
  SCOPED_TRACE(path_name(saved_gpu.path));
  if (!c.training || !cudnn_bn_enabled()) {
    EXPECT_EQ(saved_gpu.path, BatchNormPath::kernels);
  }
  // cuDNN's f32 forward differs from the CPU's by more than the own kernels do
  // when the mean is large against the spread (it normalises in another order):
  // H200, cuDNN 9.14, mean 30 and std 0.3: max |diff| 1.4e-5 on outputs of order 1.
  // A variance from E[x^2] - E[x]^2 in f32 would be off by far more (the saved
  // statistics below stay at the tight tolerance on every path).
  const bool cudnn_large_mean = saved_gpu.path != BatchNormPath::kernels && std::abs(c.lo) > 10;
  expect_near("forward y", y_gpu, y_cpu, tol_for(dtype, cudnn_large_mean ? kConvF32 : kTightF32));
  expect_near("saved.mean", saved_gpu.mean, saved_cpu.mean, kStats);
  expect_near("saved.invstd", saved_gpu.invstd, saved_cpu.invstd, kStats);
  expect_near("running_mean after the step", pg.running_mean, pc.running_mean, kStats);
  expect_near("running_var after the step", pg.running_var, pc.running_var, kStats);
  if (!c.training) {
    expect_equal("eval leaves running_mean alone", pg.running_mean, p.running_mean);
    expect_equal("eval leaves running_var alone", pg.running_var, p.running_var);
  }

  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    const Tensor dg0 = random_cpu(Shape{ch}, seed + 10, -1, 1);
    const Tensor db0 = random_cpu(Shape{ch}, seed + 11, -1, 1);
    Tensor dgamma_cpu = dg0.clone(), dbeta_cpu = db0.clone();
    Tensor dgamma_gpu = c.param_views ? to_gpu_view(dg0) : to_gpu(dg0);
    Tensor dbeta_gpu = c.param_views ? to_gpu_view(db0) : to_gpu(db0);
    const int64_t backward_before = cudnn_bn_backward_count();
    const BatchNormGrads g_cpu =
        core::ops::batch_norm_backward(cpu(), dy, x, y_cpu, pc.gamma, saved_cpu, args_cpu,
                                       c.training, dgamma_cpu, dbeta_cpu, accumulate);
    const BatchNormGrads g_gpu =
        core::ops::batch_norm_backward(gpu(), to_gpu(dy, dtype), xg, y_gpu, pg.gamma, saved_gpu,
                                       args_gpu, c.training, dgamma_gpu, dbeta_gpu, accumulate);
    // A backward after a cuDNN forward runs on cuDNN too (a decline would fall
    // back silently and leave the cuDNN backward untested).
    if (saved_gpu.path != BatchNormPath::kernels) {
      EXPECT_EQ(cudnn_bn_backward_count() - backward_before, 1)
          << "the backward of a cuDNN forward did not run on cuDNN";
    }
    // bf16/f16: y (and so the relu mask) was rounded on the GPU; compare dx loosely.
    expect_near("backward dx", g_gpu.dx, g_cpu.dx, tol_for(dtype, kConvF32));
    const Tol param_tol = dtype == DType::f32 ? kParamGrad : kLowPrecision;
    expect_near("backward dgamma", dgamma_gpu, dgamma_cpu, param_tol);
    expect_near("backward dbeta", dbeta_gpu, dbeta_cpu, param_tol);
    EXPECT_EQ(g_gpu.dresidual.defined(), c.residual);
    if (c.residual && g_gpu.dresidual.defined())
      expect_near("backward dresidual", g_gpu.dresidual, g_cpu.dresidual,
                  tol_for(dtype, kTightF32));
  }
}

void check_batch_norm(const BnCase& c, DType dtype, uint64_t seed) {
  for (bool use_cudnn : {true, false}) {
    SCOPED_TRACE(use_cudnn ? "cuDNN enabled" : "cuDNN disabled");
    CudnnBatchNorm setting(use_cudnn);
    check_batch_norm_once(c, dtype, seed);
  }
}

// Training takes the cuDNN path for the configurations ResNets use (an f32 and an
// f16 plain BN, and bf16 with add + ReLU, which prints the path it got), falls
// back to the own kernels with a SyncBN reducer, and a backward after a cuDNN
// forward reuses the forward's reserve space.
TEST(GpuBatchNorm, TrainingRunsOnCudnnWhereItCan) {
  CudnnBatchNorm setting(true);
  struct Config {
    DType dtype;
    bool relu, residual, must_use_cudnn;
  };
  for (const Config& cfg :
       {Config{DType::f32, false, false, true}, Config{DType::f16, false, false, true},
        Config{DType::f16, true, false, true}, Config{DType::f16, true, true, true},
        Config{DType::bf16, true, false, false}, Config{DType::bf16, true, true, false}}) {
    const Shape xs{4, 6, 6, 64};
    const Tensor x = to_gpu(random_cpu(xs, 1900, -1, 1, cfg.dtype), cfg.dtype);
    BnParams pg = upload(make_params(64, 1901));
    BatchNormArgs args;
    args.relu = cfg.relu;
    if (cfg.residual) args.residual = to_gpu(random_cpu(xs, 1902, -1, 1, cfg.dtype), cfg.dtype);
    BatchNormSaved saved;
    core::ops::batch_norm_train(gpu(), x, pg.gamma, pg.beta, pg.running_mean, pg.running_var, args,
                                saved);
    fmt::print("batch norm train {}{}{} -> {}\n", name_of(cfg.dtype), cfg.relu ? " relu" : "",
               cfg.residual ? " residual" : "", path_name(saved.path));
    if (cfg.must_use_cudnn) {
      EXPECT_NE(saved.path, BatchNormPath::kernels)
          << name_of(cfg.dtype) << (cfg.relu ? " relu" : "") << (cfg.residual ? " residual" : "");
    }
    // Its backward reuses the forward's reserve space, on cuDNN as well.
    const Tensor dy = to_gpu(random_cpu(xs, 1903, -1, 1, cfg.dtype), cfg.dtype);
    Tensor dgamma = Tensor::zeros(Shape{64}, DType::f32, gpu().device(), gpu().stream());
    Tensor dbeta = Tensor::zeros(Shape{64}, DType::f32, gpu().device(), gpu().stream());
    const int64_t before = cudnn_bn_backward_count();
    const Tensor y = core::ops::batch_norm_train(gpu(), x, pg.gamma, pg.beta, pg.running_mean,
                                                 pg.running_var, args, saved);
    core::ops::batch_norm_backward(gpu(), dy, x, y, pg.gamma, saved, args, true, dgamma, dbeta,
                                   false);
    gpu().synchronize();
    if (saved.path != BatchNormPath::kernels) {
      EXPECT_EQ(cudnn_bn_backward_count() - before, 1)
          << name_of(cfg.dtype) << (cfg.relu ? " relu" : "") << (cfg.residual ? " residual" : "")
          << ": backward fell back to the own kernels";
    }
  }
}

// Parameters, running statistics and parameter gradients are views into the
// graph's flat buffers in real training, not 16-byte aligned: the cuDNN path
// copies them through aligned scratch (and the running statistics back).
TEST(GpuBatchNorm, ParameterViewsIntoFlatBuffersMatchCpu) {
  for (DType d : float_dtypes()) {
    check_batch_norm({Shape{2, 4, 4, 64}, -1, 1, false, false, true, true}, d, 1500);
    check_batch_norm({Shape{2, 4, 4, 64}, -1, 1, true, true, true, true}, d, 1510);
  }
}

// A NaN in a channel makes that channel's statistics NaN; the fused ReLU (own or
// cuDNN's) must keep it NaN instead of clamping it to 0, as the CPU and PyTorch.
TEST(GpuBatchNorm, NanStaysVisibleOnEveryPath) {
  for (bool use_cudnn : {true, false}) {
    CudnnBatchNorm setting(use_cudnn);
    for (DType dtype : {DType::f32, DType::f16}) {
      for (bool residual : {false, true}) {
        SCOPED_TRACE(fmt::format("{} {} {}", use_cudnn ? "cuDNN enabled" : "cuDNN disabled",
                                 name_of(dtype), residual ? "residual" : "no residual"));
        const Shape xs{2, 4, 4, 8};
        std::vector<double> xv = random_cpu(xs, 1950, -1, 1).to_vector();
        xv[8 * 5 + 3] = std::nan("");  // channel 3
        const Tensor x = to_gpu(Tensor::from_vector(xv, xs, DType::f32), dtype);
        BnParams pg = upload(make_params(8, 1951));
        BatchNormArgs args;
        args.relu = true;
        if (residual) args.residual = to_gpu(random_cpu(xs, 1952, -1, 1, dtype), dtype);
        BatchNormSaved saved;
        const std::vector<double> y =
            to_cpu_f32(core::ops::batch_norm_train(gpu(), x, pg.gamma, pg.beta, pg.running_mean,
                                                   pg.running_var, args, saved))
                .to_vector();
        int nan_in_channel = 0, nan_elsewhere = 0;
        for (size_t i = 0; i < y.size(); ++i)
          (i % 8 == 3 ? nan_in_channel : nan_elsewhere) += std::isnan(y[i]) ? 1 : 0;
        EXPECT_EQ(nan_in_channel, 2 * 4 * 4) << path_name(saved.path);
        EXPECT_EQ(nan_elsewhere, 0) << path_name(saved.path);
      }
    }
  }
}

TEST(GpuBatchNorm, TrainMatchesCpu) {
  for (DType d : float_dtypes())
    check_batch_norm({Shape{2, 5, 4, 6}, -1, 1, false, false, true}, d, 1000);
}

TEST(GpuBatchNorm, TrainLargeMeanMatchesCpu) {
  // mean ~ 30, std ~ 0.3: E[x^2] - E[x]^2 in f32 would lose most digits.
  check_batch_norm({Shape{2, 6, 5, 7}, 29.5, 30.5, false, false, true}, DType::f32, 1100);
}

TEST(GpuBatchNorm, TrainReluMatchesCpu) {
  for (DType d : float_dtypes())
    check_batch_norm({Shape{2, 4, 3, 5}, -1, 1, true, false, true}, d, 1200);
}

TEST(GpuBatchNorm, TrainFusedAddReluMatchesCpu) {
  for (DType d : float_dtypes())
    check_batch_norm({Shape{3, 4, 4, 8}, -1, 1, true, true, true}, d, 1300);
}

TEST(GpuBatchNorm, TrainAddWithoutReluMatchesCpu) {
  check_batch_norm({Shape{2, 3, 3, 4}, -1, 1, false, true, true}, DType::f32, 1400);
}

TEST(GpuBatchNorm, EvalMatchesCpu) {
  for (DType d : float_dtypes())
    check_batch_norm({Shape{2, 5, 4, 6}, -1, 1, false, false, false}, d, 1500);
  check_batch_norm({Shape{2, 5, 4, 6}, -1, 1, true, true, false}, DType::f32, 1510);
}

// Many rows (several row blocks of partial sums) and channels spanning blocks.
TEST(GpuBatchNorm, LargeMultiBlockMatchesCpu) {
  check_batch_norm({Shape{4, 32, 32, 40}, 4, 6, true, true, true}, DType::f32, 1600);
  // 102400 rows: more rows than one grid covers, so every kernel loops.
  check_batch_norm({Shape{8, 128, 100, 8}, -1, 1, false, false, true}, DType::f32, 1610);
}

TEST(GpuBatchNorm, FrozenParametersNeedNoGradientTensors) {
  const Shape xs{2, 3, 3, 4};
  const Tensor x = random_cpu(xs, 1700), dy = random_cpu(xs, 1701);
  const BnParams p = make_params(4, 1702);
  BnParams pc = copy(p), pg = upload(p);
  BatchNormArgs args;
  BatchNormSaved sc, sg;
  const Tensor yc = core::ops::batch_norm_train(cpu(), x, pc.gamma, pc.beta, pc.running_mean,
                                                pc.running_var, args, sc);
  const Tensor yg = core::ops::batch_norm_train(gpu(), to_gpu(x), pg.gamma, pg.beta,
                                                pg.running_mean, pg.running_var, args, sg);
  Tensor none_c, none_c2, none_g, none_g2;
  const BatchNormGrads gc = core::ops::batch_norm_backward(cpu(), dy, x, yc, pc.gamma, sc, args,
                                                           true, none_c, none_c2, false);
  const BatchNormGrads gg = core::ops::batch_norm_backward(
      gpu(), to_gpu(dy), to_gpu(x), yg, pg.gamma, sg, args, true, none_g, none_g2, false);
  expect_near("dx with frozen gamma/beta", gg.dx, gc.dx, kConvF32);
}

// A fake 2-rank all-reduce: the other rank holds exactly the same data, so the
// sum over ranks is twice this rank's values. The result must equal plain BN on
// the batch concatenated with itself.
class DoublingReducer : public core::ops::StatsReducer {
 public:
  void all_reduce_sum(Context& ctx, Tensor& values) override {
    ++calls;
    last_numel = values.numel();
    values = core::ops::scale(ctx, values, 2.0);
  }
  int calls = 0;
  int64_t last_numel = 0;
};

Tensor twice(const Tensor& t) {  // [N, ...] -> [2N, ...] (the batch twice)
  Shape s = t.shape();
  s[0] = 2 * s[0];
  Tensor out = Tensor::empty(s, t.dtype());
  out.slice(0, t.dim(0)).copy_from(t);
  out.slice(t.dim(0), 2 * t.dim(0)).copy_from(t);
  return out;
}

TEST(GpuBatchNorm, SyncBatchNormWithReducerMatchesDoubledBatch) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(name_of(dtype));
    const Shape xs{2, 4, 3, 6};
    const int64_t ch = 6;
    const Tensor x = random_cpu(xs, 1800, 1, 3, dtype);
    const Tensor res = random_cpu(xs, 1801, -1, 1, dtype);
    const Tensor dy = random_cpu(xs, 1802, -1, 1, dtype);
    const BnParams p = make_params(ch, 1803);
    BnParams pc = copy(p), pg = upload(p);

    BatchNormArgs args_cpu, args_gpu;
    args_cpu.relu = args_gpu.relu = true;
    args_cpu.residual = twice(res);
    args_gpu.residual = to_gpu(res, dtype);
    DoublingReducer reducer;
    args_gpu.reducer = &reducer;

    BatchNormSaved sc, sg;
    const Tensor yc = core::ops::batch_norm_train(cpu(), twice(x), pc.gamma, pc.beta,
                                                  pc.running_mean, pc.running_var, args_cpu, sc);
    const Tensor yg = core::ops::batch_norm_train(gpu(), to_gpu(x, dtype), pg.gamma, pg.beta,
                                                  pg.running_mean, pg.running_var, args_gpu, sg);
    EXPECT_EQ(reducer.calls, 1) << "forward should all-reduce once";
    EXPECT_EQ(reducer.last_numel, 2 * ch + 1) << "forward packs [sum, sumsq, count]";
    expect_near("SyncBN y (first half of the doubled batch)", yg, yc.slice(0, xs[0]),
                tol_for(dtype, kTightF32));
    expect_near("SyncBN saved.mean", sg.mean, sc.mean, kStats);
    expect_near("SyncBN saved.invstd", sg.invstd, sc.invstd, {1e-4, 1e-5});
    expect_near("SyncBN running_mean", pg.running_mean, pc.running_mean, kStats);
    expect_near("SyncBN running_var (unbiased over the global count)", pg.running_var,
                pc.running_var, {1e-4, 1e-5});

    Tensor dgc = Tensor::zeros(Shape{ch}, DType::f32), dbc = Tensor::zeros(Shape{ch}, DType::f32);
    Tensor dgg = to_gpu(dgc), dbg = to_gpu(dbc);
    const BatchNormGrads gc = core::ops::batch_norm_backward(
        cpu(), twice(dy), twice(x), yc, pc.gamma, sc, args_cpu, true, dgc, dbc, false);
    const BatchNormGrads gg =
        core::ops::batch_norm_backward(gpu(), to_gpu(dy, dtype), to_gpu(x, dtype), yg, pg.gamma, sg,
                                       args_gpu, true, dgg, dbg, false);
    EXPECT_EQ(reducer.calls, 2) << "backward should all-reduce once";
    expect_near("SyncBN dx", gg.dx, gc.dx.slice(0, xs[0]), tol_for(dtype, kConvF32));
    expect_near("SyncBN dresidual", gg.dresidual, gc.dresidual.slice(0, xs[0]),
                tol_for(dtype, kTightF32));
    // Parameter gradients are this rank's share: half of the doubled batch's.
    const Tensor half_dg = core::ops::scale(cpu(), dgc, 0.5);
    const Tensor half_db = core::ops::scale(cpu(), dbc, 0.5);
    const Tol param_tol = dtype == DType::f32 ? kParamGrad : kLowPrecision;
    expect_near("SyncBN dgamma (local share)", dgg, half_dg, param_tol);
    expect_near("SyncBN dbeta (local share)", dbg, half_db, param_tol);
  }
}

}  // namespace
}  // namespace cohort::gputest
