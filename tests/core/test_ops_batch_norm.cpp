// Batch normalisation on the CPU: hand-computed forward and running statistics,
// double-precision gradient checks of every input (train, fused residual + relu,
// eval), the accumulate flag, and SyncBatchNorm through fake StatsReducers.
#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <exception>
#include <string>
#include <thread>
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

// Gamma and beta are f32 even in the double checks. Values with few mantissa
// bits and a power-of-two step keep p +- eps exact in f32, so the central
// difference sees exactly the intended perturbation.
const double kParamEps = std::ldexp(1.0, -20);

Tensor dyadic_vector(int64_t n, double first, double step) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = first + step * static_cast<double>(i);
  return values(v, Shape{n}, DType::f32);
}

struct BnInputs {
  Tensor x, gamma, beta, running_mean, running_var;
};

BnInputs make_inputs(const Shape& shape, uint64_t seed, DType dtype = DType::f64) {
  const int64_t c = shape.dim(-1);
  BnInputs in;
  // Shift and scale the data so the statistics are far from (0, 1).
  in.x = random_tensor(shape, seed, -1.5, 2.5, dtype);
  in.gamma = dyadic_vector(c, 0.75, 0.375);
  in.beta = dyadic_vector(c, -0.5, 0.25);
  in.running_mean = dyadic_vector(c, 0.5, 0.125);
  in.running_var = dyadic_vector(c, 2.0, 0.25);
  return in;
}

TEST(BatchNormTrain, MatchesHandComputedStatisticsAndRunningUpdate) {
  Context ctx;
  BnInputs in = make_inputs(Shape{2, 2, 3, 3}, 11, DType::f32);
  const std::vector<double> x = in.x.to_vector(), g = in.gamma.to_vector(), b = in.beta.to_vector(),
                            rm0 = in.running_mean.to_vector(), rv0 = in.running_var.to_vector();
  ops::BatchNormArgs args;
  args.momentum = 0.25;
  ops::BatchNormSaved saved;
  const Tensor y = ops::batch_norm_train(ctx, in.x, in.gamma, in.beta, in.running_mean,
                                         in.running_var, args, saved);

  const int channels = 3, count = 12;
  std::vector<double> mean(channels, 0), var(channels, 0), expected_y(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    mean[i % channels] += x[i] / count;
  for (size_t i = 0; i < x.size(); ++i)
    var[i % channels] += (x[i] - mean[i % channels]) * (x[i] - mean[i % channels]) / count;
  std::vector<double> rm(channels), rv(channels), invstd(channels);
  for (int c = 0; c < channels; ++c) {
    invstd[c] = 1 / std::sqrt(var[c] + args.eps);
    rm[c] = 0.75 * rm0[c] + 0.25 * mean[c];
    rv[c] = 0.75 * rv0[c] + 0.25 * var[c] * count / (count - 1);  // unbiased
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % channels;
    expected_y[i] = (x[i] - mean[c]) * invstd[c] * g[c] + b[c];
  }
  expect_close("y", y, values(expected_y, y.shape()), 1e-5, 1e-5);
  expect_close("saved.mean", saved.mean, values(mean, Shape{3}), 1e-6, 1e-6);
  expect_close("saved.invstd", saved.invstd, values(invstd, Shape{3}), 1e-6, 1e-6);
  expect_close("running_mean", in.running_mean, values(rm, Shape{3}), 1e-6, 1e-6);
  expect_close("running_var", in.running_var, values(rv, Shape{3}), 1e-6, 1e-6);
  EXPECT_EQ(saved.mean.dtype(), DType::f32);
  EXPECT_EQ(saved.invstd.dtype(), DType::f32);
}

TEST(BatchNormEval, NormalisesWithRunningStatisticsAndLeavesThemAlone) {
  Context ctx;
  BnInputs in = make_inputs(Shape{3, 4}, 12, DType::f32);
  const std::vector<double> x = in.x.to_vector(), rm = in.running_mean.to_vector(),
                            rv = in.running_var.to_vector(), g = in.gamma.to_vector(),
                            b = in.beta.to_vector();
  ops::BatchNormArgs args;
  args.relu = true;
  ops::BatchNormSaved saved;
  const Tensor y = ops::batch_norm_eval(ctx, in.x, in.gamma, in.beta, in.running_mean,
                                        in.running_var, args, saved);
  std::vector<double> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t c = i % 4;
    expected[i] = std::max(0.0, (x[i] - rm[c]) / std::sqrt(rv[c] + args.eps) * g[c] + b[c]);
  }
  expect_close("y", y, values(expected, y.shape()), 1e-5, 1e-6);
  EXPECT_EQ(in.running_mean.to_vector(), rm);
  EXPECT_EQ(in.running_var.to_vector(), rv);
}

