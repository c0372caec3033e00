#pragma once
// Gradient checks by central differences, in double precision, on the CPU.
//
// For an op y = f(x) and a fixed random upstream gradient r, the scalar
// L(x) = sum(r * f(x)) has dL/dx = backward(r). expect_gradient() perturbs each
// element of `x` by +-eps, evaluates L, and compares (L+ - L-)/(2 eps) with the
// analytic gradient element by element.
#include <functional>
#include <string>

#include "core/tensor.hpp"

namespace cohort::testing {

using core::Tensor;

// A CPU f64 tensor of uniform values in [lo, hi), reproducible from `seed`.
Tensor random_tensor(const core::Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                     core::DType dtype = core::DType::f64);

// sum(r * y) in double.
double weighted_sum(const Tensor& r, const Tensor& y);

// `forward` maps the (perturbed) input to an output of r's shape. `analytic` is the
// gradient of sum(r * forward(x)) with respect to x. `x` is perturbed in place and
// restored. Fails the current test (with the first bad index) on mismatch.
void expect_gradient(const std::string& what, const std::function<Tensor()>& forward, Tensor& x,
                     const Tensor& r, const Tensor& analytic, double eps = 1e-6,
                     double rel_tol = 1e-5, double abs_tol = 1e-7);

// Element-wise closeness with |a-b| <= atol + rtol*|b|; reports the worst element.
void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                  double rtol, double atol);

}  // namespace cohort::testing
