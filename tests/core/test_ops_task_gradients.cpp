// Per-task gradient ops on the CPU (loss.balancing pcgrad | gradnorm): Gram
// matrices against direct sums for each mask-bit selection and over slices;
// PCGrad's coefficients, applied by combine_task_gradients, against an explicit
// projection of the actual vectors; GradNorm's update against a double
// reference over successive updates, with the cases that must leave the state
// alone; and argument errors that name the op.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/error.hpp"
#include "core/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"
#include "tests/support/gradnorm_reference.hpp"
#include "tests/support/tensor_helpers.hpp"

namespace cohort::core::ops {
namespace {

using testing::expect_error;
using testing::GradNormReference;
using testing::random_tensor;
using testing::same_bits;
using Vec = std::vector<double>;

Tensor f32(const Vec& v) {
  return Tensor::from_vector(v, Shape{static_cast<int64_t>(v.size())}, DType::f32);
}
Tensor u8(const std::vector<int>& v) {
  return Tensor::from_vector(Vec(v.begin(), v.end()), Shape{static_cast<int64_t>(v.size())},
                             DType::u8);
}

// Random f32 task gradients; values are read back through to_vector, so the
// references see exactly what the op sees.
std::vector<Tensor> random_grads(int tasks, int64_t n, uint64_t seed) {
  std::vector<Tensor> grads;
  for (int t = 0; t < tasks; ++t)
    grads.push_back(random_tensor(Shape{n}, seed + t, -1.0, 1.0, DType::f32));
  return grads;
}

std::vector<Vec> host(const std::vector<Tensor>& ts) {
  std::vector<Vec> out;
  for (const Tensor& t : ts)
    out.push_back(t.to_vector());
  return out;
}

// Mask bytes 0, 1, 2, 3 in a scrambled but fixed pattern.
std::vector<int> mixed_mask(int64_t n) {
  std::vector<int> m;
  for (int64_t e = 0; e < n; ++e)
    m.push_back(static_cast<int>((e * 7 + e / 5) % 4));
  return m;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t e = 0; e < a.size(); ++e)
    s += a[e] * b[e];
  return s;
}

// ---- task_gram ------------------------------------------------------------------------

TEST(TaskGradientOps, GramMatchesDirectSumsForEachBitSelection) {
  Context ctx;
  for (int tasks : {1, 3, 8}) {
    const int64_t n = 203;
    const std::vector<Tensor> grads = random_grads(tasks, n, 10 * tasks);
    const std::vector<Vec> g = host(grads);
    const std::vector<int> m = mixed_mask(n);
    // bits 1 keeps mask bytes 1 and 3, bits 2 keeps 2 and 3, bits 3 keeps 1, 2 and 3.
    const std::vector<std::vector<int>> kept = {{}, {1, 3}, {2, 3}, {1, 2, 3}};
    for (int bits : {1, 2, 3}) {
      SCOPED_TRACE("tasks " + std::to_string(tasks) + ", bits " + std::to_string(bits));
      const Vec gram = task_gram(ctx, grads, u8(m), static_cast<uint8_t>(bits)).to_vector();
      ASSERT_EQ(gram.size(), static_cast<size_t>(tasks * tasks));
      for (int i = 0; i < tasks; ++i)
        for (int j = 0; j < tasks; ++j) {
          double expected = 0, magnitude = 0;
          for (int64_t e = 0; e < n; ++e) {
            const std::vector<int>& keep = kept[bits];
            if (std::find(keep.begin(), keep.end(), m[e]) == keep.end()) continue;
            expected += g[i][e] * g[j][e];
            magnitude += std::abs(g[i][e] * g[j][e]);
          }
          EXPECT_NEAR(gram[i * tasks + j], expected, 1e-6 * magnitude) << i << ", " << j;
        }
    }
  }
}

TEST(TaskGradientOps, GramsOfSlicesSumToTheWhole) {
  Context ctx;
  const int tasks = 4;
  const int64_t n = 300, cut = 97;
  const std::vector<Tensor> grads = random_grads(tasks, n, 40);
  const Tensor mask = u8(mixed_mask(n));
  std::vector<Tensor> head, tail;
  for (const Tensor& g : grads) {
    head.push_back(g.flat(0, cut));
    tail.push_back(g.flat(cut, n - cut));
  }
  const Vec whole = task_gram(ctx, grads, mask, 1).to_vector();
  const Vec a = task_gram(ctx, head, mask.flat(0, cut), 1).to_vector();
  const Vec b = task_gram(ctx, tail, mask.flat(cut, n - cut), 1).to_vector();
  for (size_t k = 0; k < whole.size(); ++k) {
    EXPECT_NEAR(a[k] + b[k], whole[k], 1e-5) << k;
    EXPECT_NE(a[k], 0.0) << "each slice holds selected elements";
  }
}

// ---- PCGrad ---------------------------------------------------------------------------

// PCGrad on explicit vectors, restricted to the elements with (mask & 1): each
// h_i = w_i g_i is projected against every other h_j in the order i+1, ...,
// T-1, 0, ..., i-1 when they conflict; returns sum_i h_i' on those elements and
// sum_t out_of_set[t] g_t elsewhere. `projections` counts the conflicts met.
Vec pcgrad_reference(const std::vector<Vec>& g, const std::vector<int>& mask, const Vec& w,
                     const Vec& out_of_set, int& projections, bool reverse_order = false) {
  const int tasks = static_cast<int>(g.size());
  const size_t n = g[0].size();
  std::vector<Vec> h(tasks, Vec(n, 0.0));
  for (int t = 0; t < tasks; ++t)
    for (size_t e = 0; e < n; ++e)
      if (mask[e] & 1) h[t][e] = w[t] * g[t][e];
  Vec sum(n, 0.0);
  projections = 0;
  for (int i = 0; i < tasks; ++i) {
    Vec p = h[i];
    for (int step = 1; step < tasks; ++step) {
      const int j = reverse_order ? (i - step + tasks) % tasks : (i + step) % tasks;
      const double d = dot(p, h[j]), norm2 = dot(h[j], h[j]);
      if (d < 0 && norm2 > 0) {
        ++projections;
        for (size_t e = 0; e < n; ++e)
          p[e] -= d / norm2 * h[j][e];
      }
    }
    for (size_t e = 0; e < n; ++e)
      sum[e] += p[e];
  }
  for (size_t e = 0; e < n; ++e)
    if (!(mask[e] & 1))
      for (int t = 0; t < tasks; ++t)
        sum[e] += out_of_set[t] * g[t][e];
  return sum;
}

// The ops' result for the same problem: the Gram matrix of the shared elements,
// the coefficients, and the combination written into a fresh buffer.
Vec pcgrad_by_ops(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, const Vec& w,
                  const Vec& out_of_set) {
  const Tensor coeff = pcgrad_coefficients(ctx, task_gram(ctx, grads, mask, 1), f32(w));
  Tensor out = Tensor::zeros(grads[0].shape(), DType::f32);
  combine_task_gradients(ctx, grads, mask, 1, coeff, f32(out_of_set), out);
  return out.to_vector();
}

void expect_vectors_near(const Vec& actual, const Vec& expected, double rtol) {
  ASSERT_EQ(actual.size(), expected.size());
  double scale = 0;
  for (double v : expected)
    scale = std::max(scale, std::abs(v));
  for (size_t e = 0; e < actual.size(); ++e)
    ASSERT_NEAR(actual[e], expected[e], rtol * scale) << "element " << e;
}

// g_t = sum_k basis[t][k] * u_k + 0.05 * noise over random directions u_k, so
// the pairwise conflicts are chosen by `basis` rather than by chance.
std::vector<Tensor> structured_grads(const std::vector<Vec>& basis, int64_t n, uint64_t seed) {
  const std::vector<Vec> u = host(random_grads(static_cast<int>(basis[0].size()), n, seed));
  const std::vector<Vec> noise = host(random_grads(static_cast<int>(basis.size()), n, seed + 50));
  std::vector<Tensor> grads;
  for (size_t t = 0; t < basis.size(); ++t) {
    Vec g(static_cast<size_t>(n), 0.0);
    for (int64_t e = 0; e < n; ++e) {
      for (size_t k = 0; k < u.size(); ++k)
        g[e] += basis[t][k] * u[k][e];
      g[e] += 0.05 * noise[t][e];
    }
    grads.push_back(f32(g));
  }
  return grads;
}

TEST(PcGradOps, HandValuesForTwoConflictingTasks) {
  Context ctx;
  // g1 . g2 = -1: h1' = g1 + g2 / 2 = (0.5, 0.5), h2' = g2 + g1 = (0, 1).
  const std::vector<Tensor> grads = {f32({1, 0}), f32({-1, 1})};
  const Tensor gram = task_gram(ctx, grads, u8({1, 1}), 1);
  EXPECT_EQ(gram.to_vector(), (Vec{1, -1, -1, 2}));
  EXPECT_EQ(pcgrad_coefficients(ctx, gram, f32({1, 1})).to_vector(), (Vec{2, 1.5}));
  EXPECT_EQ(pcgrad_by_ops(ctx, grads, u8({1, 1}), {1, 1}, {1, 1}), (Vec{0.5, 1.5}));
}

struct PcGradCase {
  std::string name;
  std::vector<Vec> basis;  // one row per task
  Vec weights, out_of_set;
  bool conflicting;
};

TEST(PcGradOps, MatchesProjectionOfTheVectors) {
  const std::vector<PcGradCase> cases = {
      {"two tasks in conflict", {{1, 0}, {-0.7, 0.5}}, {1, 1}, {0.25, -2}, true},
      {"two tasks without conflict", {{1, 0}, {0.6, 0.8}}, {1, 1}, {1, 1}, false},
      // Every pair conflicts, so the projection order matters.
      {"three tasks, weighted",
       {{1, 0, 0}, {-0.6, 0.8, 0}, {-0.5, -0.5, 0.7}},
       {0.5, 2.0, 1.25},
       {0.3, 0.7, -1.1},
       true},
      {"a zero gradient", {{1, 0}, {0, 0}, {-0.8, 0.4}}, {1.5, 1, 0.75}, {1, 2, 3}, true},
  };
  Context ctx;
  const int64_t n = 150;
  std::vector<int> mask = mixed_mask(n);  // 1 and 3 are shared, 0 and 2 are not
  for (const PcGradCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> grads = structured_grads(c.basis, n, 70);
    std::vector<Vec> g = host(grads);
    if (c.name == "a zero gradient") {
      grads[1].zero_();
      g[1].assign(static_cast<size_t>(n), 0.0);
    }
    int projections = 0;
    const Vec expected = pcgrad_reference(g, mask, c.weights, c.out_of_set, projections);
    EXPECT_EQ(projections > 0, c.conflicting) << projections << " projections";
    expect_vectors_near(pcgrad_by_ops(ctx, grads, u8(mask), c.weights, c.out_of_set), expected,
                        1e-5);
    if (!c.conflicting) {
      // Without conflicts PCGrad is the weighted sum: the coefficients are the weights.
      const Tensor coeff =
          pcgrad_coefficients(ctx, task_gram(ctx, grads, u8(mask), 1), f32(c.weights));
      EXPECT_EQ(coeff.to_vector(), c.weights);
    }
    if (c.basis.size() == 3 && c.name != "a zero gradient") {
      int unused = 0;
      const Vec reversed = pcgrad_reference(g, mask, c.weights, c.out_of_set, unused, true);
      double difference = 0;
      for (size_t e = 0; e < expected.size(); ++e)
        difference = std::max(difference, std::abs(reversed[e] - expected[e]));
      EXPECT_GT(difference, 1e-3) << "this case would not notice a different order";
    }
  }
}

TEST(PcGradOps, NonFiniteGramGivesNonFiniteCoefficients) {
  Context ctx;
  const double inf = std::numeric_limits<double>::infinity();
  for (const Vec& gram : {Vec{inf, 1, 1, 2}, Vec{1, std::nan(""), std::nan(""), 2}}) {
    const Vec c = pcgrad_coefficients(ctx, f32(gram), f32({1, 1})).to_vector();
    for (double v : c)
      EXPECT_TRUE(std::isnan(v)) << v;
  }
}

TEST(TaskGradientOps, CombineWritesInPlaceIntoOneOfTheGradients) {
  Context ctx;
  const std::vector<Tensor> grads = {f32({1, 2, 3, 4}), f32({10, 20, 30, 40})};
  const Tensor mask = u8({1, 0, 2, 3});
  Tensor out = grads[1];
  combine_task_gradients(ctx, grads, mask, 2, f32({1, -1}), f32({0.5, 2}), out);
  // Element 0 and 1 are outside bit 1: 0.5 g0 + 2 g1; 2 and 3 inside: g0 - g1.
  EXPECT_EQ(grads[1].to_vector(), (Vec{20.5, 41, -27, -36}));
}

// ---- GradNorm -------------------------------------------------------------------------

// The weights (f32 [T], start at 1) and the rest of the state (f32 [4, T]: L(0),
// m, v, count; starts at 0).
struct GradNormTensors {
  Tensor w, state;

