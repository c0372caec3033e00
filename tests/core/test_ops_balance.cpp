// Multi-task loss balancing by learned uncertainty: hand values, gradients by
// central differences in double (for the losses and for log_vars), accumulation,
// frozen weights, and errors that name the op.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

namespace cohort::core {
namespace {

using testing::expect_gradient;
using testing::random_tensor;

Tensor scalar(double v, DType dtype = DType::f64) {
  return Tensor::from_vector({v}, Shape{1}, dtype);
}

TEST(UncertaintyWeighting, HandValues) {
  Context ctx;
  const std::vector<Tensor> losses = {scalar(2.0), scalar(0.5)};
  const Tensor s = Tensor::from_vector({0.0, std::log(4.0)}, Shape{2}, DType::f64);
  // 0.5 * 1 * 2 + 0 + 0.5 * 0.25 * 0.5 + 0.5 * log 4
  EXPECT_NEAR(ops::uncertainty_weighted_sum(ctx, losses, s).item(),
              1.0 + 0.0625 + 0.5 * std::log(4.0), 1e-12);
  Tensor ds = Tensor::zeros(Shape{2}, DType::f64);
  const std::vector<Tensor> dl =
      ops::uncertainty_weighted_sum_backward(ctx, scalar(2.0), losses, s, ds, false);
  ASSERT_EQ(dl.size(), 2u);
  EXPECT_NEAR(dl[0].item(), 2.0 * 0.5, 1e-12);
  EXPECT_NEAR(dl[1].item(), 2.0 * 0.125, 1e-12);
  EXPECT_NEAR(ds.to_vector()[0], 2.0 * (0.5 - 0.5 * 2.0), 1e-12);
  EXPECT_NEAR(ds.to_vector()[1], 2.0 * (0.5 - 0.125 * 0.5), 1e-12);
}

TEST(UncertaintyWeighting, GradientsByCentralDifferences) {
  Context ctx;
  std::vector<Tensor> losses;
  for (int i = 0; i < 3; ++i)
    losses.push_back(random_tensor(Shape{1}, 100 + i, 0.1, 3.0));
  Tensor s = random_tensor(Shape{3}, 200, -1.0, 1.0);
  const Tensor r = scalar(1.3);
  Tensor ds = Tensor::zeros(Shape{3}, DType::f64);
  const std::vector<Tensor> dl =
      ops::uncertainty_weighted_sum_backward(ctx, r, losses, s, ds, false);
  auto forward = [&] { return ops::uncertainty_weighted_sum(ctx, losses, s); };
  expect_gradient("d/d log_vars", forward, s, r, ds);
  for (size_t i = 0; i < losses.size(); ++i)
    expect_gradient("d/d loss " + std::to_string(i), forward, losses[i], r, dl[i]);
}

TEST(UncertaintyWeighting, AccumulatesAndSkipsFrozenWeights) {
  Context ctx;
  const std::vector<Tensor> losses = {scalar(1.0, DType::f32), scalar(3.0, DType::f32)};
  const Tensor s = Tensor::from_vector({0.5, -0.5}, Shape{2}, DType::f32);
  Tensor ds = Tensor::from_vector({10.0, 20.0}, Shape{2}, DType::f32);
  Tensor fresh = Tensor::zeros(Shape{2}, DType::f32);
  ops::uncertainty_weighted_sum_backward(ctx, scalar(1.0, DType::f32), losses, s, fresh, false);
  ops::uncertainty_weighted_sum_backward(ctx, scalar(1.0, DType::f32), losses, s, ds, true);
  EXPECT_NEAR(ds.to_vector()[0], 10.0 + fresh.to_vector()[0], 1e-6);
  EXPECT_NEAR(ds.to_vector()[1], 20.0 + fresh.to_vector()[1], 1e-6);
  Tensor none;
  const std::vector<Tensor> dl =
      ops::uncertainty_weighted_sum_backward(ctx, scalar(1.0, DType::f32), losses, s, none, false);
  EXPECT_NEAR(dl[1].item(), 0.5 * std::exp(0.5), 1e-6) << "loss gradients without log_vars'";
}

TEST(UncertaintyWeighting, ErrorsNameTheOpAndTheProblem) {
  Context ctx;
  const Tensor s = Tensor::zeros(Shape{2}, DType::f32);
  try {
    ops::uncertainty_weighted_sum(ctx, {scalar(1.0, DType::f32)}, s);
    FAIL() << "one loss for two weights was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("uncertainty_weighted_sum"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("one per loss"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::uncertainty_weighted_sum(
                   ctx, {Tensor::zeros(Shape{2}, DType::f32), scalar(1.0, DType::f32)}, s),
               Error);
}

}  // namespace
}  // namespace cohort::core
