#pragma once
// Gradient checks by central differences, in double precision, on the CPU.
//
// For an op y = f(x) and a fixed random upstream gradient r, the scalar
// L(x) = sum(r * f(x)) has dL/dx = backward(r). expect_gradient() perturbs each
// element of `x` by +-eps, evaluates L, and compares (L+ - L-)/(2 eps) with the
// analytic gradient element by element.
#include <functional>
#include <initializer_list>
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

// Ops that resample x [N, H, W, C] to [N, out_h, out_w, C] (adaptive pooling,
// bilinear resizing): for each case, expect_gradient of backward(r, x's shape)
// against forward(x, out_h, out_w), with x drawn from `seed` and r from seed + 1.
struct ResampleCase {
  core::Shape x;
  int out_h, out_w;
};
void expect_resampling_gradients(
    std::initializer_list<ResampleCase> cases, uint64_t seed,
    const std::function<Tensor(const Tensor& x, int out_h, int out_w)>& forward,
    const std::function<Tensor(const Tensor& dy, const core::Shape& x_shape)>& backward);

// Element-wise closeness with |a-b| <= atol + rtol*|b|; reports the worst element.
void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected,
                  double rtol, double atol);

}  // namespace cohort::testing
