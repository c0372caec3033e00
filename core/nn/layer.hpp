#pragma once
// A layer: parameters it declares, a forward that saves what its backward needs
// into a Saved record owned by the graph run, and a backward that returns one
// gradient per input. Layers never hold activations themselves, so the graph can
// free saved tensors as soon as backward has used them.
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/nn/parameter.hpp"
#include "core/ops/ops.hpp"

namespace cohort::core::nn {

// What a layer keeps between its forward and its backward for one run.
struct Saved {
  std::vector<Tensor> tensors;
  std::vector<Shape> shapes;
  ops::BatchNormSaved bn;
  uint64_t rng_offset = 0;
  DType dtype = DType::f32;  // of an input whose values backward does not need
  bool training = false;
  void clear() { *this = Saved{}; }
};

struct ForwardArgs {
  bool training = false;
};

struct BackwardArgs {
  std::vector<bool> needs_input_grad;  // one per input
  bool param_grads = true;             // false when every parameter of the layer is frozen
  bool accumulate = false;             // add into parameter gradients (micro-batches)
};

class Layer {
 public:
  virtual ~Layer() = default;
  virtual std::string kind() const = 0;
  virtual int num_inputs() const { return 1; }
  virtual std::vector<ParamSpec> param_specs() const { return {}; }
  virtual std::vector<BufferSpec> buffer_specs() const { return {}; }
  // Whether the layer is a loss: its output is a scalar and it has no parameters.
  virtual bool is_loss() const { return false; }

  virtual Tensor forward(Context& ctx, const std::vector<Tensor>& inputs, Saved& saved,
                         const ForwardArgs& args) = 0;
  virtual std::vector<Tensor> backward(Context& ctx, const Tensor& dy, Saved& saved,
                                       const BackwardArgs& args) = 0;

  // Called by the graph once its flat buffers exist.
  void bind(std::vector<Parameter*> params, std::vector<Buffer*> buffers) {
    m_params = std::move(params);
    m_buffers = std::move(buffers);
  }
  const std::vector<Parameter*>& params() const { return m_params; }
  const std::vector<Buffer*>& buffers() const { return m_buffers; }

 protected:
  Parameter& param(size_t i) const { return *m_params.at(i); }
  Buffer& buffer(size_t i) const { return *m_buffers.at(i); }

 private:
  std::vector<Parameter*> m_params;
  std::vector<Buffer*> m_buffers;
};

}  // namespace cohort::core::nn