// Checks d/dx, d/dgamma, d/dbeta (and d/dresidual when args has one) in double.
void check_gradients(const std::string& what, BnInputs& in, ops::BatchNormArgs args,
                     bool training) {
  Context ctx;
  auto forward = [&]() {
    Tensor rm = in.running_mean.clone(), rv = in.running_var.clone();  // left untouched
    ops::BatchNormSaved s;
    return training ? ops::batch_norm_train(ctx, in.x, in.gamma, in.beta, rm, rv, args, s)
                    : ops::batch_norm_eval(ctx, in.x, in.gamma, in.beta, rm, rv, args, s);
  };
  ops::BatchNormSaved saved;
  Tensor rm = in.running_mean.clone(), rv = in.running_var.clone();
  const Tensor y = training
                       ? ops::batch_norm_train(ctx, in.x, in.gamma, in.beta, rm, rv, args, saved)
                       : ops::batch_norm_eval(ctx, in.x, in.gamma, in.beta, rm, rv, args, saved);
  const Tensor r = random_tensor(y.shape(), 99);
  const int64_t c = in.x.dim(-1);
  Tensor dgamma = Tensor::zeros(Shape{c}, DType::f32), dbeta = Tensor::zeros(Shape{c}, DType::f32);
  const ops::BatchNormGrads grads = ops::batch_norm_backward(ctx, r, in.x, y, in.gamma, saved, args,
                                                             training, dgamma, dbeta, false);
  // Tighter than the default tolerances on purpose: backward reusing the
  // f32-rounded saved statistics for f64 input (instead of recomputing them in
  // double) is off by ~1e-8 and must fail here.
  expect_gradient(what + " dx", forward, in.x, r, grads.dx, 1e-6, 1e-7, 1e-9);
  // dgamma/dbeta are f32: compare against the numeric derivative at f32 precision.
  expect_gradient(what + " dgamma", forward, in.gamma, r, dgamma, kParamEps, 1e-5, 1e-5);
  expect_gradient(what + " dbeta", forward, in.beta, r, dbeta, kParamEps, 1e-5, 1e-5);
  if (args.residual.defined()) {
    ASSERT_TRUE(grads.dresidual.defined()) << what;
    Tensor residual = args.residual;  // shares storage with args.residual
    expect_gradient(what + " dresidual", forward, residual, r, grads.dresidual);
  } else {
    EXPECT_FALSE(grads.dresidual.defined()) << what;
  }
}

struct GradientCase {
  std::string name;
  Shape x;
  uint64_t seed;  // of x; the residual (if any) uses seed + 1
  bool training, relu, residual;
};

class BatchNormGradient : public ::testing::TestWithParam<GradientCase> {};

TEST_P(BatchNormGradient, MatchesFiniteDifferences) {
  const GradientCase& p = GetParam();
  BnInputs in = make_inputs(p.x, p.seed);
  ops::BatchNormArgs args;
  args.relu = p.relu;
  if (p.residual) args.residual = random_tensor(in.x.shape(), p.seed + 1);
  check_gradients(p.name, in, args, p.training);
}

