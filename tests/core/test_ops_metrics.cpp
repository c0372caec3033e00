// Evaluation metrics on the CPU: the confusion matrix (ignored and out-of-range
// elements, accumulation across calls, u8 and i32 truth), the depth error sums
// against a direct loop over valid and invalid pixels, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_error;

Tensor ints(const std::vector<double>& v, DType dtype) {
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}, dtype);
}

TEST(Metrics, ConfusionCountsIgnoresAndFlagsOutOfRange) {
  Context ctx;
  for (DType truth_dtype : {DType::u8, DType::i32}) {
    SCOPED_TRACE(std::string(dtype_name(truth_dtype)));
    // K = 3. Pairs (truth, predicted):
    //   (0,0) (0,2) (1,1) (2,1) (2,1)  counted
    //   (255,7) (255,1)                ignored, even with a prediction out of range
    //   (3,0) (1,-1) (0,3)             out of range
    const Tensor truth = ints({0, 0, 1, 2, 2, 255, 255, 3, 1, 0}, truth_dtype);
    const Tensor predicted = ints({0, 2, 1, 1, 1, 7, 1, 0, -1, 3}, DType::i32);
    Tensor confusion = Tensor::zeros(Shape{3, 3}, DType::i64);
    Tensor out_of_range = Tensor::zeros(Shape{1}, DType::i64);
    accumulate_confusion(ctx, predicted, truth, 255, confusion, out_of_range);
    EXPECT_EQ(confusion.to_vector(), (std::vector<double>{1, 0, 1,  //
                                                          0, 1, 0,  //
                                                          0, 2, 0}));
    EXPECT_EQ(out_of_range.item(), 3.0);

    // A second call adds onto both outputs.
    accumulate_confusion(ctx, predicted, truth, 255, confusion, out_of_range);
    EXPECT_EQ(confusion.to_vector(), (std::vector<double>{2, 0, 2,  //
                                                          0, 2, 0,  //
                                                          0, 4, 0}));
    EXPECT_EQ(out_of_range.item(), 6.0);
  }
}

