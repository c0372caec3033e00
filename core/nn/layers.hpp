#pragma once
// The layer library. Each layer is a thin wrapper over ops (core/ops/ops.hpp)
// that declares its parameters with torchvision's local names ("weight", "bias",
// "running_mean", "running_var") and knows which tensors its backward needs.
#include <memory>
#include <vector>

#include "core/nn/layer.hpp"

namespace cohort::core::nn {

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  int kernel_h = 3, kernel_w = 3;
  ops::ConvGeometry geometry;
  bool bias = false;
  Init init =
      Init::kaiming_normal_fan_out;  // torchvision ResNet; kaiming_uniform = PyTorch default
};

class Conv2d : public Layer {
 public:
  explicit Conv2d(const Conv2dOptions& o) : m_o(o) {}
  std::string kind() const override { return "Conv2d"; }
  std::vector<ParamSpec> param_specs() const override;
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  Conv2dOptions m_o;
};

// Weight [in, kh, kw, out] (PyTorch's [in, out, kh, kw], permuted).
class ConvTranspose2d : public Layer {
 public:
  explicit ConvTranspose2d(const Conv2dOptions& o) : m_o(o) {}
  std::string kind() const override { return "ConvTranspose2d"; }
  std::vector<ParamSpec> param_specs() const override;
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  Conv2dOptions m_o;
};

class Linear : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias = true) : m_in(in), m_out(out), m_bias(bias) {}
  std::string kind() const override { return "Linear"; }
  std::vector<ParamSpec> param_specs() const override;
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  int64_t m_in, m_out;
  bool m_bias;
};

// BatchNorm2d with optional fused residual add and ReLU: inputs {x} or {x, residual}.
// In training mode it uses batch statistics unless `frozen_stats` (fine-tuning
// with a frozen backbone keeps BatchNorm in eval mode).
struct BatchNormOptions {
  int64_t channels = 0;
  double momentum = 0.1, eps = 1e-5;
  bool relu = false;
  bool residual = false;
  bool zero_init = false;  // gamma = 0 (last BN of a residual block, "zero_init_residual")
};

class BatchNorm2d : public Layer {
 public:
  explicit BatchNorm2d(const BatchNormOptions& o) : m_o(o) {}
  std::string kind() const override { return "BatchNorm2d"; }
  int num_inputs() const override { return m_o.residual ? 2 : 1; }
  std::vector<ParamSpec> param_specs() const override;
  std::vector<BufferSpec> buffer_specs() const override;
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
  // SyncBatchNorm: statistics summed across ranks (set by the data-parallel engine).
  void set_reducer(ops::StatsReducer* reducer) { m_reducer = reducer; }
  void set_frozen_stats(bool frozen) { m_frozen_stats = frozen; }

 private:
  BatchNormOptions m_o;
  ops::StatsReducer* m_reducer = nullptr;
  bool m_frozen_stats = false;
};

