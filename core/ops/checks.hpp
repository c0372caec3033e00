#pragma once
// Argument checks shared by the op dispatchers: every failure names the op and
// the tensors involved, with their shapes, dtypes and devices.
#include <initializer_list>
#include <string>

#include "core/context.hpp"
#include "core/tensor.hpp"

namespace cohort::core::ops {

// `a` and `b` must have equal shapes.
void check_same_shape(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b);
// Every defined tensor in `tensors` must live on ctx's device.
void check_device(const char* op, const Context& ctx, std::initializer_list<const Tensor*> tensors);
void check_defined(const char* op, const char* name, const Tensor& t);
// `t` must be defined, floating point and on ctx's device (checked in that order).
void check_float_input(const char* op, const Context& ctx, const char* name, const Tensor& t);
void check_rank(const char* op, const char* name, const Tensor& t, int rank);
void check_floating(const char* op, const char* name, const Tensor& t);
void check_same_dtype(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b);
void check_shape_is(const char* op, const char* name, const Tensor& t, const Shape& expected);
// An NHWC op that resamples x [N, H, W, C] to [N, out_h, out_w, C] needs H, W,
// out_h and out_w positive.
void check_resample_sizes(const char* op, const Shape& x, int64_t out_h, int64_t out_w);
// The gradient dy of an NHWC op that changes only H and W must keep x's N and C.
void check_same_batch_and_channels(const char* op, const Tensor& dy, const Shape& x_shape);

// Throws "<op>: context is on <device> but this build has no CUDA backend". Only
// COHORT_RUN_ON_DEVICE (dispatch.hpp) calls it, in a build without CUDA.
[[noreturn]] void fail_no_cuda(const char* op, const Context& ctx);

}  // namespace cohort::core::ops