INSTANTIATE_TEST_SUITE_P(
    Modes, BatchNormGradient,
    ::testing::Values(GradientCase{"Train", {2, 3, 3, 4}, 21, true, false, false},
                      GradientCase{"TrainFusedResidualRelu", {2, 3, 3, 4}, 22, true, true, true},
                      GradientCase{"TrainRankTwoRelu", {10, 5}, 24, true, true, false},
                      GradientCase{"EvalFusedResidualRelu", {2, 3, 3, 4}, 25, false, true, true},
                      GradientCase{"Eval", {2, 2, 2, 3}, 27, false, false, false}),
    [](const ::testing::TestParamInfo<GradientCase>& info) { return info.param.name; });

TEST(BatchNormBackward, AccumulateAddsToParameterGradients) {
  Context ctx;
  BnInputs in = make_inputs(Shape{4, 2, 3}, 31, DType::f32);
  ops::BatchNormArgs args;
  ops::BatchNormSaved saved;
  const Tensor y = ops::batch_norm_train(ctx, in.x, in.gamma, in.beta, in.running_mean,
                                         in.running_var, args, saved);
  const Tensor dy = random_tensor(y.shape(), 32, -1, 1, DType::f32);
  Tensor dgamma = Tensor::full(Shape{3}, 7.0), dbeta = Tensor::full(Shape{3}, 7.0);
  ops::batch_norm_backward(ctx, dy, in.x, y, in.gamma, saved, args, true, dgamma, dbeta, false);
  const std::vector<double> g1 = dgamma.to_vector(), b1 = dbeta.to_vector();
  ops::batch_norm_backward(ctx, dy, in.x, y, in.gamma, saved, args, true, dgamma, dbeta, true);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(dgamma.to_vector()[c], 2 * g1[c], 1e-5);
    EXPECT_NEAR(dbeta.to_vector()[c], 2 * b1[c], 1e-5);
  }
  // dbeta is the plain per-channel sum of dy.
  const std::vector<double> d = dy.to_vector();
  std::vector<double> expected(3, 0.0);
  for (size_t i = 0; i < d.size(); ++i)
    expected[i % 3] += d[i];
  for (int c = 0; c < 3; ++c)
    EXPECT_NEAR(b1[c], expected[c], 1e-5);
}

// Emulates a second, identical rank: every statistic sums to twice this rank's.
class DoublingReducer : public ops::StatsReducer {
 public:
  void all_reduce_sum(Context& ctx, Tensor& values) override {
    EXPECT_EQ(values.dtype(), DType::f32);
    for (int64_t i = 0; i < values.numel(); ++i)
      values.data<float>()[i] *= 2;
    sizes.push_back(values.numel());
  }
  std::vector<int64_t> sizes;
};

