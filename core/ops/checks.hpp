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
void check_rank(const char* op, const char* name, const Tensor& t, int rank);
void check_floating(const char* op, const char* name, const Tensor& t);
void check_same_dtype(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                      const Tensor& b);
void check_shape_is(const char* op, const char* name, const Tensor& t, const Shape& expected);

}  // namespace cohort::core::ops
