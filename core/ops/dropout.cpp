// Dispatchers for dropout: validate, then run on the context's device.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/dropout_cpu.hpp"
#include "core/ops/ops.hpp"
#include "core/ops/philox.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

namespace cohort::core::ops {
namespace {

void check_dropout(const char* op, const Context& ctx, const char* name, const Tensor& t,
                   double p) {
  check_defined(op, name, t);
  check_floating(op, name, t);
  check_device(op, ctx, {&t});
  // Written so that NaN fails too.
  COHORT_CHECK(p >= 0 && p <= 1,
               fmt::format("{}: drop probability p must be in [0, 1], got {} ({} {})", op, p, name,
                           t.str()));
}

#ifndef COHORT_WITH_CUDA
[[noreturn]] void no_cuda(const char* op, const Context& ctx) {
  COHORT_FAIL(fmt::format("{}: context is on {} but this build has no CUDA backend", op,
                          ctx.device().str()));
}
#endif

}  // namespace

Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset) {
  check_dropout("dropout", ctx, "x", x, p);
  if (ctx.device().is_cpu()) return cpu::dropout(ctx, x, p, offset);
#ifdef COHORT_WITH_CUDA
  return cuda::dropout(ctx, x, p, offset);
#else
  no_cuda("dropout", ctx);
#endif
}

Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset) {
  check_dropout("dropout_backward", ctx, "dy", dy, p);
  if (ctx.device().is_cpu()) return cpu::dropout_backward(ctx, dy, p, offset);
#ifdef COHORT_WITH_CUDA
  return cuda::dropout_backward(ctx, dy, p, offset);
#else
  no_cuda("dropout_backward", ctx);
#endif
}

uint32_t philox_uniform_bits(uint64_t seed, uint64_t offset, uint64_t index) {
  return philox4x32_first(seed, offset, index);
}

}  // namespace cohort::core::ops
