#pragma once
// Small helpers shared by the CPU op, checkpoint and safetensors tests: literal
// tensors, random bit patterns, error-message checks and the accumulate-flag
// check of gradient ops.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace cohort::testing {

using core::Tensor;

// A CPU tensor holding `v` (f64 unless told otherwise).
Tensor values(const std::vector<double>& v, const core::Shape& shape,
              core::DType dtype = core::DType::f64);

// A CPU tensor whose bytes are arbitrary (for floats this includes NaNs with
// payloads, infinities and denormals), so only a bit-exact copy reproduces it.
Tensor random_bytes(const core::Shape& shape, core::DType dtype, uint32_t seed);

// Same dtype, same shape and the same bytes.
bool same_bits(const Tensor& a, const Tensor& b);

// The message of the cohort::Error that fn throws; "" when it throws nothing.
std::string error_of(const std::function<void()>& fn);

// Runs fn, which must throw cohort::Error whose message contains every fragment.
void expect_error(const std::function<void()>& fn, std::initializer_list<std::string> fragments);

// The accumulate flag of a gradient op: backward(buffer, false) must overwrite a
// buffer full of `junk`, and backward(buffer, true) must add onto a buffer
// holding `prior` (within rtol/atol). Returns the overwritten gradient.
Tensor expect_accumulates(const std::string& what, const Tensor& prior,
                          const std::function<void(Tensor&, bool)>& backward, double junk,
                          double rtol, double atol);

}  // namespace cohort::testing
