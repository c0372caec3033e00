#pragma once
// How a dispatcher in core/ops/*.cpp hands a validated call to a backend: the
// CPU implementation in core/ops/cpu, the CUDA implementation of the same name
// in core/ops/cuda, or an error in a build without CUDA.
#include "core/ops/checks.hpp"
#ifdef COHORT_WITH_CUDA
#include "core/ops/cuda/cuda_ops.hpp"
#endif

// Returns cpu::call on a CPU context and cuda::call otherwise, where `call` is
// the backend function's name with its arguments, e.g. relu(ctx, x); `op` names
// the op in the error of a build without CUDA. A macro because cuda::call must
// not even be named where the CUDA backend is not compiled in.
#ifdef COHORT_WITH_CUDA
#define COHORT_RUN_ON_DEVICE(op, ctx, call)      \
  if ((ctx).device().is_cpu()) return cpu::call; \
  return cuda::call
#else
#define COHORT_RUN_ON_DEVICE(op, ctx, call)      \
  if ((ctx).device().is_cpu()) return cpu::call; \
  ::cohort::core::ops::fail_no_cuda(op, ctx)
#endif