TEST(SyncBatchNorm, TwoIdenticalRanksMatchOneRank) {
  Context ctx;
  BnInputs one = make_inputs(Shape{2, 3, 2, 4}, 41, DType::f32);
  BnInputs two = make_inputs(Shape{2, 3, 2, 4}, 41, DType::f32);
  DoublingReducer reducer;
  ops::BatchNormArgs plain, synced;
  synced.reducer = &reducer;
  ops::BatchNormSaved s1, s2;
  const Tensor y1 = ops::batch_norm_train(ctx, one.x, one.gamma, one.beta, one.running_mean,
                                          one.running_var, plain, s1);
  const Tensor y2 = ops::batch_norm_train(ctx, two.x, two.gamma, two.beta, two.running_mean,
                                          two.running_var, synced, s2);
  expect_close("y", y2, y1, 1e-5, 1e-5);
  expect_close("running_mean", two.running_mean, one.running_mean, 1e-6, 1e-6);
  // The unbiasing factor uses the global count 2n: (1-m) rv0 + m var 2n/(2n-1).
  const std::vector<double> rv0 = make_inputs(Shape{2, 3, 2, 4}, 41).running_var.to_vector();
  const std::vector<double> rv1 = one.running_var.to_vector();
  const double n = 12;
  for (int c = 0; c < 4; ++c) {
    const double var = (rv1[c] - 0.9 * rv0[c]) / 0.1 * (n - 1) / n;
    EXPECT_NEAR(two.running_var.to_vector()[c], 0.9 * rv0[c] + 0.1 * var * 2 * n / (2 * n - 1),
                1e-5);
  }
  ASSERT_EQ(reducer.sizes, std::vector<int64_t>{9});  // one collective of 2C+1 values

  const Tensor dy = random_tensor(y1.shape(), 42, -1, 1, DType::f32);
  Tensor dg1 = Tensor::zeros(Shape{4}, DType::f32), db1 = Tensor::zeros(Shape{4}, DType::f32);
  Tensor dg2 = Tensor::zeros(Shape{4}, DType::f32), db2 = Tensor::zeros(Shape{4}, DType::f32);
  const ops::BatchNormGrads g1 =
      ops::batch_norm_backward(ctx, dy, one.x, y1, one.gamma, s1, plain, true, dg1, db1, false);
  const ops::BatchNormGrads g2 =
      ops::batch_norm_backward(ctx, dy, two.x, y2, two.gamma, s2, synced, true, dg2, db2, false);
  expect_close("dx", g2.dx, g1.dx, 1e-5, 1e-5);
  expect_close("dgamma (local)", dg2, dg1, 1e-5, 1e-5);
  expect_close("dbeta (local)", db2, db1, 1e-5, 1e-5);
  EXPECT_EQ(reducer.sizes, (std::vector<int64_t>{9, 9}));
}

// An all-reduce across threads: each rank deposits its values, waits for the
// others, and reads back the sum. Enough to run "ranks" as threads in one test.
class ThreadAllReduce {
 public:
  explicit ThreadAllReduce(int ranks) : m_arrived(ranks), m_read(ranks), m_slots(ranks) {}
  void all_reduce(int rank, Tensor& values) {
    m_slots[rank] = values.to_vector();
    m_arrived.arrive_and_wait();
    std::vector<double> total(m_slots[rank].size(), 0.0);
    for (const auto& slot : m_slots)
      for (size_t i = 0; i < total.size(); ++i)
        total[i] += slot[i];
    m_read.arrive_and_wait();  // nobody refills a slot before every rank has read it
    for (size_t i = 0; i < total.size(); ++i)
      values.data<float>()[i] = static_cast<float>(total[i]);
  }

 private:
  std::barrier<> m_arrived, m_read;
  std::vector<std::vector<double>> m_slots;
};

class RankReducer : public ops::StatsReducer {
 public:
  RankReducer(ThreadAllReduce& group, int rank) : m_group(group), m_rank(rank) {}
  void all_reduce_sum(Context& ctx, Tensor& values) override { m_group.all_reduce(m_rank, values); }

 private:
  ThreadAllReduce& m_group;
  int m_rank;
};

struct RankResult {
  Tensor y, dx, dgamma, dbeta, running_mean, running_var;
};

RankResult run_rank(const BnInputs& in, const Tensor& x, const Tensor& dy,
                    ops::StatsReducer* reducer) {
  Context ctx;  // one context per thread, as in training
  RankResult out;
  out.running_mean = in.running_mean.clone();
  out.running_var = in.running_var.clone();
  ops::BatchNormArgs args;
  args.relu = true;
  args.reducer = reducer;
  ops::BatchNormSaved saved;
  out.y = ops::batch_norm_train(ctx, x, in.gamma, in.beta, out.running_mean, out.running_var, args,
                                saved);
  out.dgamma = Tensor::zeros(in.gamma.shape(), DType::f32);
  out.dbeta = Tensor::zeros(in.gamma.shape(), DType::f32);
  out.dx = ops::batch_norm_backward(ctx, dy, x, out.y, in.gamma, saved, args, true, out.dgamma,
                                    out.dbeta, false)
               .dx;
  return out;
}

