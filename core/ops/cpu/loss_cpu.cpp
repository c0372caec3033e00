#include "core/ops/cpu/loss_cpu.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/ops/cpu/cpu_dispatch.hpp"

namespace cohort::core::ops::cpu {
namespace {

template <typename F>
auto dispatch_label(const char* op, const Tensor& labels, F&& f) {
  switch (labels.dtype()) {
    case DType::u8:
      return f(uint8_t{});
    case DType::i32:
      return f(int32_t{});
    case DType::i64:
      return f(int64_t{});
    default:
      break;
  }
  COHORT_FAIL(fmt::format("{}: labels must be u8, i32 or i64, got {}", op, labels.str()));
}

Tensor scalar(Context& ctx, double value, DType dtype) {
  Tensor t = Tensor::empty(Shape{1}, dtype, ctx.device(), ctx.stream());
  if (dtype == DType::f64)
    t.data<double>()[0] = value;
  else
    t.data<float>()[0] = static_cast<float>(value);
  return t;
}

// One view of the cross-entropy inputs: rows of C logits, one label per row.
// Rows whose label is ignore_index get weight 0; other labels must lie in [0, C).
template <typename T, typename L>
struct CrossEntropyRows {
  const char* op;
  const Tensor& logits;
  const Tensor& labels;
  const Tensor& class_weights;
  int ignore_index;

  int64_t classes() const { return logits.dim(-1); }
  int64_t rows() const { return labels.numel(); }
  const T* row(int64_t r) const { return logits.data<T>() + r * classes(); }

  // Class of row r, or -1 when it is ignored.
  int64_t label(int64_t r) const {
    const int64_t y = static_cast<int64_t>(labels.data<L>()[r]);
    if (y == ignore_index) return -1;
    COHORT_CHECK(y >= 0 && y < classes(),
                 fmt::format("{}: label {} at flat position {} is outside [0, {}) and is not "
                             "ignore_index {} (logits {}, labels {})",
                             op, y, r, classes(), ignore_index, logits.str(), labels.str()));
    return y;
  }
  double weight(int64_t y) const {
    return class_weights.defined() ? class_weights.data<float>()[y] : 1.0;
  }
  // log(sum(exp(z))) with the maximum factored out, so large logits cannot overflow.
  double log_sum_exp(const T* z) const {
    const double top = *std::max_element(z, z + classes());
    double s = 0;
    for (int64_t c = 0; c < classes(); ++c)
      s += std::exp(z[c] - top);
    return top + std::log(s);
  }
  // sum of weight(label) over the rows that count: the 'mean' divisor.
  double total_weight() const {
    double w = 0;
    for (int64_t r = 0; r < rows(); ++r)
      if (const int64_t y = label(r); y >= 0) w += weight(y);
    return w;
  }
};

template <typename F>
auto dispatch_ce(const char* op, const Tensor& logits, const Tensor& labels, F&& f) {
  return dispatch_float(op, logits, [&](auto ttag) {
    return dispatch_label(op, labels, [&](auto ltag) { return f(ttag, ltag); });
  });
}

// Per-element loss value and derivative with respect to d = pred - target.
struct RegressionTerm {
  RegressionLoss kind;
  double beta;
  // beta == 0 makes smooth-L1 plain L1 (PyTorch does the same).
  bool quadratic(double ad) const { return kind == RegressionLoss::smooth_l1 && ad < beta; }
  double value(double d) const {
    const double ad = std::abs(d);
    return quadratic(ad) ? 0.5 * d * d / beta : (kind == RegressionLoss::l1 ? ad : ad - 0.5 * beta);
  }
  double slope(double d) const {
    if (quadratic(std::abs(d))) return d / beta;
    return static_cast<double>((d > 0) - (d < 0));  // sign(0) = 0, as torch.sign
  }
};

// valid(i) for the optional mask: u8 or f32, nonzero means valid.
struct MaskView {
  const Tensor& mask;
  bool operator()(int64_t i) const {
    if (!mask.defined()) return true;
    switch (mask.dtype()) {
      case DType::u8:
        return mask.data<uint8_t>()[i] != 0;
      case DType::f32:
        return mask.data<float>()[i] != 0;
      default:
        COHORT_FAIL(fmt::format("regression_loss: mask must be u8 or f32, got {}", mask.str()));
    }
  }
  int64_t count(int64_t n) const {
    int64_t valid = 0;
    for (int64_t i = 0; i < n; ++i)
      valid += (*this)(i) ? 1 : 0;
    return valid;
  }
};

}  // namespace

// Mean over counted rows of weight * (log_sum_exp(z) - z[y]). When no row counts
// (all ignored, or all their weights 0) the loss is 0, not PyTorch's NaN (0/0):
// a crop without labelled pixels must not poison a training run.
Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index) {
  const char* op = "softmax_cross_entropy";
  return dispatch_ce(op, logits, labels, [&](auto ttag, auto ltag) {
    using T = decltype(ttag);
    const CrossEntropyRows<T, decltype(ltag)> ce{op, logits, labels, class_weights, ignore_index};
    double loss = 0, total = 0;
    for (int64_t r = 0; r < ce.rows(); ++r) {
      const int64_t y = ce.label(r);
      if (y < 0) continue;
      const T* z = ce.row(r);
      loss += ce.weight(y) * (ce.log_sum_exp(z) - z[y]);
      total += ce.weight(y);
    }
    return scalar(ctx, total > 0 ? loss / total : 0.0, logits.dtype());
  });
}

