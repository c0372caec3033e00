// Dispatchers for the losses: validate, then run on the context's device.
#include <fmt/format.h>

#include <cmath>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/loss_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

namespace cohort::core::ops {
namespace {

void check_dloss(const char* op, const Context& ctx, const Tensor& dloss) {
  check_defined(op, "dloss", dloss);
  check_floating(op, "dloss", dloss);
  COHORT_CHECK(dloss.numel() == 1,
               fmt::format("{}: dloss must hold exactly one element, got {}", op, dloss.str()));
  check_device(op, ctx, {&dloss});
}

// logits [..., C]; labels [...] (logits' shape without C) as u8/i32/i64;
// class_weights absent or f32 [C].
void check_cross_entropy(const char* op, const Context& ctx, const Tensor& logits,
                         const Tensor& labels, const Tensor& class_weights) {
  check_defined(op, "logits", logits);
  check_defined(op, "labels", labels);
  check_floating(op, "logits", logits);
  COHORT_CHECK(logits.rank() >= 2 && logits.dim(-1) > 0,
               fmt::format("{}: logits must be [..., C] with C > 0 and at least 2 dims, got {}", op,
                           logits.str()));
  const auto dims = logits.shape().dims();
  const Shape label_shape(dims.first(dims.size() - 1));
  COHORT_CHECK(labels.shape() == label_shape,
               fmt::format("{}: labels must have shape {} (logits {} without the class dim), "
                           "got {}",
                           op, label_shape.str(), logits.str(), labels.str()));
  COHORT_CHECK(
      labels.dtype() == DType::u8 || labels.dtype() == DType::i32 || labels.dtype() == DType::i64,
      fmt::format("{}: labels must be u8, i32 or i64, got {} (logits {})", op, labels.str(),
                  logits.str()));
  if (class_weights.defined())
    COHORT_CHECK(class_weights.dtype() == DType::f32 && class_weights.shape() == Shape{dims.back()},
                 fmt::format("{}: class_weights must be f32[{}] (the classes of logits {}), got {}",
                             op, dims.back(), logits.str(), class_weights.str()));
  check_device(op, ctx, {&logits, &labels, &class_weights});
}

void check_regression(const char* op, const Context& ctx, const Tensor& pred, const Tensor& target,
                      const Tensor& mask, double beta) {
  check_defined(op, "pred", pred);
  check_defined(op, "target", target);
  check_floating(op, "pred", pred);
  check_same_shape(op, "pred", pred, "target", target);
  check_same_dtype(op, "pred", pred, "target", target);
  if (mask.defined()) {
    check_same_shape(op, "pred", pred, "mask", mask);
    COHORT_CHECK(
        mask.dtype() == DType::u8 || mask.dtype() == DType::f32,
        fmt::format("{}: mask must be u8 or f32, got {} (pred {})", op, mask.str(), pred.str()));
  }
  COHORT_CHECK(beta >= 0 && std::isfinite(beta),
               fmt::format("{}: smooth-L1 beta must be finite and >= 0, got {} (pred {})", op, beta,
                           pred.str()));
  check_device(op, ctx, {&pred, &target, &mask});
}

}  // namespace

Tensor softmax_cross_entropy(Context& ctx, const Tensor& logits, const Tensor& labels,
                             const Tensor& class_weights, int ignore_index) {
  const char* op = "softmax_cross_entropy";
  check_cross_entropy(op, ctx, logits, labels, class_weights);
  COHORT_RUN_ON_DEVICE(op, ctx,
                       softmax_cross_entropy(ctx, logits, labels, class_weights, ignore_index));
}

Tensor softmax_cross_entropy_backward(Context& ctx, const Tensor& dloss, const Tensor& logits,
                                      const Tensor& labels, const Tensor& class_weights,
                                      int ignore_index) {
  const char* op = "softmax_cross_entropy_backward";
  check_cross_entropy(op, ctx, logits, labels, class_weights);
  check_dloss(op, ctx, dloss);
  COHORT_RUN_ON_DEVICE(
      op, ctx,
      softmax_cross_entropy_backward(ctx, dloss, logits, labels, class_weights, ignore_index));
}

Tensor regression_loss(Context& ctx, RegressionLoss kind, const Tensor& pred, const Tensor& target,
                       const Tensor& mask, double beta) {
  const char* op = "regression_loss";
  check_regression(op, ctx, pred, target, mask, beta);
  COHORT_RUN_ON_DEVICE(op, ctx, regression_loss(ctx, kind, pred, target, mask, beta));
}

Tensor regression_loss_backward(Context& ctx, RegressionLoss kind, const Tensor& dloss,
                                const Tensor& pred, const Tensor& target, const Tensor& mask,
                                double beta) {
  const char* op = "regression_loss_backward";
  check_regression(op, ctx, pred, target, mask, beta);
  check_dloss(op, ctx, dloss);
  COHORT_RUN_ON_DEVICE(op, ctx,
                       regression_loss_backward(ctx, kind, dloss, pred, target, mask, beta));
}

Tensor cross_entropy_normaliser(Context& ctx, const Tensor& labels, const Tensor& class_weights,
                                int ignore_index) {
  const char* op = "cross_entropy_normaliser";
  check_defined(op, "labels", labels);
  COHORT_CHECK(
      labels.dtype() == DType::u8 || labels.dtype() == DType::i32 || labels.dtype() == DType::i64,
      fmt::format("{}: labels must be u8, i32 or i64, got {}", op, labels.str()));
  if (class_weights.defined())
    COHORT_CHECK(class_weights.dtype() == DType::f32 && class_weights.rank() == 1,
                 fmt::format("{}: class_weights must be f32 [C], got {}", op, class_weights.str()));
  check_device(op, ctx, {&labels, &class_weights});
  COHORT_RUN_ON_DEVICE(op, ctx, cross_entropy_normaliser(ctx, labels, class_weights, ignore_index));
}

Tensor valid_count(Context& ctx, const Tensor& mask, int64_t numel) {
  const char* op = "valid_count";
  COHORT_CHECK(numel >= 0, fmt::format("{}: numel {} is negative", op, numel));
  if (mask.defined()) {
    COHORT_CHECK(
        mask.numel() == numel && (mask.dtype() == DType::u8 || mask.dtype() == DType::f32),
        fmt::format("{}: mask must be u8 or f32 with {} elements, got {}", op, numel, mask.str()));
    check_device(op, ctx, {&mask});
  }
  COHORT_RUN_ON_DEVICE(op, ctx, valid_count(ctx, mask, numel));
}

Tensor normaliser_share(Context& ctx, const Tensor& local, const Tensor& total, double factor) {
  const char* op = "normaliser_share";
  for (const Tensor* t : {&local, &total})
    COHORT_CHECK(t->defined() && t->dtype() == DType::f32 && t->numel() == 1,
                 fmt::format("{}: local and total must be f32 [1], got {} and {}", op,
                             local.defined() ? local.str() : "undefined",
                             total.defined() ? total.str() : "undefined"));
  COHORT_CHECK(std::isfinite(factor), fmt::format("{}: factor must be finite, got {}", op, factor));
  check_device(op, ctx, {&local, &total});
  COHORT_RUN_ON_DEVICE(op, ctx, normaliser_share(ctx, local, total, factor));
}

}  // namespace cohort::core::ops
