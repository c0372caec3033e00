// PyTorch parity of the element-wise ops, casts, channel concat/split and the
// reductions, in f32 and f64. add, mul and scale have no backward function in
// ops.hpp: their gradients are the ops themselves (mul(dy, b), scale(dy, alpha)),
// which is what is compared with PyTorch's autograd here.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/golden.hpp"

namespace cohort::testing {
namespace {

namespace ops = core::ops;
using core::Context;

class ElementwiseParity : public DTypeParityTest {
 protected:
  Tolerance elementwise() const { return pick(tol::f32_elementwise, tol::f64); }
  Context ctx;
};

TEST_P(ElementwiseParity, Relu) {
  const GoldenCase c("relu");
  const Tensor x = c.tensor("x", dt()), dy = c.tensor("dy", dt());
  const Tensor y = ops::relu(ctx, x);
  expect_matches("relu y", y, c.tensor("y", DType::f64), dt(), elementwise());
  expect_matches("relu dx", ops::relu_backward(ctx, dy, y), c.tensor("dx", DType::f64), dt(),
                 elementwise());
}

TEST_P(ElementwiseParity, Add) {
  const GoldenCase c("add");
  expect_matches("add y", ops::add(ctx, c.tensor("a", dt()), c.tensor("b", dt())),
                 c.tensor("y", DType::f64), dt(), elementwise());
}

TEST_P(ElementwiseParity, MulAndItsGradients) {
  const GoldenCase c("mul");
  const Tensor a = c.tensor("a", dt()), b = c.tensor("b", dt()), dy = c.tensor("dy", dt());
  expect_matches("mul y", ops::mul(ctx, a, b), c.tensor("y", DType::f64), dt(), elementwise());
  expect_matches("mul da = dy*b", ops::mul(ctx, dy, b), c.tensor("da", DType::f64), dt(),
                 elementwise());
  expect_matches("mul db = dy*a", ops::mul(ctx, dy, a), c.tensor("db", DType::f64), dt(),
                 elementwise());
}

TEST_P(ElementwiseParity, ScaleAndItsGradient) {
  const GoldenCase c("scale");
  const double alpha = c.attr("alpha");
  expect_matches("scale y", ops::scale(ctx, c.tensor("x", dt()), alpha), c.tensor("y", DType::f64),
                 dt(), elementwise());
  expect_matches("scale dx", ops::scale(ctx, c.tensor("dy", dt()), alpha),
                 c.tensor("dx", DType::f64), dt(), elementwise());
}

TEST_P(ElementwiseParity, AddInplace) {
  const GoldenCase c("add_inplace");
  Tensor acc = c.tensor("acc", dt());
  const Tensor before = acc;
  ops::add_inplace(ctx, acc, c.tensor("x", dt()));
  EXPECT_TRUE(acc.shares_storage_with(before)) << "add_inplace replaced the accumulator";
  expect_matches("add_inplace", acc, c.tensor("y", DType::f64), dt(), elementwise());
}

// Casts to the 16-bit storage types round to nearest even like PyTorch's
// .bfloat16() / .half(), subnormals and exact ties included. Exact comparison.
TEST_P(ElementwiseParity, CastTo16BitAndBack) {
  const GoldenCase c("cast");
  const Tensor x = c.tensor("x", dt());
  const Tensor bf16 = ops::cast(ctx, x, DType::bf16);
  EXPECT_EQ(bf16.dtype(), DType::bf16);
  expect_matches("cast to bf16 and back", ops::cast(ctx, bf16, dt()),
                 c.tensor("to_bf16", DType::f64), dt(), {0, 0});
  const Tensor f16 = ops::cast(ctx, x, DType::f16);
  EXPECT_EQ(f16.dtype(), DType::f16);
  expect_matches("cast to f16 and back", ops::cast(ctx, f16, dt()), c.tensor("to_f16", DType::f64),
                 dt(), {0, 0});
  // Between f32 and f64 (the inputs are exact in both).
  const DType other = dt() == DType::f32 ? DType::f64 : DType::f32;
  expect_matches("cast to the other float type", ops::cast(ctx, x, other),
                 c.tensor("x", DType::f64), other, {0, 0});
}

TEST_P(ElementwiseParity, Fill) {
  Tensor t = Tensor::zeros({3, 5}, dt());
  ops::fill(ctx, t, 0.1);
  // PyTorch's torch.full((3, 5), 0.1, dtype) holds 0.1 rounded to the dtype.
  const double expected = dt() == DType::f32 ? static_cast<double>(0.1f) : 0.1;
  expect_matches("fill", t, Tensor::full({3, 5}, expected, DType::f64), dt(), {0, 0});
}

TEST_P(ElementwiseParity, ConcatAndSplitChannels) {
  const GoldenCase c("concat");
  const int count = c.attr_int("count");
  std::vector<Tensor> xs;
  std::vector<int64_t> channels;
  for (int i = 0; i < count; ++i) {
    xs.push_back(c.tensor(fmt::format("x{}", i), dt()));
    channels.push_back(xs.back().dim(-1));
  }
  expect_matches("concat y", ops::concat_channels(ctx, xs), c.tensor("y", DType::f64), dt(),
                 {0, 0});
  const std::vector<Tensor> dxs = ops::split_channels(ctx, c.tensor("dy", dt()), channels);
  ASSERT_EQ(dxs.size(), static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const std::string name = fmt::format("dx{}", i);
    expect_matches("split " + name, dxs[static_cast<size_t>(i)], c.tensor(name, DType::f64), dt(),
                   {0, 0});
  }
}

TEST_P(ElementwiseParity, SumAndMean) {
  const GoldenCase c("reduce");
  const Tensor x = c.tensor("x", dt()), dloss = c.tensor("dloss", dt());
  // sum/mean are f32 for f32 input and f64 for f64 input (ops.hpp).
  const Tolerance reduction = pick(tol::f32, tol::f64);
  expect_matches("sum", ops::sum(ctx, x), c.tensor("sum", DType::f64), dt(), reduction);
  expect_matches("mean", ops::mean(ctx, x), c.tensor("mean", DType::f64), dt(), reduction);
  expect_matches("sum dx", ops::sum_backward(ctx, dloss, x.shape(), dt()),
                 c.tensor("dx_sum", DType::f64), dt(), elementwise());
  expect_matches("mean dx", ops::mean_backward(ctx, dloss, x.shape(), dt()),
                 c.tensor("dx_mean", DType::f64), dt(), elementwise());
}

// torch.argmax over the channel dim; ties go to the first index.
TEST_P(ElementwiseParity, ArgmaxChannels) {
  const GoldenCase c("argmax");
  expect_matches("argmax", ops::argmax_channels(ctx, c.tensor("x", dt())),
                 c.tensor("index", DType::f64), DType::i32, {0, 0});
}

COHORT_PARITY_DTYPES(ElementwiseParity);

}  // namespace
}  // namespace cohort::testing