// Two ranks, each holding half the batch, must reproduce full-batch BN.
void check_split_batch(DType dtype, double tol) {
  const BnInputs in = make_inputs(Shape{4, 3, 2, 3}, 51, dtype);
  const Tensor dy = random_tensor(in.x.shape(), 52, -1, 1, dtype);
  const RankResult full = run_rank(in, in.x, dy, nullptr);

  ThreadAllReduce group(2);
  RankResult half[2];
  std::exception_ptr failure[2];
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank)
    threads.emplace_back([&, rank] {
      try {
        RankReducer reducer(group, rank);
        half[rank] = run_rank(in, in.x.slice(2 * rank, 2 * rank + 2),
                              dy.slice(2 * rank, 2 * rank + 2), &reducer);
      } catch (...) {
        failure[rank] = std::current_exception();
      }
    });
  for (auto& t : threads)
    t.join();
  for (const auto& f : failure)
    if (f) std::rethrow_exception(f);

  const std::string name(core::dtype_name(dtype));
  for (int rank = 0; rank < 2; ++rank) {
    const std::string what = name + " rank " + std::to_string(rank);
    expect_close(what + " y", half[rank].y, full.y.slice(2 * rank, 2 * rank + 2), tol, tol);
    expect_close(what + " dx", half[rank].dx, full.dx.slice(2 * rank, 2 * rank + 2), tol, tol);
    expect_close(what + " running_mean", half[rank].running_mean, full.running_mean, tol, tol);
    expect_close(what + " running_var", half[rank].running_var, full.running_var, tol, tol);
  }
  // Parameter gradients stay local; their sum over ranks is the full-batch gradient.
  Context ctx;
  expect_close(name + " dgamma sum", ops::add(ctx, half[0].dgamma, half[1].dgamma), full.dgamma,
               tol, tol);
  expect_close(name + " dbeta sum", ops::add(ctx, half[0].dbeta, half[1].dbeta), full.dbeta, tol,
               tol);
}

TEST(SyncBatchNorm, TwoRanksWithHalfBatchesMatchFullBatchF32) {
  check_split_batch(DType::f32, 2e-5);
}

// f64 input takes the path that recomputes the statistics in backward (a second
// reduction); the f32 transport of the sums limits the agreement.
TEST(SyncBatchNorm, TwoRanksWithHalfBatchesMatchFullBatchF64) {
  check_split_batch(DType::f64, 2e-5);
}

TEST(BatchNormErrors, NameTheOpAndShapes) {
  Context ctx;
  BnInputs in = make_inputs(Shape{2, 2, 2, 3}, 61, DType::f32);
  ops::BatchNormSaved saved;
  ops::BatchNormArgs args;
  const Tensor bad_gamma = Tensor::zeros(Shape{4}, DType::f32);
  expect_error(
      [&] {
        ops::batch_norm_train(ctx, in.x, bad_gamma, in.beta, in.running_mean, in.running_var, args,
                              saved);
      },
      {"batch_norm_train", "gamma", "[4]", "[2, 2, 2, 3]"});

  args.residual = Tensor::zeros(Shape{2, 2, 3, 2}, DType::f32);
  expect_error(
      [&] {
        ops::batch_norm_eval(ctx, in.x, in.gamma, in.beta, in.running_mean, in.running_var, args,
                             saved);
      },
      {"batch_norm_eval", "[2, 2, 3, 2]"});

  // One value per channel has no unbiased variance (PyTorch refuses it too).
  const Tensor single = Tensor::zeros(Shape{1, 3}, DType::f32);
  expect_error(
      [&] {
        ops::batch_norm_train(ctx, single, in.gamma, in.beta, in.running_mean, in.running_var,
                              ops::BatchNormArgs{}, saved);
      },
      {"more than one value per channel"});
}

}  // namespace
}  // namespace cohort::core::ops
