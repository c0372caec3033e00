#include "core/io/training_state.hpp"

#include <fmt/format.h>

#include <vector>

#include "core/io/checkpoint.hpp"

namespace cohort::core::io {
namespace {

// The file's names for the two tensor families.
constexpr const char* kModelPrefix = "model/";
constexpr const char* kOptimPrefix = "optim/";

int64_t integer(const CheckpointData& d, const std::string& key, const std::string& path) {
  auto it = d.integers.find(key);
  COHORT_CHECK(it != d.integers.end(),
               fmt::format("checkpoint {}: missing integer '{}'", path, key));
  return it->second;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string describe(const TensorSpec& spec) {
  return fmt::format("{}{}", dtype_name(spec.dtype), spec.shape.str());
}

std::string describe(const Tensor& t) {
  return fmt::format("{}{}", dtype_name(t.dtype()), t.shape().str());
}

// load_tensors' checks, on shapes alone (no target needs to exist yet).
void tensor_problems(const std::map<std::string, Tensor>& found, const TensorSpecs& expected,
                     const std::string& prefix, std::vector<std::string>& problems) {
  for (const auto& [key, spec] : expected) {
    const std::string name = prefix + key;
    const auto it = found.find(key);
    if (it == found.end()) {
      problems.push_back(fmt::format("missing: '{}' (model expects {})", name, describe(spec)));
      continue;
    }
    if (it->second.shape() != spec.shape)
      problems.push_back(fmt::format("shape mismatch: '{}': checkpoint {} vs model {}", name,
                                     describe(it->second), describe(spec)));
    if (it->second.dtype() != spec.dtype)
      problems.push_back(fmt::format("dtype mismatch: '{}': checkpoint {} vs model {}", name,
                                     describe(it->second), describe(spec)));
  }
  for (const auto& [key, t] : found)
    if (!expected.contains(key))
      problems.push_back(
          fmt::format("unexpected: '{}{}' ({}) is in the checkpoint but not in the model", prefix,
                      key, describe(t)));
}

// Copies checked entries into their targets on ctx's stream; the caller
// synchronises before the sources go away.
void copy_into(const std::map<std::string, Tensor>& sources,
               const std::map<std::string, Tensor>& targets, const Context& ctx) {
  for (const auto& [name, target] : targets) {
    Tensor destination = target;  // shares storage: copy_from writes the caller's tensor
    destination.copy_from(sources.at(name), ctx.stream());
  }
}

}  // namespace

// ---- snapshots ---------------------------------------------------------------------------

void write_training_snapshot(const std::string& path, const TrainingSnapshot& snapshot,
                             const Context& ctx) {
  CheckpointData data;
  ctx.synchronize();  // device state must be final before it is copied
  auto to_host = [&](const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
    for (const auto& [name, t] : tensors)
      data.tensors.emplace(prefix + name,
                           t.device().is_cpu() ? t : t.to(Device::cpu(), ctx.stream()));
  };
  to_host(snapshot.model, kModelPrefix);
  to_host(snapshot.optimizer, kOptimPrefix);
  ctx.synchronize();
  const TrainingProgress& progress = snapshot.progress;
  data.integers["step"] = progress.step;
  data.integers["epoch"] = progress.epoch;
  data.integers["sample_in_epoch"] = progress.sample_in_epoch;
  data.integers["optimizer_steps"] = snapshot.optimizer_steps;
  // The RNG state is two numbers: seed and counter offset (Philox is counter based).
  data.integers["rng_seed"] = static_cast<int64_t>(snapshot.rng_seed);
  data.integers["rng_offset"] = static_cast<int64_t>(snapshot.rng_offset);
  if (snapshot.loss_scaler) {
    data.reals["loss_scale"] = snapshot.loss_scaler->scale;
    data.integers["loss_scale_growth_tracker"] = snapshot.loss_scaler->growth_tracker;
    data.integers["loss_scale_skipped_steps"] = snapshot.loss_scaler->skipped_steps;
  }
  data.strings["config"] = progress.config;
  data.strings["optimizer"] = snapshot.optimizer_kind;
  write_checkpoint(path, data);
}

TrainingSnapshot read_training_snapshot(const std::string& path) {
  CheckpointData data = read_checkpoint(path);
  TrainingSnapshot s;
  for (auto& [name, t] : data.tensors) {
    if (starts_with(name, kModelPrefix))
      s.model.emplace(name.substr(std::string(kModelPrefix).size()), std::move(t));
    else if (starts_with(name, kOptimPrefix))
      s.optimizer.emplace(name.substr(std::string(kOptimPrefix).size()), std::move(t));
    else
      COHORT_FAIL(
          fmt::format("checkpoint {}: tensor '{}' is neither a model ('{}') nor an "
                      "optimizer ('{}') entry: not a training checkpoint",
                      path, name, kModelPrefix, kOptimPrefix));
  }
  if (auto kind = data.strings.find("optimizer"); kind != data.strings.end())
    s.optimizer_kind = kind->second;
  if (auto c = data.strings.find("config"); c != data.strings.end()) s.progress.config = c->second;
  s.progress.step = integer(data, "step", path);
  s.progress.epoch = integer(data, "epoch", path);
  s.progress.sample_in_epoch = integer(data, "sample_in_epoch", path);
  s.optimizer_steps = integer(data, "optimizer_steps", path);
  s.rng_seed = static_cast<uint64_t>(integer(data, "rng_seed", path));
  s.rng_offset = static_cast<uint64_t>(integer(data, "rng_offset", path));
  if (auto scale = data.reals.find("loss_scale"); scale != data.reals.end())
    s.loss_scaler =
        optim::LossScalerState{scale->second, integer(data, "loss_scale_growth_tracker", path),
                               integer(data, "loss_scale_skipped_steps", path)};
  return s;
}

TensorSpecs model_specs(const nn::Graph& graph) {
  TensorSpecs specs;
  for (const nn::Parameter& p : graph.parameters())
    specs.emplace(p.name, TensorSpec{p.shape, DType::f32});
  // The rest of state() are the buffers, owned one by one (never released by
  // sharding, unlike the parameter values).
  for (const auto& [name, t] : graph.state())
    if (!specs.contains(name)) specs.emplace(name, TensorSpec{t.shape(), t.dtype()});
  return specs;
}

TensorSpecs optimizer_specs(const nn::Graph& graph, const optim::Optimizer& optimizer) {
  TensorSpecs specs;
  for (const auto& [buffer, storage] : optimizer.state_buffers())
    for (const nn::Parameter& p : graph.parameters())
      specs.emplace(fmt::format("{}/{}", buffer, p.name), TensorSpec{p.shape, DType::f32});
  return specs;
}

void check_training_snapshot(const std::string& path, const TrainingSnapshot& snapshot,
                             const TensorSpecs& model, const TensorSpecs& optimizer,
                             const std::string& optimizer_kind, bool needs_scaler) {
  std::vector<std::string> problems;
  if (snapshot.optimizer_kind != optimizer_kind)
    problems.push_back(fmt::format("optimizer '{}' does not match the configured '{}'",
                                   snapshot.optimizer_kind.empty() ? "?" : snapshot.optimizer_kind,
                                   optimizer_kind));
  if (needs_scaler && !snapshot.loss_scaler)
    problems.push_back("fp16 loss scaling is on but the checkpoint has no loss-scaler state");
  tensor_problems(snapshot.model, model, kModelPrefix, problems);
  tensor_problems(snapshot.optimizer, optimizer, kOptimPrefix, problems);
  if (problems.empty()) return;
  std::string message = fmt::format("checkpoint {}: {} problem{}; nothing loaded", path,
                                    problems.size(), problems.size() == 1 ? "" : "s");
  for (const std::string& p : problems)
    message += "\n  " + p;
  COHORT_FAIL(message);
}

// ---- one process ------------------------------------------------------------------------

void save_training_checkpoint(const std::string& path, nn::Graph& graph,
                              optim::Optimizer& optimizer, const optim::LossScaler* scaler,
                              const Context& ctx, const TrainingProgress& progress) {
  COHORT_CHECK(!optimizer.sharded(),
               fmt::format("save_training_checkpoint('{}'): the optimizer is sharded and holds "
                           "only its part of the state; use comm::save_zero_checkpoint",
                           path));
  TrainingSnapshot s;
  s.model = graph.state();
  s.optimizer = optimizer.state();
  s.optimizer_kind = optimizer.config().kind;
  s.optimizer_steps = optimizer.steps(ctx.stream());
  s.rng_seed = ctx.seed();
  s.rng_offset = ctx.rng_offset();
  if (scaler != nullptr && scaler->enabled()) s.loss_scaler = scaler->state(ctx);
  s.progress = progress;
  write_training_snapshot(path, s, ctx);
}

TrainingProgress load_training_checkpoint(const std::string& path, nn::Graph& graph,
                                          optim::Optimizer& optimizer, optim::LossScaler* scaler,
                                          Context& ctx) {
  COHORT_CHECK(!optimizer.sharded(),
               fmt::format("load_training_checkpoint('{}'): the optimizer is sharded; use "
                           "comm::load_zero_checkpoint",
                           path));
  const TrainingSnapshot s = read_training_snapshot(path);
  const bool restore_scaler = scaler != nullptr && scaler->enabled();
  // Everything is read and checked before anything is changed.
  check_training_snapshot(path, s, model_specs(graph), optimizer_specs(graph, optimizer),
                          optimizer.config().kind, restore_scaler);
  // Work still queued on ctx must not overwrite the loaded values, and the host
  // copies (`s`) must outlive the transfers.
  ctx.synchronize();
  copy_into(s.model, graph.state(), ctx);
  copy_into(s.optimizer, optimizer.state(), ctx);
  optimizer.set_steps(s.optimizer_steps, ctx.stream());
  ctx.set_seed(s.rng_seed, s.rng_offset);
  if (restore_scaler) scaler->set_state(ctx, *s.loss_scaler);
  graph.refresh_compute_weights(ctx);
  ctx.synchronize();
  return s.progress;
}

void load_model_weights(const CheckpointData& data, nn::Graph& graph, bool strict) {
  Context ctx(graph.device());
  load_tensors(data, kModelPrefix, graph.state(), strict, ctx.stream());
  graph.refresh_compute_weights(ctx);  // 16-bit compute copies follow the loaded masters
  ctx.synchronize();                   // the caller's host sources may die after the return
}

void load_model_weights(const std::string& path, nn::Graph& graph, bool strict) {
  load_model_weights(read_checkpoint(path), graph, strict);
}

ModelWeightsReport load_model_weights(const CheckpointData& data, nn::Graph& graph,
                                      const ModelWeightsMapping& mapping,
                                      const std::string& source) {
  const std::map<std::string, Tensor> targets = graph.state();
  auto skipped = [&](const std::string& name) {
    for (const std::string& prefix : mapping.skip_prefixes)
      if (starts_with(name, prefix)) return true;
    return false;
  };
  ModelWeightsReport report;
  std::vector<std::string> problems;
  std::map<std::string, const Tensor*> sources;  // graph name -> checkpoint tensor
  for (auto it = data.tensors.lower_bound(kModelPrefix); it != data.tensors.end(); ++it) {
    if (!starts_with(it->first, kModelPrefix)) break;  // past the model/ subtree
    const std::string name = it->first.substr(std::string(kModelPrefix).size());
    const Tensor& t = it->second;
    if (skipped(name)) {
      report.skipped.push_back(name);
      continue;
    }
    const std::string graph_name = mapping.graph_prefix + name;
    const auto target = targets.find(graph_name);
    if (target == targets.end()) {
      problems.push_back(fmt::format("unexpected: '{}' ({}) has no graph entry '{}'", it->first,
                                     describe(t), graph_name));
      continue;
    }
    if (t.shape() != target->second.shape() || t.dtype() != target->second.dtype()) {
      problems.push_back(fmt::format("{} mismatch: '{}': checkpoint {} vs model '{}' {}",
                                     t.shape() != target->second.shape() ? "shape" : "dtype",
                                     it->first, describe(t), graph_name, describe(target->second)));
      continue;
    }
    sources.emplace(graph_name, &t);
  }
  if (mapping.strict)
    for (const auto& [graph_name, t] : targets) {
      if (!starts_with(graph_name, mapping.graph_prefix) || sources.contains(graph_name)) continue;
      const std::string name = graph_name.substr(mapping.graph_prefix.size());
      const bool reported = data.tensors.contains(kModelPrefix + name);  // mis-shaped above
      if (!skipped(name) && !reported)
        problems.push_back(fmt::format("missing: '{}{}' (model '{}' expects {})", kModelPrefix,
                                       name, graph_name, describe(t)));
    }
  if (sources.empty() && problems.empty())
    problems.push_back(
        fmt::format("no '{}' entries to load: not a training checkpoint of a "
                    "model with these names",
                    kModelPrefix));
  if (!problems.empty()) {
    std::string message = fmt::format("weights from checkpoint {}: {} problem{}; nothing loaded",
                                      source, problems.size(), problems.size() == 1 ? "" : "s");
    for (const std::string& p : problems)
      message += "\n  " + p;
    COHORT_FAIL(message);
  }
  Context ctx(graph.device());
  for (const auto& [graph_name, t] : sources) {
    Tensor destination = targets.at(graph_name);  // shares storage with the graph's tensor
    destination.copy_from(*t, ctx.stream());
  }
  graph.refresh_compute_weights(ctx);  // 16-bit compute copies follow the loaded masters
  ctx.synchronize();                   // the caller's host sources may die after the return
  report.loaded = static_cast<int>(sources.size());
  return report;
}

}  // namespace cohort::core::io
