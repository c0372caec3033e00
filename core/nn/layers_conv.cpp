// Convolution and linear layers.
#include <fmt/format.h>

#include "core/nn/layers.hpp"

namespace cohort::core::nn {
namespace {
Tensor bias_or_none(bool has_bias, const std::vector<Parameter*>& params) {
  return has_bias ? params.at(1)->compute : Tensor();
}

// "weight" (and "bias" of `bias_size` elements, no weight decay) with PyTorch's fans.
std::vector<ParamSpec> weight_and_bias(const Shape& weight, Init init, int64_t fan_in,
                                       int64_t fan_out, bool bias, int64_t bias_size) {
  std::vector<ParamSpec> specs{{"weight", weight, init, fan_in, fan_out}};
  if (bias)
    specs.push_back({"bias", Shape{bias_size}, Init::uniform_fan_in, fan_in, fan_out, true});
  return specs;
}
}  // namespace

// ---- Conv2d ----------------------------------------------------------------------
std::vector<ParamSpec> Conv2d::param_specs() const {
  const int64_t k = m_o.kernel_h * m_o.kernel_w;
  return weight_and_bias(Shape{m_o.out_channels, m_o.kernel_h, m_o.kernel_w, m_o.in_channels},
                         m_o.init, m_o.in_channels * k, m_o.out_channels * k, m_o.bias,
                         m_o.out_channels);
}

Tensor Conv2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                       const ForwardArgs&) {
  saved.tensors = {in[0]};
  return ops::conv2d(ctx, in[0], param(0).compute, bias_or_none(m_o.bias, params()), m_o.geometry);
}

std::vector<Tensor> Conv2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                     const BackwardArgs& args) {
  const Tensor& x = saved.tensors.at(0);
  if (args.param_grads) {
    if (param(0).trainable)
      ops::conv2d_backward_weight(ctx, dy, x, param(0).compute_grad, args.accumulate, m_o.geometry);
    if (m_o.bias && param(1).trainable)
      ops::bias_backward(ctx, dy, param(1).compute_grad, args.accumulate);
  }
  if (!args.needs_input_grad[0]) return {Tensor()};
  return {ops::conv2d_backward_input(ctx, dy, param(0).compute, x.shape(), m_o.geometry)};
}

// ---- ConvTranspose2d -------------------------------------------------------------
std::vector<ParamSpec> ConvTranspose2d::param_specs() const {
  // PyTorch computes fan_in of a transposed conv from weight.size(1) * kh * kw = out * k * k.
  const int64_t k = m_o.kernel_h * m_o.kernel_w;
  return weight_and_bias(Shape{m_o.in_channels, m_o.kernel_h, m_o.kernel_w, m_o.out_channels},
                         m_o.init, m_o.out_channels * k, m_o.in_channels * k, m_o.bias,
                         m_o.out_channels);
}

Tensor ConvTranspose2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                const ForwardArgs&) {
  saved.tensors = {in[0]};
  return ops::conv_transpose2d(ctx, in[0], param(0).compute, bias_or_none(m_o.bias, params()),
                               m_o.geometry);
}

std::vector<Tensor> ConvTranspose2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                              const BackwardArgs& args) {
  const Tensor& x = saved.tensors.at(0);
  if (args.param_grads) {
    if (param(0).trainable)
      ops::conv_transpose2d_backward_weight(ctx, dy, x, param(0).compute_grad, args.accumulate,
                                            m_o.geometry);
    if (m_o.bias && param(1).trainable)
      ops::bias_backward(ctx, dy, param(1).compute_grad, args.accumulate);
  }
  if (!args.needs_input_grad[0]) return {Tensor()};
  return {ops::conv_transpose2d_backward_input(ctx, dy, param(0).compute, x.shape(), m_o.geometry)};
}

// ---- Linear ------------------------------------------------------------------------
std::vector<ParamSpec> Linear::param_specs() const {
  return weight_and_bias(Shape{m_out, m_in}, Init::kaiming_uniform, m_in, m_out, m_bias, m_out);
}

Tensor Linear::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                       const ForwardArgs&) {
  saved.tensors = {in[0]};
  return ops::linear(ctx, in[0], param(0).compute, bias_or_none(m_bias, params()));
}

std::vector<Tensor> Linear::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                     const BackwardArgs& args) {
  const Tensor& x = saved.tensors.at(0);
  if (args.param_grads) {
    if (param(0).trainable)
      ops::linear_backward_weight(ctx, dy, x, param(0).compute_grad, args.accumulate);
    if (m_bias && param(1).trainable)
      ops::bias_backward(ctx, dy, param(1).compute_grad, args.accumulate);
  }
  if (!args.needs_input_grad[0]) return {Tensor()};
  return {ops::linear_backward_input(ctx, dy, param(0).compute)};
}

}  // namespace cohort::core::nn
