// Dispatcher for the per-task gradient ops behind loss.balancing pcgrad and
// gradnorm (Gram matrices, PCGrad coefficients, combined gradients, GradNorm's
// weight update): validate, then run on the context's device. Every kernel reads
// f32 only, so the checks pin dtypes exactly rather than accepting any float.
#include <fmt/format.h>

#include <cmath>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/task_gradients_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::ops {
namespace {

void check_task_count(const char* op, int64_t tasks) {
  COHORT_CHECK(tasks >= 1 && tasks <= kMaxBalancedLosses,
               fmt::format("{}: needs 1 to {} tasks, got {}", op, kMaxBalancedLosses, tasks));
}

// `t` is defined, of dtype `dtype`, of exactly `shape`, and on ctx's device.
void check_tensor(const char* op, const Context& ctx, const char* name, const Tensor& t,
                  DType dtype, const Shape& shape) {
  check_defined(op, name, t);
  COHORT_CHECK(t.dtype() == dtype && t.shape() == shape,
               fmt::format("{}: {} must be {}{}, got {}", op, name, dtype_name(dtype), shape.str(),
                           t.str()));
  check_device(op, ctx, {&t});
}

// Undefined, or one f32 value on ctx's device.
void check_optional_scalar(const char* op, const Context& ctx, const char* name, const Tensor& t) {
  if (!t.defined()) return;
  COHORT_CHECK(t.dtype() == DType::f32 && t.numel() == 1,
               fmt::format("{}: {} must be undefined or one f32 value, got {}", op, name, t.str()));
  check_device(op, ctx, {&t});
}

void check_bits(const char* op, uint8_t bits) {
  COHORT_CHECK(bits != 0, fmt::format("{}: bits must select at least one mask bit, got 0", op));
}

// 1 to kMaxBalancedLosses f32 [n] gradients and a u8 [n] mask, all on ctx's
// device; returns n.
int64_t check_grads_and_mask(const char* op, const Context& ctx, const std::vector<Tensor>& grads,
                             const Tensor& mask) {
  check_task_count(op, static_cast<int64_t>(grads.size()));
  check_defined(op, "grads[0]", grads[0]);
  COHORT_CHECK(
      grads[0].rank() == 1,
      fmt::format("{}: task gradients must be flat f32 [n], got grads[0] {}", op, grads[0].str()));
  const int64_t n = grads[0].numel();
  for (size_t t = 0; t < grads.size(); ++t) {
    const std::string name = fmt::format("grads[{}]", t);
    check_tensor(op, ctx, name.c_str(), grads[t], DType::f32, Shape{n});
  }
  check_tensor(op, ctx, "mask", mask, DType::u8, Shape{n});
  return n;
}

// The weights, f32 [T]: returns T.
int64_t check_weights(const char* op, const Context& ctx, const Tensor& weights) {
  check_defined(op, "weights", weights);
  COHORT_CHECK(weights.rank() == 1,
               fmt::format("{}: weights must be f32 [T], got {}", op, weights.str()));
  const int64_t tasks = weights.numel();
  check_task_count(op, tasks);
  check_tensor(op, ctx, "weights", weights, DType::f32, Shape{tasks});
  return tasks;
}

}  // namespace

Tensor task_gram(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask, uint8_t bits) {
  const char* op = "task_gram";
  check_bits(op, bits);
  check_grads_and_mask(op, ctx, grads, mask);
  COHORT_RUN_ON_DEVICE(op, ctx, task_gram(ctx, grads, mask, bits));
}

Tensor pcgrad_coefficients(Context& ctx, const Tensor& gram, const Tensor& weights) {
  const char* op = "pcgrad_coefficients";
  const int64_t tasks = check_weights(op, ctx, weights);
  check_tensor(op, ctx, "gram", gram, DType::f32, Shape{tasks * tasks});
  COHORT_RUN_ON_DEVICE(op, ctx, pcgrad_coefficients(ctx, gram, weights));
}

void combine_task_gradients(Context& ctx, const std::vector<Tensor>& grads, const Tensor& mask,
                            uint8_t bits, const Tensor& in_set, const Tensor& out_of_set,
                            Tensor& out) {
  const char* op = "combine_task_gradients";
  check_bits(op, bits);
  const int64_t n = check_grads_and_mask(op, ctx, grads, mask);
  const int64_t tasks = static_cast<int64_t>(grads.size());
  check_tensor(op, ctx, "in_set", in_set, DType::f32, Shape{tasks});
  check_tensor(op, ctx, "out_of_set", out_of_set, DType::f32, Shape{tasks});
  check_tensor(op, ctx, "out", out, DType::f32, Shape{n});
  COHORT_RUN_ON_DEVICE(op, ctx,
                       combine_task_gradients(ctx, grads, mask, bits, in_set, out_of_set, out));
}

void gradnorm_update(Context& ctx, Tensor& weights, Tensor& state, const Tensor& gram,
                     const Tensor& loss_sums, const Tensor& scale, const Tensor& skip,
                     const GradNormArgs& args) {
  const char* op = "gradnorm_update";
  const int64_t tasks = check_weights(op, ctx, weights);
  check_tensor(op, ctx, "state", state, DType::f32, Shape{4, tasks});
  check_tensor(op, ctx, "gram", gram, DType::f32, Shape{tasks * tasks});
  check_tensor(op, ctx, "loss_sums", loss_sums, DType::f32, Shape{tasks + 1});
  check_optional_scalar(op, ctx, "scale", scale);
  check_optional_scalar(op, ctx, "skip", skip);
  COHORT_CHECK(std::isfinite(args.alpha) && std::isfinite(args.lr) && args.lr >= 0 &&
                   args.beta1 >= 0 && args.beta1 < 1 && args.beta2 >= 0 && args.beta2 < 1 &&
                   args.eps > 0,
               fmt::format("{}: needs finite alpha, lr >= 0, 0 <= beta1, beta2 < 1 and eps > 0, "
                           "got alpha {}, lr {}, beta1 {}, beta2 {}, eps {}",
                           op, args.alpha, args.lr, args.beta1, args.beta2, args.eps));
  COHORT_RUN_ON_DEVICE(op, ctx,
                       gradnorm_update(ctx, weights, state, gram, loss_sums, scale, skip, args));
}

}  // namespace cohort::core::ops
