// Loss layers: scalar outputs on the device; labels, targets and masks get no gradient.
#include "core/nn/layers.hpp"

#include <fmt/format.h>

namespace cohort::core::nn {

Tensor ValidMeanLoss::shared(Context& ctx, const Tensor& value) const {
  if (!m_share.defined()) return value;
  // The share is f32; losses in double (gradient checks) take it in double.
  const Tensor share =
      m_share.dtype() == value.dtype() ? m_share : ops::cast(ctx, m_share, value.dtype());
  return ops::mul(ctx, value, share);
}

void CrossEntropyLoss::weights_to(Context& ctx) {
  if (m_weights.defined() && m_weights.device() != ctx.device())
    m_weights = m_weights.to(ctx.device(), ctx.stream());
}

Tensor CrossEntropyLoss::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                 const ForwardArgs&) {
  weights_to(ctx);
  saved.tensors = {in[0], in[1]};
  return shared(ctx, ops::softmax_cross_entropy(ctx, in[0], in[1], m_weights, m_ignore));
}

std::vector<Tensor> CrossEntropyLoss::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                               const BackwardArgs&) {
  return {ops::softmax_cross_entropy_backward(ctx, shared(ctx, dy), saved.tensors.at(0),
                                              saved.tensors.at(1), m_weights, m_ignore),
          Tensor()};
}

Tensor CrossEntropyLoss::normaliser(Context& ctx, const Tensor& labels, const Tensor&) {
  weights_to(ctx);
  return ops::cross_entropy_normaliser(ctx, labels, m_weights, m_ignore);
}

Tensor RegressionLossLayer::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                    const ForwardArgs&) {
  const Tensor mask = m_masked ? in[2] : Tensor();
  // Under mixed precision the prediction comes in bf16/f16 while the target stays
  // f32 (depth in metres: bf16 steps are 0.5 m above 64 m), so the loss is taken
  // in the target's dtype and backward hands the gradient back in the
  // prediction's.
  Tensor pred = in[0];
  if (pred.dtype() != in[1].dtype() && is_floating(in[1].dtype()))
    pred = ops::cast(ctx, pred, in[1].dtype());
  saved.tensors = {pred, in[1], mask};
  saved.dtype = in[0].dtype();
  return shared(ctx, ops::regression_loss(ctx, m_kind, pred, in[1], mask, m_beta));
}

std::vector<Tensor> RegressionLossLayer::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                                  const BackwardArgs&) {
  Tensor dpred = ops::regression_loss_backward(ctx, m_kind, shared(ctx, dy), saved.tensors.at(0),
                                               saved.tensors.at(1), saved.tensors.at(2), m_beta);
  if (dpred.dtype() != saved.dtype) dpred = ops::cast(ctx, dpred, saved.dtype);
  std::vector<Tensor> out{dpred, Tensor()};
  if (m_masked) out.emplace_back();
  return out;
}

Tensor RegressionLossLayer::normaliser(Context& ctx, const Tensor& target, const Tensor& mask) {
  return ops::valid_count(ctx, m_masked ? mask : Tensor(), target.numel());
}

Tensor MeanLoss::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                         const ForwardArgs&) {
  saved.shapes = {in[0].shape()};
  saved.dtype = in[0].dtype();
  return ops::mean(ctx, in[0]);
}

std::vector<Tensor> MeanLoss::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                       const BackwardArgs&) {
  return {ops::mean_backward(ctx, dy, saved.shapes.at(0), saved.dtype)};
}

UncertaintyWeighting::UncertaintyWeighting(int num_losses) : m_n(num_losses) {
  COHORT_CHECK(num_losses >= 1 && num_losses <= ops::kMaxBalancedLosses,
               fmt::format("UncertaintyWeighting: 1 to {} losses, got {}", ops::kMaxBalancedLosses,
                           num_losses));
}

std::vector<ParamSpec> UncertaintyWeighting::param_specs() const {
  ParamSpec s;
  s.name = "log_vars";
  s.shape = Shape{m_n};
  s.init = Init::zeros;
  s.no_decay = true;
  s.keep_f32 = true;
  return {s};
}

Tensor UncertaintyWeighting::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                     const ForwardArgs&) {
  saved.tensors = in;
  return ops::uncertainty_weighted_sum(ctx, in, param(0).compute);
}

std::vector<Tensor> UncertaintyWeighting::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                                   const BackwardArgs& args) {
  Tensor dlog_vars = args.param_grads && param(0).trainable ? param(0).compute_grad : Tensor();
  std::vector<Tensor> d = ops::uncertainty_weighted_sum_backward(
      ctx, dy, saved.tensors, param(0).compute, dlog_vars, args.accumulate);
  for (size_t i = 0; i < d.size(); ++i)
    if (!args.needs_input_grad.at(i)) d[i] = Tensor();
  return d;
}

}  // namespace cohort::core::nn