// dz = dloss * weight(y) / total * (softmax(z) - onehot(y)); zero for ignored rows.
Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index) {
  const char* op = "softmax_cross_entropy_backward";
  return dispatch_ce(op, logits, labels, [&](auto ttag, auto ltag) {
    using T = decltype(ttag);
    const CrossEntropyRows<T, decltype(ltag)> ce{op, logits, labels, class_weights, ignore_index};
    const double total = ce.total_weight();
    const double upstream = dloss.item();  // a CPU tensor: no stream to wait for
    Tensor dz = Tensor::zeros(logits.shape(), logits.dtype(), ctx.device(), ctx.stream());
    if (total <= 0) return dz;
    const int64_t classes = ce.classes();
    for (int64_t r = 0; r < ce.rows(); ++r) {
      const int64_t y = ce.label(r);
      if (y < 0) continue;
      const T* z = ce.row(r);
      T* g = dz.data<T>() + r * classes;
      const double lse = ce.log_sum_exp(z), k = upstream * ce.weight(y) / total;
      for (int64_t c = 0; c < classes; ++c)
        g[c] = static_cast<T>(k * (std::exp(z[c] - lse) - (c == y ? 1.0 : 0.0)));
    }
    return dz;
  });
}

// Mean over valid elements; with none valid the loss (and gradient) is 0.
Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta) {
  return dispatch_float("regression_loss", pred, [&](auto tag) {
    using T = decltype(tag);
    const RegressionTerm term{kind, beta};
    const MaskView valid{mask};
    const T* p = pred.data<T>();
    const T* t = target.data<T>();
    double loss = 0;
    int64_t count = 0;
    for (int64_t i = 0, n = pred.numel(); i < n; ++i) {
      if (!valid(i)) continue;
      loss += term.value(static_cast<double>(p[i]) - t[i]);
      ++count;
    }
    return scalar(ctx, count > 0 ? loss / static_cast<double>(count) : 0.0, pred.dtype());
  });
}

// Gradient with respect to pred (the target's is its negative).
Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta) {
  return dispatch_float("regression_loss_backward", pred, [&](auto tag) {
    using T = decltype(tag);
    const RegressionTerm term{kind, beta};
    const MaskView valid{mask};
    const int64_t n = pred.numel(), count = valid.count(n);
    Tensor dpred = Tensor::zeros(pred.shape(), pred.dtype(), ctx.device(), ctx.stream());
    if (count == 0) return dpred;
    const double k = dloss.item() / static_cast<double>(count);
    const T* p = pred.data<T>();
    const T* t = target.data<T>();
    T* g = dpred.data<T>();
    for (int64_t i = 0; i < n; ++i)
      if (valid(i)) g[i] = static_cast<T>(k * term.slope(static_cast<double>(p[i]) - t[i]));
    return dpred;
  });
}

Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index) {
  const char* op = "cross_entropy_normaliser";
  const int64_t classes = class_weights.defined() ? class_weights.numel() : 0;
  const double total = dispatch_label(op, labels, [&](auto ltag) {
    using L = decltype(ltag);
    const L* y = labels.data<L>();
    double sum = 0;
    for (int64_t r = 0; r < labels.numel(); ++r) {
      const int64_t label = static_cast<int64_t>(y[r]);
      if (label == ignore_index) continue;
      if (!class_weights.defined()) {
        sum += 1;
        continue;
      }
      COHORT_CHECK(label >= 0 && label < classes,
                   fmt::format("{}: label {} at flat position {} is outside [0, {}) and is not "
                               "ignore_index {} (labels {})",
                               op, label, r, classes, ignore_index, labels.str()));
      sum += class_weights.data<float>()[label];
    }
    return sum;
  });
  return scalar(ctx, total, DType::f32);
}

Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel) {
  return scalar(ctx, static_cast<double>(MaskView{mask}.count(numel)), DType::f32);
}

Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor) {
  const double l = local.data<float>()[0], t = total.data<float>()[0];
  const double share = std::isnan(l) || std::isnan(t) ? NAN : (t == 0 ? 0.0 : factor * l / t);
  return scalar(ctx, share, DType::f32);
}

}  // namespace cohort::core::ops::cpu
