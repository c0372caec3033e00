// Element-wise CUDA ops against the CPU ops: relu (+backward), add, mul, scale,
// add_inplace, cast (every dtype pair), fill, concat/split, and dropout masks
// that must be bit-for-bit the CPU's.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/ops/ops.hpp"
#include "core/ops/philox.hpp"
#include "tests/gpu/test_gpu_common.hpp"

namespace cohort::gputest {
namespace {

const Shape kShape{3, 5, 7, 9};  // 945 elements, several blocks' worth with odd sizes

TEST(GpuElementwise, ReluAndBackwardMatchCpu) {
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(name_of(d));
    const Tensor x = random_cpu(kShape, 1, -1, 1, d);
    const Tensor dy = random_cpu(kShape, 2, -1, 1, d);
    const Tensor y_cpu = core::ops::relu(cpu(), x);
    const Tensor y_gpu = core::ops::relu(gpu(), to_gpu(x, d));
    expect_equal("relu", y_gpu, y_cpu);  // exact: no arithmetic
    expect_equal("relu_backward", core::ops::relu_backward(gpu(), to_gpu(dy, d), y_gpu),
                 core::ops::relu_backward(cpu(), dy, y_cpu));
  }
}

TEST(GpuElementwise, ReluKeepsNaN) {
  const Tensor x = Tensor::from_vector({-1.0, NAN, 2.0, 0.0}, Shape{4}, DType::f32);
  const std::vector<double> y = values(core::ops::relu(gpu(), to_gpu(x)));
  EXPECT_EQ(y[0], 0.0);
  EXPECT_TRUE(std::isnan(y[1])) << "relu(NaN) must stay NaN, as on the CPU and in PyTorch";
  EXPECT_EQ(y[2], 2.0);
  EXPECT_EQ(y[3], 0.0);
}

TEST(GpuElementwise, AddMulScaleMatchCpu) {
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(name_of(d));
    const Tensor a = random_cpu(kShape, 3, -2, 2, d);
    const Tensor b = random_cpu(kShape, 4, -2, 2, d);
    const Tol tol = tol_for(d, kTightF32);
    expect_near("add", core::ops::add(gpu(), to_gpu(a, d), to_gpu(b, d)),
                core::ops::add(cpu(), a, b), tol);
    expect_near("mul", core::ops::mul(gpu(), to_gpu(a, d), to_gpu(b, d)),
                core::ops::mul(cpu(), a, b), tol);
    expect_near("scale", core::ops::scale(gpu(), to_gpu(a, d), -0.37),
                core::ops::scale(cpu(), a, -0.37), tol);
    Tensor acc_cpu = a.clone();
    Tensor acc_gpu = to_gpu(a, d);
    core::ops::add_inplace(cpu(), acc_cpu, b);
    core::ops::add_inplace(gpu(), acc_gpu, to_gpu(b, d));
    expect_near("add_inplace", acc_gpu, acc_cpu, tol);
  }
}

TEST(GpuElementwise, CastEveryPairMatchesCpu) {
  const std::vector<DType> types{DType::f32, DType::bf16, DType::f16,
                                 DType::i32, DType::i64,  DType::u8};
  // Values exact in every type (small non-negative integers plus halves for the floats).
  std::vector<double> ints, halves;
  for (int i = 0; i < 300; ++i) {
    ints.push_back(i % 200);
    halves.push_back((i % 200) * 0.5 + 0.25 * (i % 3));
  }
  for (DType from : types) {
    for (DType to : types) {
      SCOPED_TRACE(fmt::format("cast {} -> {}", core::dtype_name(from), core::dtype_name(to)));
      const bool float_src = core::is_floating(from);
      const Tensor src = Tensor::from_vector(float_src ? halves : ints, Shape{300}, from);
      const Tensor expected = core::ops::cast(cpu(), src, to);
      const Tensor got = core::ops::cast(gpu(), src.to(Device::cuda(0), gpu().stream()), to);
      EXPECT_EQ(got.dtype(), to);
      expect_equal("cast", got, expected);
    }
  }
}

TEST(GpuElementwise, CastRoundsToNearestEvenLikeCpu) {
  // f32 -> bf16/f16 rounding of random values (not exactly representable) must
  // give the same bits as the host conversion.
  const Tensor x = random_cpu(Shape{4096}, 5, -100, 100);
  for (DType to : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(name_of(to));
    expect_equal("f32 rounding", core::ops::cast(gpu(), to_gpu(x), to),
                 core::ops::cast(cpu(), x, to));
  }
}

TEST(GpuElementwise, FillMatchesCpu) {
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
    SCOPED_TRACE(core::dtype_name(d));
    Tensor c = Tensor::zeros(Shape{2, 3, 37}, d);
    Tensor g = Tensor::zeros(Shape{2, 3, 37}, d, Device::cuda(0), gpu().stream());
    const double value = core::is_floating(d) ? 1.2345678 : 42.0;
    core::ops::fill(cpu(), c, value);
    core::ops::fill(gpu(), g, value);
    expect_equal("fill", g, c);
  }
  // A view: only its elements change.
  Tensor flat = Tensor::zeros(Shape{10}, DType::f32, Device::cuda(0), gpu().stream());
  Tensor view = flat.flat(3, 4);
  core::ops::fill(gpu(), view, -2.5);
  const std::vector<double> v = values(flat);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(v[i], (i >= 3 && i < 7) ? -2.5 : 0.0) << "element " << i;
}

