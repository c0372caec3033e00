// concat_channels / split_channels on the CPU: layout, round trip, gradient
// check (split is concat's backward), non-float dtypes and argument errors.
#include <gtest/gtest.h>

#include <vector>

#include "core/context.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_close;
using testing::expect_error;
using testing::expect_gradient;
using testing::random_tensor;
using testing::values;

TEST(ConcatChannels, InterleavesAlongTheLastDim) {
  Context ctx;
  const Tensor a = values({1, 2, 3, 4}, {1, 2, 1, 2});
  const Tensor b = values({10, 20}, {1, 2, 1, 1});
  const Tensor c = values({100, 200, 300, 400, 500, 600}, {1, 2, 1, 3});
  expect_close("y", concat_channels(ctx, {a, b, c}),
               values({1, 2, 10, 100, 200, 300, 3, 4, 20, 400, 500, 600}, {1, 2, 1, 6}), 0, 0);
}

TEST(SplitChannels, InvertsConcat) {
  Context ctx;
  const Tensor a = random_tensor({2, 3, 2, 4}, 1);
  const Tensor b = random_tensor({2, 3, 2, 1}, 2);
  const Tensor c = random_tensor({2, 3, 2, 3}, 3);
  const std::vector<Tensor> parts = split_channels(ctx, concat_channels(ctx, {a, b, c}), {4, 1, 3});
  ASSERT_EQ(parts.size(), 3u);
  expect_close("a", parts[0], a, 0, 0);
  expect_close("b", parts[1], b, 0, 0);
  expect_close("c", parts[2], c, 0, 0);
}

TEST(ConcatChannels, GradientIsSplit) {
  Context ctx;
  Tensor a = random_tensor({2, 3, 5}, 4);
  Tensor b = random_tensor({2, 3, 2}, 5);
  auto forward = [&] { return concat_channels(ctx, {a, b}); };
  const Tensor r = random_tensor({2, 3, 7}, 6);
  const std::vector<Tensor> grads = split_channels(ctx, r, {5, 2});
  expect_gradient("da", forward, a, r, grads[0]);
  expect_gradient("db", forward, b, r, grads[1]);
}

TEST(ConcatChannels, WorksForEveryDtype) {
  Context ctx;
  for (DType t : {DType::f32, DType::bf16, DType::u8, DType::i64}) {
    const Tensor a = values({1, 2, 3, 4}, {2, 2}, t);
    const Tensor b = values({5, 6}, {2, 1}, t);
    const Tensor y = concat_channels(ctx, {a, b});
    EXPECT_EQ(y.dtype(), t);
    EXPECT_EQ(y.to_vector(), (std::vector<double>{1, 2, 5, 3, 4, 6}));
    const std::vector<Tensor> parts = split_channels(ctx, y, {1, 2});
    EXPECT_EQ(parts[0].to_vector(), (std::vector<double>{1, 3}));
    EXPECT_EQ(parts[1].to_vector(), (std::vector<double>{2, 5, 4, 6}));
  }
}

TEST(ConcatErrors, NameOpAndShapes) {
  Context ctx;
  const Tensor a = random_tensor({1, 2, 2, 3}, 7);
  expect_error([&] { concat_channels(ctx, {}); }, {"concat_channels", "at least one"});
  expect_error(
      [&] {
        concat_channels(ctx, {a, random_tensor({1, 2, 3, 3}, 8)});
      },
      {"concat_channels", "[1, 2, 3, 3]", "[1, 2, 2, 3]"});
  expect_error(
      [&] {
        concat_channels(ctx, {a, random_tensor({1, 2, 2, 3}, 9, -1, 1, DType::f32)});
      },
      {"concat_channels", "f32[1, 2, 2, 3]", "f64[1, 2, 2, 3]"});
  expect_error(
      [&] {
        split_channels(ctx, a, {1, 1});
      },
      {"split_channels", "[1, 1]", "[1, 2, 2, 3]"});
  expect_error([&] { split_channels(ctx, a, {3, 0}); }, {"split_channels", "[3, 0]", "positive"});
}

}  // namespace
}  // namespace cohort::core::ops
