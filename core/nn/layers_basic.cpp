// Parameter-free layers: activations, pooling, reshaping, resizing, dropout.
#include <fmt/format.h>

#include "core/nn/layers.hpp"

namespace cohort::core::nn {

Tensor ReLU::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                     const ForwardArgs&) {
  Tensor y = ops::relu(ctx, in[0]);
  saved.tensors = {y};
  return y;
}

std::vector<Tensor> ReLU::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                   const BackwardArgs&) {
  return {ops::relu_backward(ctx, dy, saved.tensors.at(0))};
}

Tensor Scale::forward(Context& ctx, const std::vector<Tensor>& in, Saved&, const ForwardArgs&) {
  return ops::scale(ctx, in[0], m_alpha);
}

std::vector<Tensor> Scale::backward(Context& ctx, const Tensor& dy, Saved&,
                                    const BackwardArgs& args) {
  if (!args.needs_input_grad.empty() && !args.needs_input_grad[0]) return {Tensor()};
  return {ops::scale(ctx, dy, m_alpha)};
}

Tensor Add::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved, const ForwardArgs&) {
  Tensor y = ops::add(ctx, in[0], in[1]);
  if (m_relu) {
    y = ops::relu(ctx, y);
    saved.tensors = {y};
  }
  return y;
}

std::vector<Tensor> Add::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                  const BackwardArgs&) {
  Tensor g = m_relu ? ops::relu_backward(ctx, dy, saved.tensors.at(0)) : dy;
  return {g, g};
}

Tensor MaxPool2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                          const ForwardArgs&) {
  Tensor y = ops::max_pool2d(ctx, in[0], m_g);
  saved.tensors = {in[0], y};
  return y;
}

std::vector<Tensor> MaxPool2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                        const BackwardArgs&) {
  return {ops::max_pool2d_backward(ctx, dy, saved.tensors.at(0), saved.tensors.at(1), m_g)};
}

Tensor AvgPool2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                          const ForwardArgs&) {
  saved.shapes = {in[0].shape()};
  return ops::avg_pool2d(ctx, in[0], m_g);
}

std::vector<Tensor> AvgPool2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                        const BackwardArgs&) {
  return {ops::avg_pool2d_backward(ctx, dy, saved.shapes.at(0), m_g)};
}

Tensor AdaptiveAvgPool2d::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                                  const ForwardArgs&) {
  saved.shapes = {in[0].shape()};
  return ops::adaptive_avg_pool2d(ctx, in[0], m_h, m_w);
}

std::vector<Tensor> AdaptiveAvgPool2d::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                                const BackwardArgs&) {
  return {ops::adaptive_avg_pool2d_backward(ctx, dy, saved.shapes.at(0))};
}

Tensor Flatten::forward(Context&, const std::vector<Tensor>& in, Saved& saved, const ForwardArgs&) {
  const Tensor& x = in[0];
  COHORT_CHECK(x.rank() >= 2,
               fmt::format("Flatten: input must have >= 2 dims, got {}", x.shape().str()));
  saved.shapes = {x.shape()};
  return x.view(Shape{x.dim(0), x.numel() / x.dim(0)});
}

std::vector<Tensor> Flatten::backward(Context&, const Tensor& dy, Saved& saved,
                                      const BackwardArgs&) {
  return {dy.view(saved.shapes.at(0))};
}

Tensor ResizeBilinear::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                               const ForwardArgs&) {
  saved.shapes = {in[0].shape()};
  const int h = m_like ? static_cast<int>(in[1].dim(1)) : m_h;
  const int w = m_like ? static_cast<int>(in[1].dim(2)) : m_w;
  return ops::resize_bilinear(ctx, in[0], h, w);
}

std::vector<Tensor> ResizeBilinear::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                             const BackwardArgs&) {
  std::vector<Tensor> out{ops::resize_bilinear_backward(ctx, dy, saved.shapes.at(0))};
  if (m_like) out.emplace_back();  // the size reference gets no gradient
  return out;
}

Tensor ConcatChannels::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                               const ForwardArgs&) {
  saved.shapes.clear();
  for (const Tensor& t : in)
    saved.shapes.push_back(t.shape());
  return ops::concat_channels(ctx, in);
}

std::vector<Tensor> ConcatChannels::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                             const BackwardArgs&) {
  std::vector<int64_t> channels;
  for (const Shape& s : saved.shapes)
    channels.push_back(s.dim(-1));
  return ops::split_channels(ctx, dy, channels);
}

Tensor Dropout::forward(Context& ctx, const std::vector<Tensor>& in, Saved& saved,
                        const ForwardArgs& args) {
  saved.training = args.training && m_p > 0;
  if (!saved.training) return in[0];
  saved.rng_offset = ctx.reserve_random(static_cast<uint64_t>(in[0].numel()));
  return ops::dropout(ctx, in[0], m_p, saved.rng_offset);
}

std::vector<Tensor> Dropout::backward(Context& ctx, const Tensor& dy, Saved& saved,
                                      const BackwardArgs&) {
  if (!saved.training) return {dy};
  return {ops::dropout_backward(ctx, dy, m_p, saved.rng_offset)};
}

}  // namespace cohort::core::nn
