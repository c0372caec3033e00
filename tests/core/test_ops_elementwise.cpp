// Element-wise ops on the CPU: values, relu's gradient in double, casts across
// dtypes, fill, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_error;
using testing::expect_gradient;
using testing::random_tensor;

TEST(ElementwiseRelu, ValuesAndBackwardMask) {
  Context ctx;
  const Tensor x = Tensor::from_vector({-2, -0.5, 0, 0.5, 3, -1}, Shape{2, 3});
  const Tensor y = ops::relu(ctx, x);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{0, 0, 0, 0.5, 3, 0}));
  EXPECT_EQ(y.dtype(), DType::f32);
  const Tensor dy = Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  // No gradient where the output is 0 (including x == 0).
  EXPECT_EQ(ops::relu_backward(ctx, dy, y).to_vector(), (std::vector<double>{0, 0, 0, 4, 5, 0}));
  EXPECT_FALSE(y.shares_storage_with(x));
}

TEST(ElementwiseRelu, GradientInDouble) {
  Context ctx;
  Tensor x = random_tensor(Shape{3, 4, 5}, 1);
  const Tensor r = random_tensor(x.shape(), 2);
  const Tensor analytic = ops::relu_backward(ctx, r, ops::relu(ctx, x));
  expect_gradient(
      "relu", [&] { return ops::relu(ctx, x); }, x, r, analytic);
}

TEST(ElementwiseArithmetic, AddMulScaleAndAddInplace) {
  Context ctx;
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor a = Tensor::from_vector({1, 2, 3, 4}, Shape{2, 2}, dtype);
    const Tensor b = Tensor::from_vector({0.5, -1, 2, 10}, Shape{2, 2}, dtype);
    EXPECT_EQ(ops::add(ctx, a, b).to_vector(), (std::vector<double>{1.5, 1, 5, 14}));
    EXPECT_EQ(ops::mul(ctx, a, b).to_vector(), (std::vector<double>{0.5, -2, 6, 40}));
    EXPECT_EQ(ops::scale(ctx, a, -0.5).to_vector(), (std::vector<double>{-0.5, -1, -1.5, -2}));
    EXPECT_EQ(ops::add(ctx, a, b).dtype(), dtype);
    Tensor acc = a.clone();
    ops::add_inplace(ctx, acc, b);
    ops::add_inplace(ctx, acc, b);
    EXPECT_EQ(acc.to_vector(), (std::vector<double>{2, 0, 7, 24}));
    EXPECT_EQ(a.to_vector(), (std::vector<double>{1, 2, 3, 4}));  // inputs untouched
  }
}

TEST(ElementwiseCast, ConvertsBetweenDtypesIntoNewStorage) {
  Context ctx;
  const Tensor x = Tensor::from_vector({1.0, -2.75, 1.0 + 1.0 / 1024, 300.5}, Shape{4});
  const Tensor d = ops::cast(ctx, x, DType::f64);
  EXPECT_EQ(d.dtype(), DType::f64);
  EXPECT_EQ(d.to_vector(), x.to_vector());
  // bf16 keeps 8 significant bits: 1 + 2^-10 rounds to 1, 300.5 to 300.
  const Tensor h = ops::cast(ctx, x, DType::bf16);
  EXPECT_EQ(h.dtype(), DType::bf16);
  EXPECT_EQ(ops::cast(ctx, h, DType::f32).to_vector(), (std::vector<double>{1, -2.75, 1, 300}));
  const Tensor i = ops::cast(ctx, x, DType::i32);
  EXPECT_EQ(i.to_vector(), (std::vector<double>{1, -2, 1, 300}));  // truncation toward zero
  const Tensor same = ops::cast(ctx, x, DType::f32);
  EXPECT_FALSE(same.shares_storage_with(x));
  EXPECT_EQ(same.to_vector(), x.to_vector());
}

TEST(ElementwiseFill, EveryDtype) {
  Context ctx;
  for (DType dtype :
       {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
    Tensor t = Tensor::zeros(Shape{2, 3}, dtype);
    ops::fill(ctx, t, 5.0);
    EXPECT_EQ(t.to_vector(), std::vector<double>(6, 5.0)) << core::dtype_name(dtype);
  }
  Tensor view = Tensor::zeros(Shape{4, 2}, DType::f32).slice(1, 3);
  ops::fill(ctx, view, -1.5);
  EXPECT_EQ(view.to_vector(), std::vector<double>(4, -1.5));
}

TEST(ElementwiseErrors, NameTheOpShapesAndDtypes) {
  Context ctx;
  const Tensor a = Tensor::zeros(Shape{2, 3}, DType::f32);
  const Tensor b = Tensor::zeros(Shape{3, 2}, DType::f32);
  expect_error([&] { ops::add(ctx, a, b); }, {"add", "[2, 3]", "[3, 2]"});
  expect_error([&] { ops::mul(ctx, a, Tensor::zeros(Shape{2, 3}, DType::f64)); }, {"mul", "f64"});
  Tensor acc = Tensor::zeros(Shape{6}, DType::f32);
  expect_error([&] { ops::add_inplace(ctx, acc, a); }, {"add_inplace"});
  expect_error([&] { ops::relu(ctx, Tensor::zeros(Shape{2}, DType::i32)); }, {"relu"});
  // The CPU backend computes in f32/f64 only.
  expect_error([&] { ops::relu(ctx, Tensor::zeros(Shape{2}, DType::bf16)); }, {"relu", "bf16"});
}

}  // namespace
}  // namespace cohort::core::ops
