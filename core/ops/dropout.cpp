// Dispatchers for dropout: validate, then run on the context's device.
#include <fmt/format.h>

#include "core/ops/checks.hpp"
#include "core/ops/cpu/dropout_cpu.hpp"
#include "core/ops/dispatch.hpp"
#include "core/ops/ops.hpp"
#include "core/ops/philox.hpp"

namespace cohort::core::ops {
namespace {

void check_dropout(const char* op, const Context& ctx, const char* name, const Tensor& t,
                   double p) {
  check_float_input(op, ctx, name, t);
  // Written so that NaN fails too.
  COHORT_CHECK(p >= 0 && p <= 1,
               fmt::format("{}: drop probability p must be in [0, 1], got {} ({} {})", op, p, name,
                           t.str()));
}

}  // namespace

Tensor dropout(Context& ctx, const Tensor& x, double p, uint64_t offset) {
  check_dropout("dropout", ctx, "x", x, p);
  COHORT_RUN_ON_DEVICE("dropout", ctx, dropout(ctx, x, p, offset));
}

Tensor dropout_backward(Context& ctx, const Tensor& dy, double p, uint64_t offset) {
  check_dropout("dropout_backward", ctx, "dy", dy, p);
  COHORT_RUN_ON_DEVICE("dropout_backward", ctx, dropout_backward(ctx, dy, p, offset));
}

uint32_t philox_uniform_bits(uint64_t seed, uint64_t offset, uint64_t index) {
  return philox4x32_first(seed, offset, index);
}

}  // namespace cohort::core::ops
