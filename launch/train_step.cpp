#include "launch/train_step.hpp"

#include <vector>

#include "core/ops/ops.hpp"

namespace cohort::launch {

std::map<std::string, core::Tensor> step_inputs(core::Context& ctx, const data::Batch& batch,
                                                const ModelNodes& nodes, core::DType compute) {
  core::Tensor image = batch.image;
  if (image.dtype() != compute) image = core::ops::cast(ctx, image, compute);
  std::map<std::string, core::Tensor> inputs = {
      {"image", image}, {"label", nodes.dense ? batch.label : batch.class_id}};
  if (nodes.depth >= 0) add_depth_inputs(batch, inputs);
  return inputs;
}

void run_train_step(core::Context& ctx, core::nn::Graph& graph, const ModelNodes& nodes,
                    TrainingEngine& engine, core::optim::LossScaler& scaler,
                    const std::map<std::string, core::Tensor>& inputs, double lr) {
  std::vector<core::nn::NodeId> wanted = {nodes.loss};
  if (nodes.depth >= 0) wanted.insert(wanted.end(), {nodes.seg_loss, nodes.depth_loss});
  graph.forward(ctx, inputs, {.training = true}, wanted);
  engine.prepare(ctx);
  graph.backward(ctx, {{nodes.loss, scaler.enabled() ? scaler.seed() : core::Tensor()}});
  engine.finish(ctx);
  if (scaler.enabled()) {
    core::Tensor grads = engine.gradients();
    scaler.unscale(ctx, grads);
  }
  engine.step(ctx, lr, scaler.skip_flag());
  scaler.update(ctx);
}

}  // namespace cohort::launch
