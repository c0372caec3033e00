// BatchNorm2d with optional fused residual add and ReLU.
#include "core/nn/layers.hpp"

namespace cohort::core::nn {

std::vector<ParamSpec> BatchNorm2d::param_specs() const {
  const Shape c{m_o.channels};
  ParamSpec weight{"weight", c, m_o.zero_init ? Init::zeros : Init::ones, 1, 1, true, true};
  ParamSpec bias{"bias", c, Init::zeros, 1, 1, true, true};
  return {weight, bias};
}

std::vector<BufferSpec> BatchNorm2d::buffer_specs() const {
  return {{"running_mean", Shape{m_o.channels}, Init::zeros},
          {"running_var", Shape{m_o.channels}, Init::ones}};
}

Tensor BatchNorm2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                            const ForwardArgs& args) {
  ops::BatchNormArgs a;
  a.momentum = m_o.momentum;
  a.eps = m_o.eps;
  a.relu = m_o.relu;
  if (m_o.residual) a.residual = in[1];
  a.reducer = m_reducer;
  saved.training = args.training && !m_frozen_stats;
  Tensor y = saved.training ? ops::batch_norm_train(ctx, in[0], param(0).compute, param(1).compute,
                                                    buffer(0).value, buffer(1).value, a, saved.bn)
                            : ops::batch_norm_eval(ctx, in[0], param(0).compute, param(1).compute,
                                                   buffer(0).value, buffer(1).value, a, saved.bn);
  saved.tensors = {in[0]};
  if (m_o.relu) saved.tensors.push_back(y);
  return y;
}

std::vector<Tensor> BatchNorm2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                          const BackwardArgs& args) {
  ops::BatchNormArgs a;
  a.momentum = m_o.momentum;
  a.eps = m_o.eps;
  a.relu = m_o.relu;
  a.reducer = m_reducer;
  const Tensor& x = saved.tensors.at(0);
  if (m_o.residual) a.residual = x;  // only its presence matters to backward
  const Tensor y = m_o.relu ? saved.tensors.at(1) : Tensor();
  // Frozen parameters (each on its own: fine-tuning may freeze only the weight)
  // get no gradient; undefined outputs tell the op to skip them. The input
  // gradient is computed either way.
  Tensor dgamma = args.param_grads && param(0).trainable ? param(0).compute_grad : Tensor();
  Tensor dbeta = args.param_grads && param(1).trainable ? param(1).compute_grad : Tensor();
  ops::BatchNormGrads g = ops::batch_norm_backward(ctx, dy, x, y, param(0).compute, saved.bn, a,
                                                   saved.training, dgamma, dbeta, args.accumulate);
  std::vector<Tensor> out{args.needs_input_grad[0] ? g.dx : Tensor()};
  if (m_o.residual) out.push_back(args.needs_input_grad[1] ? g.dresidual : Tensor());
  return out;
}

}  // namespace cohort::core::nn
