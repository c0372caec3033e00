#include "launch/export_command.hpp"

#include <fmt/format.h>

#include <memory>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "core/io/training_state.hpp"
#include "core/ops/ops.hpp"
#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"
#include "models/weights_export.hpp"

namespace cohort::launch {
namespace {

// The checkpoint's model, built for the image channels it was trained on: the
// config does not record them (they come from the training shards), its first
// convolution's weight ([O, kh, kw, I]) does. Built once for 3 channels, again
// only when the checkpoint says otherwise.
std::unique_ptr<core::nn::Graph> model_of(const TrainConfig& c,
                                          const core::io::CheckpointData& data,
                                          const std::string& path, int64_t channels = 3) {
  auto graph = std::make_unique<core::nn::Graph>();
  add_model(*graph, c, channels);
  graph->build(core::Device::cpu(), c.seed);
  for (const core::nn::Parameter& p : graph->parameters()) {
    if (p.owner == nullptr || p.owner->kind() != "Conv2d") continue;
    const auto it = data.tensors.find("model/" + p.name);
    COHORT_CHECK(it != data.tensors.end() && it->second.rank() == 4,
                 fmt::format("export: {} holds no rank-4 'model/{}' (the model's first "
                             "convolution)",
                             path, p.name));
    return it->second.dim(3) == channels ? std::move(graph)
                                         : model_of(c, data, path, it->second.dim(3));
  }
  COHORT_FAIL(fmt::format("export: the model of {} has no convolution", path));
}

}  // namespace

void run_export(const ExportCommandOptions& o) {
  COHORT_CHECK(!o.out.empty(), "export: name the output file with --out");
  const core::io::CheckpointData data = core::io::read_checkpoint(o.checkpoint);
  const TrainConfig c = checkpoint_train_config(data.strings, o.checkpoint, "export");
  const std::unique_ptr<core::nn::Graph> graph = model_of(c, data, o.checkpoint);
  core::io::load_model_weights(data, *graph, /*strict=*/true);
  if (c.depth_head && c.depth_scale != 1.0) {
    // The depth head regresses depth / model.depth_scale behind a Scale node that
    // a torchvision-style model does not have: exported, it predicts metres.
    core::Context ctx;
    for (const char* name : {"depth_head.weight", "depth_head.bias"}) {
      core::Tensor& v = graph->parameter(name).value;
      v.copy_from(core::ops::scale(ctx, v, c.depth_scale));
    }
  }
  models::ExportOptions eo;
  eo.prefix = o.prefix;
  // PyTorch counts BatchNorm's training forwards; the checkpoint's optimizer
  // steps are the closest record of them.
  const auto steps = data.integers.find("optimizer_steps");
  eo.batches_tracked = steps != data.integers.end() ? steps->second : 0;
  const models::ExportReport r = models::export_torchvision_weights(*graph, o.out, eo);
  fmt::print("exported {} tensors ({:.2f} M parameters) of {} ({}{}) to {}\n", r.tensors,
             static_cast<double>(r.parameters) / 1e6, o.checkpoint, c.model,
             o.prefix.empty() ? "" : ", entries under " + o.prefix, o.out);
}

}  // namespace cohort::launch