class ReLU : public Layer {
 public:
  std::string kind() const override { return "ReLU"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
};

// alpha * x: a fixed change of units (no parameters, nothing saved).
class Scale : public Layer {
 public:
  explicit Scale(double alpha) : m_alpha(alpha) {}
  std::string kind() const override { return "Scale"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  double m_alpha;
};

// a + b, optionally followed by ReLU.
class Add : public Layer {
 public:
  explicit Add(bool relu = false) : m_relu(relu) {}
  std::string kind() const override { return m_relu ? "AddReLU" : "Add"; }
  int num_inputs() const override { return 2; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  bool m_relu;
};

class MaxPool2d : public Layer {
 public:
  explicit MaxPool2d(const ops::PoolGeometry& g) : m_g(g) {}
  std::string kind() const override { return "MaxPool2d"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  ops::PoolGeometry m_g;
};

class AvgPool2d : public Layer {
 public:
  explicit AvgPool2d(const ops::PoolGeometry& g) : m_g(g) {}
  std::string kind() const override { return "AvgPool2d"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  ops::PoolGeometry m_g;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  AdaptiveAvgPool2d(int out_h, int out_w) : m_h(out_h), m_w(out_w) {}
  std::string kind() const override { return "AdaptiveAvgPool2d"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  int m_h, m_w;
};

// [N, H, W, C] -> [N, H*W*C].
class Flatten : public Layer {
 public:
  std::string kind() const override { return "Flatten"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
};

// Bilinear resize (align_corners=false) to a fixed size, or, with two inputs, to
// the spatial size of the second input (which gets no gradient).
class ResizeBilinear : public Layer {
 public:
  ResizeBilinear(int out_h, int out_w) : m_h(out_h), m_w(out_w) {}
  ResizeBilinear() : m_like(true) {}
  std::string kind() const override { return "ResizeBilinear"; }
  int num_inputs() const override { return m_like ? 2 : 1; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  int m_h = 0, m_w = 0;
  bool m_like = false;
};

class ConcatChannels : public Layer {
 public:
  explicit ConcatChannels(int inputs) : m_inputs(inputs) {}
  std::string kind() const override { return "ConcatChannels"; }
  int num_inputs() const override { return m_inputs; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  int m_inputs;
};

// Identity in evaluation; in training drops with probability p (Philox mask,
// recomputed in backward from the saved counter offset).
class Dropout : public Layer {
 public:
  explicit Dropout(double p) : m_p(p) {}
  std::string kind() const override { return "Dropout"; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  double m_p;
};

// Losses that average over valid elements (cross entropy over the labels that
// are not ignored, masked regression). Alone they return that mean. To make a
// step over several parts of a batch (micro-batches, ranks) equal to the step
// over the whole batch, the trainer sets a share per part
// (ops::normaliser_share of the part's normaliser and the total): the loss
// becomes mean * share in forward and backward, so that the parts' losses add
// up to the whole batch's mean.
class ValidMeanLoss : public Layer {
 public:
  bool is_loss() const override { return true; }
  // This loss's normaliser (ops::cross_entropy_normaliser / ops::valid_count)
  // for the part whose target (labels, or the regression target) and optional
  // mask are given; f32 [1] on ctx's device.
  virtual Tensor normaliser(Context& ctx, const Tensor& target, const Tensor& mask) = 0;
  // f32 [1] on the device, or undefined for the plain mean.
  void set_share(Tensor share) { m_share = std::move(share); }

 protected:
  Tensor shared(Context& ctx, const Tensor& value) const;

 private:
  Tensor m_share;
};

// inputs {logits [..., C], labels [...]} -> scalar mean cross entropy.
class CrossEntropyLoss : public ValidMeanLoss {
 public:
  explicit CrossEntropyLoss(int ignore_index = 255, Tensor class_weights = {})
      : m_ignore(ignore_index), m_weights(std::move(class_weights)) {}
  std::string kind() const override { return "CrossEntropyLoss"; }
  int num_inputs() const override { return 2; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
  Tensor normaliser(Context& ctx, const Tensor& labels, const Tensor& mask) override;

 private:
  void weights_to(Context& ctx);
  int m_ignore;
  Tensor m_weights;
};

// inputs {pred, target} or {pred, target, mask} -> scalar masked mean L1 / smooth-L1.
class RegressionLossLayer : public ValidMeanLoss {
 public:
  RegressionLossLayer(ops::RegressionLoss kind, bool masked, double beta = 1.0)
      : m_kind(kind), m_masked(masked), m_beta(beta) {}
  std::string kind() const override { return "RegressionLoss"; }
  int num_inputs() const override { return m_masked ? 3 : 2; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
  Tensor normaliser(Context& ctx, const Tensor& target, const Tensor& mask) override;

 private:
  ops::RegressionLoss m_kind;
  bool m_masked;
  double m_beta;
};

// Mean of all elements of its input as a scalar loss (benchmarks, simple objectives).
// Multi-task loss balancing: the weighted sum of its inputs (task losses) with
// learned uncertainty weights (ops::uncertainty_weighted_sum). Parameter
// "log_vars" [n]: zeros at the start (every weight 0.5), f32 under mixed
// precision, no weight decay (it would pull every task's variance towards 1).
class UncertaintyWeighting : public Layer {
 public:
  explicit UncertaintyWeighting(int num_losses);
  std::string kind() const override { return "UncertaintyWeighting"; }
  int num_inputs() const override { return m_n; }
  bool is_loss() const override { return true; }
  std::vector<ParamSpec> param_specs() const override;
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;

 private:
  int m_n;
};

class MeanLoss : public Layer {
 public:
  std::string kind() const override { return "MeanLoss"; }
  bool is_loss() const override { return true; }
  Tensor forward(Context&, const std::vector<Tensor>&, Saved&, const ForwardArgs&) override;
  std::vector<Tensor> backward(Context&, const Tensor&, Saved&, const BackwardArgs&) override;
};

}  // namespace cohort::core::nn