TEST(Metrics, ConfusionIgnoreIndexInsideTheClassRange) {
  Context ctx;
  // ignore_index 0 (a "void" class 0): those pixels vanish from row 0 entirely.
  const Tensor truth = ints({0, 0, 1, 1}, DType::i32);
  const Tensor predicted = ints({1, 1, 0, 1}, DType::i32);
  Tensor confusion = Tensor::zeros(Shape{2, 2}, DType::i64);
  Tensor out_of_range = Tensor::zeros(Shape{1}, DType::i64);
  accumulate_confusion(ctx, predicted, truth, 0, confusion, out_of_range);
  EXPECT_EQ(confusion.to_vector(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(out_of_range.item(), 0.0);
}

TEST(Metrics, ConfusionIntoViewsOfOneBuffer) {
  Context ctx;
  // One i64 buffer [K*K + 1] so the caller reads everything back in one copy.
  Tensor buffer = Tensor::zeros(Shape{5}, DType::i64);
  Tensor confusion = buffer.flat(0, 4).view(Shape{2, 2});
  Tensor out_of_range = buffer.flat(4, 1);
  const Tensor truth = Tensor::from_vector({0, 1, 1, 5}, Shape{2, 2}, DType::u8);
  const Tensor predicted = Tensor::from_vector({0, 0, 1, 1}, Shape{2, 2}, DType::i32);
  accumulate_confusion(ctx, predicted, truth, 255, confusion, out_of_range);
  EXPECT_EQ(buffer.to_vector(), (std::vector<double>{1, 0, 1, 1, 1}));
}

// The reference: a direct loop in double over every element.
std::vector<double> depth_reference(const std::vector<double>& d, const std::vector<double>& t,
                                    const std::vector<double>& v) {
  std::vector<double> s(3, 0.0);
  for (size_t i = 0; i < d.size(); ++i) {
    const double target = static_cast<float>(t[i]);
    if (v[i] == 0 || !(target > 0)) continue;
    const double diff = d[i] - target;
    s[0] += std::abs(diff) / target;
    s[1] += diff * diff;
    s[2] += 1;
  }
  return s;
}

TEST(Metrics, DepthErrorsMatchDirectLoopAndAccumulate) {
  Context ctx;
  // Includes invalid pixels, zero and negative targets, and valid values other than 1.
  const std::vector<double> d = {1.0, 2.5, 3.0, 0.5, 4.0, 9.0, 2.0, 1.25, 6.0, 0.75};
  const std::vector<double> t = {2.0, 2.0, 0.0, 1.0, -1.0, 3.0, 4.0, 1.0, 5.0, 0.5};
  const std::vector<double> v = {1, 1, 1, 0, 1, 7, 1, 1, 0, 255};
  const std::vector<double> expected = depth_reference(d, t, v);
  ASSERT_EQ(expected[2], 6.0);  // the fixture exercises every skip path
  for (DType dtype : {DType::f32, DType::f64}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    // Predicted [N,H,W,1] against target/valid [N,H,W]: trailing 1s are allowed.
    const Tensor pred = Tensor::from_vector(d, Shape{1, 2, 5, 1}, dtype);
    const Tensor target = Tensor::from_vector(t, Shape{1, 2, 5}, DType::f32);
    const Tensor valid = Tensor::from_vector(v, Shape{1, 2, 5}, DType::u8);
    Tensor sums = Tensor::zeros(Shape{3}, DType::f64);
    accumulate_depth_errors(ctx, pred, target, valid, sums);
    std::vector<double> got = sums.to_vector();
    for (int i = 0; i < 3; ++i)
      EXPECT_NEAR(got[i], expected[i], 1e-12 * std::abs(expected[i])) << "sum " << i;
    accumulate_depth_errors(ctx, pred, target, valid, sums);
    got = sums.to_vector();
    for (int i = 0; i < 3; ++i)
      EXPECT_NEAR(got[i], 2 * expected[i], 2e-12 * std::abs(expected[i])) << "sum " << i;
  }
}

TEST(Metrics, DepthErrorsWithNothingValidAddNothing) {
  Context ctx;
  const Tensor pred = Tensor::from_vector({1, 2}, Shape{2}, DType::f32);
  const Tensor target = Tensor::from_vector({0, 3}, Shape{2}, DType::f32);
  const Tensor valid = Tensor::from_vector({1, 0}, Shape{2}, DType::u8);
  Tensor sums = Tensor::from_vector({0.5, 1.5, 2}, Shape{3}, DType::f64);
  accumulate_depth_errors(ctx, pred, target, valid, sums);
  EXPECT_EQ(sums.to_vector(), (std::vector<double>{0.5, 1.5, 2}));
}

TEST(Metrics, ConfusionRejectsBadArguments) {
  Context ctx;
  const Tensor pred = Tensor::zeros(Shape{2, 3}, DType::i32);
  const Tensor truth = Tensor::zeros(Shape{2, 3}, DType::u8);
  Tensor conf = Tensor::zeros(Shape{4, 4}, DType::i64);
  Tensor oor = Tensor::zeros(Shape{1}, DType::i64);
  const char* op = "accumulate_confusion";

  expect_error(
      [&] {
        accumulate_confusion(ctx, Tensor::zeros(Shape{2, 3}, DType::i64), truth, 255, conf, oor);
      },
      {op, "predicted", "i32", "i64[2, 3]"});
  expect_error(
      [&] {
        accumulate_confusion(ctx, pred, Tensor::zeros(Shape{2, 3}, DType::f32), 255, conf, oor);
      },
      {op, "truth", "u8 or i32", "f32[2, 3]"});
  expect_error(
      [&] {
        accumulate_confusion(ctx, pred, Tensor::zeros(Shape{3, 2}, DType::u8), 255, conf, oor);
      },
      {op, "[2, 3]", "[3, 2]"});
  Tensor not_square = Tensor::zeros(Shape{4, 3}, DType::i64);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, not_square, oor); },
               {op, "confusion", "[K, K]", "[4, 3]"});
  Tensor flat = Tensor::zeros(Shape{16}, DType::i64);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, flat, oor); },
               {op, "confusion", "[K, K]", "[16]"});
  Tensor empty = Tensor::zeros(Shape{0, 0}, DType::i64);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, empty, oor); },
               {op, "K > 0", "[0, 0]"});
  Tensor conf_i32 = Tensor::zeros(Shape{4, 4}, DType::i32);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, conf_i32, oor); },
               {op, "confusion", "i64", "i32[4, 4]"});
  Tensor oor_f64 = Tensor::zeros(Shape{1}, DType::f64);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, conf, oor_f64); },
               {op, "out_of_range", "i64", "f64[1]"});
  Tensor oor_two = Tensor::zeros(Shape{2}, DType::i64);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, conf, oor_two); },
               {op, "out_of_range", "[1]", "[2]"});
  Tensor buffer = Tensor::zeros(Shape{16}, DType::i64);
  Tensor conf_view = buffer.view(Shape{4, 4});
  Tensor oor_inside = buffer.flat(15, 1);
  expect_error([&] { accumulate_confusion(ctx, pred, truth, 255, conf_view, oor_inside); },
               {op, "overlap"});
  // Nothing was counted by the rejected calls.
  EXPECT_EQ(conf.to_vector(), std::vector<double>(16, 0.0));
}