  explicit GradNormTensors(int tasks)
      : w(Tensor::full(Shape{tasks}, 1.0, DType::f32)),
        state(Tensor::zeros(Shape{4, tasks}, DType::f32)) {}
  GradNormTensors clone() const {
    GradNormTensors c(static_cast<int>(w.numel()));
    c.w = w.clone();
    c.state = state.clone();
    return c;
  }
  void update(Context& ctx, const Tensor& gram, const Tensor& loss_sums,
              const Tensor& scale = Tensor(), const Tensor& skip = Tensor(),
              const GradNormArgs& args = {}) {
    gradnorm_update(ctx, w, state, gram, loss_sums, scale, skip, args);
  }
  // w, then the state's rows.
  Vec values() const {
    Vec v = w.to_vector();
    const Vec s = state.to_vector();
    v.insert(v.end(), s.begin(), s.end());
    return v;
  }
  bool same_bits_as(const GradNormTensors& o) const {
    return same_bits(w, o.w) && same_bits(state, o.state);
  }
};

// A Gram matrix with the given norms on its diagonal (and arbitrary other entries).
Tensor gram_with_norms(const Vec& norms, double scale = 1.0) {
  const int tasks = static_cast<int>(norms.size());
  Vec g(static_cast<size_t>(tasks * tasks), -0.125);
  for (int t = 0; t < tasks; ++t)
    g[t * tasks + t] = norms[t] * norms[t] * scale * scale;
  return f32(g);
}

TEST(GradNormOps, MatchesDoubleReferenceOverSuccessiveUpdates) {
  Context ctx;
  GradNormArgs args;
  args.alpha = 1.2;
  args.lr = 0.05;
  const int tasks = 3;
  GradNormTensors op(tasks);
  GradNormReference ref(tasks, args);
  for (int step = 0; step < 6; ++step) {
    SCOPED_TRACE("update " + std::to_string(step));
    // Task 0 learns fast, task 2 slowly; the norms change too. Two ranks.
    const Vec norms = {2.0 + 0.3 * step, 0.5, 1.0 - 0.1 * step};
    const Vec loss_sums = {2 * 1.5 * std::pow(0.7, step), 2 * 0.8 * std::pow(0.9, step),
                           2 * 3.0 * std::pow(0.98, step), 2};
    op.update(ctx, gram_with_norms(norms), f32(loss_sums), Tensor(), Tensor(), args);
    ref.update(norms, loss_sums);
    const Vec actual = op.values(), expected = ref.values();
    for (size_t k = 0; k < actual.size(); ++k)
      EXPECT_NEAR(actual[k], expected[k], 1e-6 * std::max(1.0, std::abs(expected[k]))) << k;
    EXPECT_NEAR(actual[0] + actual[1] + actual[2], 3.0, 1e-5) << "weights sum to T";
    EXPECT_EQ(actual[4 * tasks], step + 1.0) << "the update count";
    if (step == 0) {
      EXPECT_EQ(actual[tasks], static_cast<float>(1.5)) << "L(0) is the first mean loss";
      // r = 1: the task with the largest norm loses weight, the smallest gains.
      EXPECT_LT(actual[0], 1.0);
      EXPECT_GT(actual[1], 1.0);
    }
  }
}

TEST(GradNormOps, ClampsAtZeroAndRenormalises) {
  Context ctx;
  GradNormArgs args;
  args.lr = 2.0;
  // First Adam step moves each weight by lr against sign(G - mean G): (3, -1)
  // clamps to (3, 0) and rescales to sum 2.
  GradNormTensors s(2);
  s.update(ctx, gram_with_norms({1, 10}), f32({1, 1, 1}), Tensor(), Tensor(), args);
  EXPECT_NEAR(s.w.to_vector()[0], 2.0, 1e-6);
  EXPECT_EQ(s.w.to_vector()[1], 0.0);

  // All weights 0: nothing to rescale, so every weight becomes 1.
  GradNormTensors zero(2);
  zero.w.zero_();
  zero.update(ctx, gram_with_norms({1, 10}), f32({1, 1, 1}), Tensor(), Tensor(), args);
  EXPECT_EQ(zero.w.to_vector(), (Vec{1, 1}));
}

// Two updates, so that the state holds L(0) and moments worth protecting.
GradNormTensors warmed_state(Context& ctx) {
  GradNormTensors s(2);
  for (int step = 0; step < 2; ++step)
    s.update(ctx, gram_with_norms({1.5, 0.5}), f32({1.0 - 0.2 * step, 2.0, 1}));
  return s;
}

TEST(GradNormOps, SkipLeavesStateBitwiseUnchanged) {
  Context ctx;
  GradNormTensors s = warmed_state(ctx);
  const GradNormTensors before = s.clone();
  s.update(ctx, gram_with_norms({3, 0.1}), f32({0.5, 1, 1}), Tensor(), f32({1}));
  EXPECT_TRUE(s.same_bits_as(before));
  s.update(ctx, gram_with_norms({3, 0.1}), f32({0.5, 1, 1}), Tensor(), f32({0}));
  EXPECT_FALSE(same_bits(s.w, before.w)) << "skip = 0 updates the weights";
  EXPECT_FALSE(same_bits(s.state, before.state)) << "and the state";
}

TEST(GradNormOps, NonFiniteLossOrNormLeavesStateUnchanged) {
  Context ctx;
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  struct Bad {
    std::string name;
    Tensor gram, loss_sums;
  };
  const std::vector<Bad> bad = {
      {"NaN loss", gram_with_norms({1, 2}), f32({nan, 1, 1})},
      {"infinite loss", gram_with_norms({1, 2}), f32({1, inf, 1})},
      {"no count", gram_with_norms({1, 2}), f32({1, 1, 0})},
      {"infinite norm", f32({inf, 0, 0, 4}), f32({1, 1, 1})},
      {"NaN norm", f32({1, 0, 0, nan}), f32({1, 1, 1})},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    for (GradNormTensors s : {GradNormTensors(2), warmed_state(ctx)}) {
      const GradNormTensors before = s.clone();
      s.update(ctx, b.gram, b.loss_sums);
      EXPECT_TRUE(s.same_bits_as(before));
    }
  }
}

TEST(GradNormOps, ScaleDividesTheNorms) {
  Context ctx;
  const Vec norms = {0.75, 2.5, 1.25};
  for (double scale : {1024.0, 3.0}) {
    GradNormTensors unscaled(3), scaled(3);
    for (int step = 0; step < 3; ++step) {
      const Tensor losses = f32({1.0 - 0.1 * step, 2.0, 0.5 + 0.2 * step, 1});
      unscaled.update(ctx, gram_with_norms(norms), losses);
      scaled.update(ctx, gram_with_norms(norms, scale), losses, f32({scale}));
    }
    if (scale == 1024.0) {
      // A power of two scales the squared norms exactly.
      EXPECT_TRUE(scaled.same_bits_as(unscaled));
    } else {
      const Vec a = scaled.values(), b = unscaled.values();
      for (size_t k = 0; k < a.size(); ++k)
        EXPECT_NEAR(a[k], b[k], 1e-5 * std::max(1.0, std::abs(b[k]))) << k;
    }
  }
  // Without the division Adam's moments (which scale with the norms) would differ.
  GradNormTensors unscaled(3), ignored(3);
  const Tensor losses = f32({1, 2, 3, 1});
  unscaled.update(ctx, gram_with_norms(norms), losses);
  ignored.update(ctx, gram_with_norms(norms, 4.0), losses);
  EXPECT_FALSE(ignored.same_bits_as(unscaled));
}

// ---- errors ---------------------------------------------------------------------------

TEST(TaskGradientOps, ErrorsNameTheOpAndTheProblem) {
  Context ctx;
  const std::vector<Tensor> two = {f32({1, 2, 3}), f32({4, 5, 6})};
  const Tensor mask = u8({1, 1, 0});
  const Tensor w = f32({1, 1});

  expect_error(
      [&] {
        task_gram(ctx, {f32({1, 2, 3}), f32({1, 2})}, mask, 1);
      },
      {"task_gram", "grads[1]", "f32[3]", "f32[2]"});
  expect_error([&] { task_gram(ctx, two, f32({1, 1, 0}), 1); }, {"task_gram", "mask", "u8[3]"});
  expect_error([&] { task_gram(ctx, two, mask, 0); }, {"task_gram", "bits"});
  expect_error([&] { task_gram(ctx, {}, mask, 1); }, {"task_gram", "1 to 8 tasks", "got 0"});
  expect_error([&] { task_gram(ctx, std::vector<Tensor>(9, two[0]), mask, 1); },
               {"task_gram", "got 9"});
  expect_error(
      [&] {
        task_gram(ctx, {two[0].cast_cpu(DType::f64), two[1]}, mask, 1);
      },
      {"task_gram", "grads[0]", "f64"});
  expect_error(
      [&] {
        task_gram(ctx, {two[0].view(Shape{1, 3}), two[1]}, mask, 1);
      },
      {"task_gram", "flat", "[1, 3]"});

  expect_error(
      [&] {
        pcgrad_coefficients(ctx, f32({1, 0, 0}), w);
      },
      {"pcgrad_coefficients", "gram", "f32[4]", "f32[3]"});
  expect_error(
      [&] {
        pcgrad_coefficients(ctx, f32({1, 0, 0, 1}), w.cast_cpu(DType::f64));
      },
      {"pcgrad_coefficients", "weights", "f64"});

  Tensor out = Tensor::zeros(Shape{3}, DType::f32);
  Tensor short_out = Tensor::zeros(Shape{2}, DType::f32);
  expect_error([&] { combine_task_gradients(ctx, two, mask, 1, w, w, short_out); },
               {"combine_task_gradients", "out", "f32[3]", "f32[2]"});
  expect_error(
      [&] {
        combine_task_gradients(ctx, two, mask, 1, f32({1, 1, 1}), w, out);
      },
      {"combine_task_gradients", "in_set", "f32[2]"});
  expect_error([&] { combine_task_gradients(ctx, two, mask, 1, w, f32({1}), out); },
               {"combine_task_gradients", "out_of_set"});

  const Tensor gram = f32({1, 0, 0, 1});
  const Tensor sums = f32({1, 1, 1});
  GradNormTensors g(2);
  Tensor old_state = Tensor::zeros(Shape{5, 2}, DType::f32);
  expect_error([&] { gradnorm_update(ctx, g.w, old_state, gram, sums, Tensor(), Tensor(), {}); },
               {"gradnorm_update", "state", "[4, 2]", "[5, 2]"});
  Tensor many = Tensor::full(Shape{9}, 1.0, DType::f32);
  expect_error([&] { gradnorm_update(ctx, many, g.state, gram, sums, Tensor(), Tensor(), {}); },
               {"gradnorm_update", "1 to 8 tasks", "got 9"});
  expect_error(
      [&] {
        g.update(ctx, gram, f32({1, 1}));
      },
      {"gradnorm_update", "loss_sums", "f32[3]"});
  expect_error(
      [&] {
        g.update(ctx, f32({1, 0, 0, 1, 0}), sums);
      },
      {"gradnorm_update", "gram", "f32[4]", "f32[5]"});
  expect_error(
      [&] {
        g.update(ctx, gram, sums, f32({1, 2}));
      },
      {"gradnorm_update", "scale", "one f32 value"});
  expect_error(
      [&] { g.update(ctx, gram, sums, Tensor(), Tensor::from_vector({0}, Shape{1}, DType::i32)); },
      {"gradnorm_update", "skip"});
  GradNormArgs bad;
  bad.beta2 = 1.0;
  expect_error([&] { g.update(ctx, gram, sums, Tensor(), Tensor(), bad); },
               {"gradnorm_update", "beta2 1"});
}

}  // namespace
}  // namespace cohort::core::ops
