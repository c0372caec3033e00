#include "core/io/training_state.hpp"

#include <fmt/format.h>

#include "core/io/checkpoint.hpp"

namespace cohort::core::io {
namespace {

std::map<std::string, Tensor> prefixed(const std::map<std::string, Tensor>& in,
                                       const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : in)
    out.emplace(prefix + name, t);
  return out;
}

int64_t integer(const CheckpointData& d, const std::string& key, const std::string& path) {
  auto it = d.integers.find(key);
  COHORT_CHECK(it != d.integers.end(),
               fmt::format("checkpoint {}: missing integer '{}'", path, key));
  return it->second;
}

}  // namespace

void save_training_checkpoint(const std::string& path, nn::Graph& graph,
                              optim::Optimizer& optimizer, const optim::LossScaler* scaler,
                              const Context& ctx, const TrainingProgress& progress) {
  CheckpointData data;
  ctx.synchronize();  // device state must be final before it is copied
  auto to_host = [&](const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
    for (const auto& [name, t] : tensors)
      data.tensors.emplace(prefix + name,
                           t.device().is_cpu() ? t.clone() : t.to(Device::cpu(), ctx.stream()));
  };
  to_host(graph.state(), "model/");
  to_host(optimizer.state(), "optim/");
  ctx.synchronize();
  data.integers["step"] = progress.step;
  data.integers["epoch"] = progress.epoch;
  data.integers["sample_in_epoch"] = progress.sample_in_epoch;
  data.integers["optimizer_steps"] = optimizer.steps();
  // The RNG state is two numbers: seed and counter offset (Philox is counter based).
  data.integers["rng_seed"] = static_cast<int64_t>(ctx.seed());
  data.integers["rng_offset"] = static_cast<int64_t>(ctx.rng_offset());
  if (scaler != nullptr && scaler->enabled()) {
    const optim::LossScalerState scaler_state = scaler->state(ctx);
    data.reals["loss_scale"] = scaler_state.scale;
    data.integers["loss_scale_growth_tracker"] = scaler_state.growth_tracker;
    data.integers["loss_scale_skipped_steps"] = scaler_state.skipped_steps;
  }
  data.strings["config"] = progress.config;
  data.strings["optimizer"] = optimizer.config().kind;
  write_checkpoint(path, data);
}

TrainingProgress load_training_checkpoint(const std::string& path, nn::Graph& graph,
                                          optim::Optimizer& optimizer, optim::LossScaler* scaler,
                                          Context& ctx) {
  const CheckpointData data = read_checkpoint(path);
  auto kind = data.strings.find("optimizer");
  COHORT_CHECK(
      kind != data.strings.end() && kind->second == optimizer.config().kind,
      fmt::format("checkpoint {}: optimizer '{}' does not match the configured '{}'", path,
                  kind == data.strings.end() ? "?" : kind->second, optimizer.config().kind));
  // Everything is read and checked before anything is changed.
  TrainingProgress p;
  p.step = integer(data, "step", path);
  p.epoch = integer(data, "epoch", path);
  p.sample_in_epoch = integer(data, "sample_in_epoch", path);
  const int64_t optimizer_steps = integer(data, "optimizer_steps", path);
  const auto seed = static_cast<uint64_t>(integer(data, "rng_seed", path));
  const auto offset = static_cast<uint64_t>(integer(data, "rng_offset", path));
  optim::LossScalerState scaler_state;
  const bool restore_scaler = scaler != nullptr && scaler->enabled();
  if (restore_scaler) {
    auto scale = data.reals.find("loss_scale");
    COHORT_CHECK(scale != data.reals.end(),
                 fmt::format("checkpoint {}: fp16 loss scaling is on but the checkpoint has no "
                             "loss-scaler state",
                             path));
    scaler_state = {scale->second, integer(data, "loss_scale_growth_tracker", path),
                    integer(data, "loss_scale_skipped_steps", path)};
  }
  if (auto c = data.strings.find("config"); c != data.strings.end()) p.config = c->second;

  // One combined check over model and optimizer entries: every problem in one
  // message, nothing copied unless all match. Work still queued on ctx must not
  // overwrite the loaded values, and the host copies must outlive the transfers.
  std::map<std::string, Tensor> targets = prefixed(graph.state(), "model/");
  for (auto& [name, t] : prefixed(optimizer.state(), "optim/"))
    targets.emplace(name, t);
  ctx.synchronize();
  load_tensors(data, "", targets, /*strict=*/true, ctx.stream());
  optimizer.set_steps(optimizer_steps);
  ctx.set_seed(seed, offset);
  if (restore_scaler) scaler->set_state(ctx, scaler_state);
  graph.refresh_compute_weights(ctx);
  ctx.synchronize();
  return p;
}

void load_model_weights(const std::string& path, nn::Graph& graph, bool strict) {
  const CheckpointData data = read_checkpoint(path);
  Context ctx(graph.device());
  load_tensors(data, "model/", graph.state(), strict, ctx.stream());
  graph.refresh_compute_weights(ctx);  // 16-bit compute copies follow the loaded masters
  ctx.synchronize();                   // `data` (the host sources) dies with this function
}

}  // namespace cohort::core::io