TEST(Metrics, DepthRejectsBadArguments) {
  Context ctx;
  const Tensor pred = Tensor::zeros(Shape{2, 3, 1}, DType::f32);
  const Tensor target = Tensor::zeros(Shape{2, 3}, DType::f32);
  const Tensor valid = Tensor::zeros(Shape{2, 3}, DType::u8);
  Tensor sums = Tensor::zeros(Shape{3}, DType::f64);
  const char* op = "accumulate_depth_errors";

  expect_error(
      [&] {
        accumulate_depth_errors(ctx, Tensor::zeros(Shape{2, 3}, DType::i32), target, valid, sums);
      },
      {op, "predicted", "floating point", "i32[2, 3]"});
  expect_error(
      [&] {
        accumulate_depth_errors(ctx, pred, Tensor::zeros(Shape{2, 3}, DType::f64), valid, sums);
      },
      {op, "target", "f32", "f64[2, 3]"});
  expect_error(
      [&] {
        accumulate_depth_errors(ctx, pred, target, Tensor::zeros(Shape{2, 3}, DType::f32), sums);
      },
      {op, "valid", "u8", "f32[2, 3]"});
  // Same element count but a different layout is not the same image.
  expect_error(
      [&] {
        accumulate_depth_errors(ctx, Tensor::zeros(Shape{3, 2}, DType::f32), target, valid, sums);
      },
      {op, "[3, 2]", "[2, 3]", "trailing 1s"});
  expect_error(
      [&] {
        accumulate_depth_errors(ctx, pred, target, Tensor::zeros(Shape{2, 4}, DType::u8), sums);
      },
      {op, "valid", "[2, 4]"});
  Tensor sums_f32 = Tensor::zeros(Shape{3}, DType::f32);
  expect_error([&] { accumulate_depth_errors(ctx, pred, target, valid, sums_f32); },
               {op, "sums", "f64", "f32[3]"});
  Tensor sums_two = Tensor::zeros(Shape{2}, DType::f64);
  expect_error([&] { accumulate_depth_errors(ctx, pred, target, valid, sums_two); },
               {op, "sums", "[3]", "[2]"});
  // f16 is a CUDA storage type; the CPU backend says so.
  expect_error(
      [&] {
        accumulate_depth_errors(ctx, Tensor::zeros(Shape{2, 3}, DType::f16), target, valid, sums);
      },
      {op, "f16"});
}

}  // namespace
}  // namespace cohort::core::ops