TEST(GpuElementwise, ConcatAndSplitMatchCpu) {
  for (DType d : {DType::f32, DType::bf16, DType::u8}) {
    SCOPED_TRACE(core::dtype_name(d));
    std::vector<Tensor> cpu_in, gpu_in;
    uint64_t seed = 10;
    for (int64_t c : {2, 5, 3}) {
      Tensor t = d == DType::u8 ? random_cpu(Shape{2, 3, 4, c}, ++seed, 0, 200).cast_cpu(DType::u8)
                                : random_cpu(Shape{2, 3, 4, c}, ++seed, -1, 1, d);
      cpu_in.push_back(t);
      gpu_in.push_back(to_gpu(t, d));
    }
    const Tensor cat_cpu = core::ops::concat_channels(cpu(), cpu_in);
    const Tensor cat_gpu = core::ops::concat_channels(gpu(), gpu_in);
    EXPECT_EQ(cat_gpu.shape(), (Shape{2, 3, 4, 10}));
    expect_equal("concat_channels", cat_gpu, cat_cpu);
    const std::vector<Tensor> parts_gpu = core::ops::split_channels(gpu(), cat_gpu, {2, 5, 3});
    ASSERT_EQ(parts_gpu.size(), 3u);
    for (size_t i = 0; i < 3; ++i)
      expect_equal(fmt::format("split_channels part {}", i), parts_gpu[i], cpu_in[i]);
  }
}

TEST(GpuDropout, MaskIsBitwiseTheCpus) {
  for (DType d : float_dtypes()) {
    SCOPED_TRACE(name_of(d));
    const Shape s{4, 9, 11, 13};                      // 5148 elements
    const Tensor x = random_cpu(s, 20, 0.5, 1.5, d);  // nonzero: zeros in y are the mask
    for (double p : {0.1, 0.5, 0.9}) {
      SCOPED_TRACE(fmt::format("p = {}", p));
      const uint64_t offset = 12345;
      cpu().set_seed(777, 0);
      gpu().set_seed(777, 0);
      const Tensor y_cpu = core::ops::dropout(cpu(), x, p, offset);
      const Tensor y_gpu = core::ops::dropout(gpu(), to_gpu(x, d), p, offset);
      const std::vector<double> yc = values(y_cpu), yg = values(y_gpu);
      int64_t mask_diff = 0, kept = 0, first = -1;
      for (size_t i = 0; i < yc.size(); ++i) {
        kept += yc[i] != 0;
        if ((yc[i] != 0) != (yg[i] != 0)) {
          if (first < 0) first = static_cast<int64_t>(i);
          ++mask_diff;
        }
        // Both devices also agree with the shared Philox function.
        const bool keep = core::dropout_keep(777, offset, i, static_cast<float>(p));
        if (keep != (yg[i] != 0)) ++mask_diff;
      }
      EXPECT_EQ(mask_diff, 0) << "masks differ, first at element " << first;
      const double rate = static_cast<double>(kept) / static_cast<double>(yc.size());
      EXPECT_NEAR(rate, 1 - p, 0.03) << "keep rate";
      if (d == DType::f32)
        expect_equal("dropout values (f32: the same float multiply)", y_gpu, y_cpu);
      else
        expect_near("dropout values", y_gpu, y_cpu, kLowPrecision);

      const Tensor dy = random_cpu(s, 21, -1, 1, d);
      expect_near("dropout_backward", core::ops::dropout_backward(gpu(), to_gpu(dy, d), p, offset),
                  core::ops::dropout_backward(cpu(), dy, p, offset), tol_for(d, kTightF32));
    }
  }
}

TEST(GpuDropout, OffsetAndSeedChangeTheMask) {
  const Tensor x = to_gpu(random_cpu(Shape{4096}, 30, 0.5, 1.5));
  gpu().set_seed(1, 0);
  const std::vector<double> a = values(core::ops::dropout(gpu(), x, 0.5, 0));
  const std::vector<double> b = values(core::ops::dropout(gpu(), x, 0.5, 4096));
  gpu().set_seed(2, 0);
  const std::vector<double> c = values(core::ops::dropout(gpu(), x, 0.5, 0));
  int ab = 0, ac = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += (a[i] != 0) != (b[i] != 0);
    ac += (a[i] != 0) != (c[i] != 0);
  }
  EXPECT_GT(ab, 1000) << "a different offset must give a different mask";
  EXPECT_GT(ac, 1000) << "a different seed must give a different mask";
}

TEST(GpuDropout, ZeroAndOneProbability) {
  const Tensor x = random_cpu(Shape{1000}, 31, 0.5, 1.5);
  expect_equal("p = 0 is the identity", core::ops::dropout(gpu(), to_gpu(x), 0.0, 0), x);
  const std::vector<double> y = values(core::ops::dropout(gpu(), to_gpu(x), 1.0, 0));
  for (double v : y)
    ASSERT_EQ(v, 0.0) << "p = 1 drops everything (and makes no NaN)";
}

}  // namespace
}  // namespace cohort::gputest
