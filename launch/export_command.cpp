#include "launch/export_command.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/checkpoint.hpp"
#include "core/io/training_state.hpp"
#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"
#include "models/weights_export.hpp"

namespace cohort::launch {
namespace {

// The image channels the checkpoint's model was built for: its first
// convolution's input channels (cohort's [O, kh, kw, I]), which the config does
// not record (they come from the training shards).
int64_t input_channels(const TrainConfig& c, const core::io::CheckpointData& data,
                       const std::string& path) {
  core::nn::Graph probe;
  add_model(probe, c, 3);
  probe.build(core::Device::cpu(), c.seed);
  for (const core::nn::Parameter& p : probe.parameters()) {
    if (p.owner == nullptr || p.owner->kind() != "Conv2d") continue;
    const auto it = data.tensors.find("model/" + p.name);
    COHORT_CHECK(it != data.tensors.end() && it->second.rank() == 4,
                 fmt::format("export: {} holds no rank-4 'model/{}' (the model's first "
                             "convolution)",
                             path, p.name));
    return it->second.dim(3);
  }
  COHORT_FAIL(fmt::format("export: the model of {} has no convolution", path));
}

}  // namespace

void run_export(const ExportCommandOptions& o) {
  COHORT_CHECK(!o.out.empty(), "export: name the output file with --out");
  const core::io::CheckpointData data = core::io::read_checkpoint(o.checkpoint);
  const auto text = data.strings.find("config");
  COHORT_CHECK(text != data.strings.end() && !text->second.empty(),
               fmt::format("export: {} holds no training config (it was not written by `cohort "
                           "train`)",
                           o.checkpoint));
  const TrainConfig c = parse_train_config(text->second, o.checkpoint + " (its stored config)");
  core::nn::Graph graph;
  add_model(graph, c, input_channels(c, data, o.checkpoint));
  graph.build(core::Device::cpu(), c.seed);
  core::io::load_model_weights(data, graph, /*strict=*/true);
  models::ExportOptions eo;
  eo.prefix = o.prefix;
  // PyTorch counts BatchNorm's training forwards; the checkpoint's optimizer
  // steps are the closest record of them.
  const auto steps = data.integers.find("optimizer_steps");
  eo.batches_tracked = steps != data.integers.end() ? steps->second : 0;
  const models::ExportReport r = models::export_torchvision_weights(graph, o.out, eo);
  fmt::print("exported {} tensors ({:.2f} M parameters) of {} ({}{}) to {}\n", r.tensors,
             static_cast<double>(r.parameters) / 1e6, o.checkpoint, c.model,
             o.prefix.empty() ? "" : ", entries under " + o.prefix, o.out);
}

}  // namespace cohort::launch
