#include "launch/eval_command.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/io/atomic_file.hpp"
#include "core/io/checkpoint.hpp"
#include "core/io/training_state.hpp"
#include "data/cityscapes_labels.hpp"
#include "data/shard_reader.hpp"

namespace cohort::launch {
namespace {

// Settings that would change the network itself: the checkpoint decides them.
const char* const kModelKeys[] = {"model.kind",          "model.num_classes", "model.depth",
                                  "model.output_stride", "model.depth_head",  "model.depth_scale"};

void refuse_model_overrides(const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides)
    for (const char* key : kModelKeys)
      COHORT_CHECK(o.rfind(std::string(key) + "=", 0) != 0,
                   fmt::format("eval: --set {} would change the network the checkpoint holds; "
                               "its model settings come from the checkpoint",
                               o));
}

bool is_cityscapes_table(const std::vector<data::ClassEntry>& classes) {
  const std::vector<data::ClassEntry> cityscapes = data::cityscapes_train_classes();
  if (classes.size() != cityscapes.size()) return false;
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i].name != cityscapes[i].name) return false;
  return true;
}

PredictionOutput prediction_output(const EvalCommandOptions& o, const data::ShardSet& set) {
  PredictionOutput out;
  out.dir = o.predictions;
  if (o.predictions.empty()) return out;
  COHORT_CHECK(
      o.format == "auto" || o.format == "cityscapes-ids" || o.format == "train-ids",
      fmt::format("eval: --format {} is none of auto, cityscapes-ids, train-ids", o.format));
  const bool cityscapes = is_cityscapes_table(set.spec().classes);
  COHORT_CHECK(o.format != "cityscapes-ids" || cityscapes,
               fmt::format("eval: --format cityscapes-ids needs Cityscapes' 19 training classes; "
                           "{} has {} other classes",
                           set.dir(), set.spec().classes.size()));
  if (o.format == "train-ids" || !cityscapes) {
    out.suffix = "pred_trainIds";
    return out;
  }
  // Train id -> label id, from the Cityscapes label table.
  out.suffix = "pred_labelIds";
  out.value_of_class.assign(19, 0);
  for (const data::CityscapesLabel& l : data::cityscapes_labels())
    if (l.train_id >= 0 && l.train_id < 19)
      out.value_of_class[static_cast<size_t>(l.train_id)] = static_cast<uint8_t>(l.id);
  return out;
}

}  // namespace

EvalResult run_checkpoint_eval(const EvalCommandOptions& o, core::Device device, TrainRanks ranks) {
  refuse_model_overrides(o.overrides);
  const core::io::CheckpointData data = core::io::read_checkpoint(o.checkpoint);
  TrainConfig c = checkpoint_train_config(data.strings, o.checkpoint, "eval", o.overrides);
  if (!o.shards.empty()) c.eval_shards = o.shards;
  // A run trained in bf16/f16 on GPUs evaluates on a CPU too: the checkpoint
  // holds f32 master weights, and the CPU backend computes in f32.
  if (!device.is_cuda()) c.dtype = "f32";
  COHORT_CHECK(!c.eval_shards.empty(),
               fmt::format("eval: {} was trained without data.eval: name the set with --shards",
                           o.checkpoint));
  COHORT_CHECK(c.batch % world_of(ranks) == 0,
               fmt::format("eval: data.batch {} must split evenly over {} ranks (--set "
                           "data.batch=N)",
                           c.batch, world_of(ranks)));
  const data::ShardSet set = data::ShardSet::open(c.eval_shards);

  core::nn::Graph graph;
  const ModelNodes nodes = add_model(graph, c, set.spec().channels);
  graph.build(device, c.seed, compute_dtype(c));
  core::io::load_model_weights(data, graph, /*strict=*/true);
  // Ranks that read a link (checkpoint.h5) while a training run moved it would
  // score different models: every rank must hold the same step (equal sums of
  // the step and of its square over the ranks mean every rank's step is equal).
  const int64_t step = data.integers.count("step") != 0 ? data.integers.at("step") : -1;
  const double s = static_cast<double>(step);
  const std::vector<double> sums = sum_over_ranks(ranks, std::vector<double>{s, s * s});
  const double n = world_of(ranks);
  COHORT_CHECK(sums[0] == n * s && sums[1] == n * s * s,
               fmt::format("eval: the ranks read different checkpoints from {} (this rank: step "
                           "{}); is a training run still writing there? Name one "
                           "checkpoint-<step>.h5 file instead",
                           o.checkpoint, step));
  core::Context ctx(device);
  const bool talk = o.verbose && rank_of(ranks) == 0;
  if (talk)
    fmt::print("cohort eval: {} ({} {}, trained {} steps) on {}, {} ranks, {}\n", o.checkpoint,
               c.model, c.dtype, step, c.eval_shards, world_of(ranks), device.str());
  const PredictionOutput out = prediction_output(o, set);
  const EvalResult r = evaluate({&ctx, &graph, nodes, ranks, device, false}, c, {}, out);
  std::vector<std::string> names;
  for (const data::ClassEntry& e : set.spec().classes)
    names.push_back(e.name);
  if (talk) {
    fmt::print("{}", describe(r, names));
    if (!out.dir.empty()) fmt::print("predictions: {}/<sample>_{}.png\n", out.dir, out.suffix);
  }
  if (!o.json.empty() && rank_of(ranks) == 0) {
    const std::string text = to_json(r, names) + "\n";
    core::io::write_file_atomically(o.json, text.data(), text.size());
  }
  return r;
}

}  // namespace cohort::launch
