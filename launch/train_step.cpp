#include "launch/train_step.hpp"

#include <fmt/format.h>

#include <optional>

#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"

namespace cohort::launch {

using core::Tensor;

namespace {

// Whole-batch means (StepSettings::whole_batch_mean): each part's mean is
// weighted by its share of the whole batch's normaliser,
//   share = N * K * local / total,
// total summed over the K micro-batches and the N ranks on the device. The
// backward seed's 1/K and the ranks' gradient average take N * K back out, so
// the step's gradient is that of the mean over the whole batch.
class WholeBatchMeans {
 public:
  WholeBatchMeans(core::Context& ctx, core::nn::Graph& graph,
                  const std::vector<core::nn::NodeId>& losses, TrainingEngine& engine,
                  const std::vector<StepInputs>& parts) {
    const int k_total = static_cast<int>(parts.size());
    const double parts_total = static_cast<double>(k_total) * engine.world_size();
    std::vector<std::pair<core::nn::ValidMeanLoss*, std::vector<Tensor>>> locals;
    std::vector<Tensor> totals;
    for (const core::nn::NodeId node : losses) {
      auto* loss = dynamic_cast<core::nn::ValidMeanLoss*>(graph.layer(node));
      if (loss == nullptr) continue;
      // The target (and mask) must be graph inputs: known before the forward.
      const std::vector<core::nn::NodeId>& in = graph.node_inputs(node);
      auto input = [&](size_t i, size_t k) -> Tensor {
        if (i >= in.size()) return {};
        COHORT_CHECK(graph.layer(in[i]) == nullptr,
                     fmt::format("train: loss '{}' averages over its valid elements, so its "
                                 "input {} must be a graph input to weigh micro-batches and ranks "
                                 "(or set loss.normalize: per_rank)",
                                 graph.node_name(node), i));
        return parts[k].at(graph.node_name(in[i]));
      };
      std::vector<Tensor> local;
      Tensor total;
      for (int k = 0; k < k_total; ++k) {
        local.push_back(loss->normaliser(ctx, input(1, static_cast<size_t>(k)),
                                         input(2, static_cast<size_t>(k))));
        total = total.defined() ? core::ops::add(ctx, total, local.back())
                                : local.back().clone(ctx.stream());
      }
      locals.emplace_back(loss, std::move(local));
      totals.push_back(total);
    }
    if (totals.empty()) return;
    // Every loss's total over the ranks in one all-reduce (packed: [L + 1], the
    // last entry a count nobody reads).
    if (core::ops::StatsReducer* ranks = engine.rank_sum()) {
      const int64_t n = static_cast<int64_t>(totals.size());
      Tensor packed =
          Tensor::zeros(core::Shape{n + 1}, core::DType::f32, graph.device(), ctx.stream());
      core::ops::accumulate_loss_sums(ctx, totals, packed);
      ranks->all_reduce_sum(ctx, packed);
      for (int64_t i = 0; i < n; ++i)
        totals[static_cast<size_t>(i)] = packed.slice(i, i + 1);
    }
    for (size_t i = 0; i < locals.size(); ++i) {
      std::vector<Tensor> shares;
      for (const Tensor& l : locals[i].second)
        shares.push_back(core::ops::normaliser_share(ctx, l, totals[i], parts_total));
      m_losses.push_back({locals[i].first, std::move(shares)});
    }
  }
  ~WholeBatchMeans() {
    for (auto& [loss, shares] : m_losses)
      loss->set_share({});
  }
  WholeBatchMeans(const WholeBatchMeans&) = delete;
  WholeBatchMeans& operator=(const WholeBatchMeans&) = delete;

  // Micro-batch k's shares for its forward and backward.
  void select(int k) {
    for (auto& [loss, shares] : m_losses)
      loss->set_share(shares.at(static_cast<size_t>(k)));
  }

 private:
  std::vector<std::pair<core::nn::ValidMeanLoss*, std::vector<Tensor>>> m_losses;
};

}  // namespace

std::vector<StepInputs> step_inputs(core::Context& ctx, const data::Batch& batch,
                                    const ModelNodes& nodes, core::DType compute,
                                    int micro_batches) {
  const int64_t rows = batch.size();
  COHORT_CHECK(micro_batches >= 1 && rows % micro_batches == 0,
               fmt::format("train: a batch of {} rows does not split into {} micro-batches", rows,
                           micro_batches));
  Tensor image = batch.image;
  if (image.dtype() != compute) image = core::ops::cast(ctx, image, compute);
  StepInputs whole = {{"image", image}, {"label", nodes.dense ? batch.label : batch.class_id}};
  if (nodes.depth >= 0) add_depth_inputs(batch, whole);
  if (micro_batches == 1) return {whole};
  const int64_t m = rows / micro_batches;
  std::vector<StepInputs> parts(static_cast<size_t>(micro_batches));
  for (int k = 0; k < micro_batches; ++k)
    for (const auto& [name, t] : whole)
      parts[static_cast<size_t>(k)][name] = t.slice(k * m, (k + 1) * m);
  return parts;
}

StepLosses run_train_step(core::Context& ctx, core::nn::Graph& graph, const ModelNodes& nodes,
                          TrainingEngine& engine, core::optim::LossScaler& scaler,
                          const std::vector<StepInputs>& micro_batches,
                          const StepSettings& settings, StepPhases* phases) {
  const int k_total = static_cast<int>(micro_batches.size());
  COHORT_CHECK(k_total >= 1, "train: a step needs at least one micro-batch");
  const bool multitask = nodes.depth >= 0;
  std::vector<core::nn::NodeId> wanted = {nodes.loss};
  if (multitask) wanted.insert(wanted.end(), {nodes.seg_loss, nodes.depth_loss});
  // The step's gradient is that of the mean loss over the micro-batches: each
  // backward starts from 1/K (times the fp16 loss scale). One micro-batch keeps
  // the plain seed, so that path is bitwise what it always was.
  Tensor seed = scaler.enabled() ? scaler.seed() : Tensor();
  if (k_total > 1) {
    const double inv = 1.0 / k_total;
    if (seed.defined()) {
      seed = core::ops::scale(ctx, seed, inv);
    } else {
      seed = Tensor::empty(core::Shape{1}, core::DType::f32, graph.device(), ctx.stream());
      core::ops::fill(ctx, seed, inv);
    }
  }
  StepLosses sums;
  auto add = [&](Tensor& acc, core::nn::NodeId node) {
    const Tensor& value = graph.output(node);
    acc = acc.defined() ? core::ops::add(ctx, acc, value) : value;
  };
  if (k_total > 1) phases = nullptr;
  core::StreamHandle stream = ctx.stream();
  std::optional<WholeBatchMeans> whole;
  if (settings.whole_batch_mean && (k_total > 1 || engine.world_size() > 1))
    whole.emplace(ctx, graph, wanted, engine, micro_batches);
  for (int k = 0; k < k_total; ++k) {
    const bool accumulate = k > 0, last = k == k_total - 1;
    if (whole) whole->select(k);
    if (phases) phases->forward.begin(stream);
    graph.forward(ctx, micro_batches[static_cast<size_t>(k)], {.training = true}, wanted);
    if (phases) {
      phases->forward.end(stream);
      phases->backward.begin(stream);
    }
    if (settings.task_gradients != nullptr) {
      COHORT_CHECK(k_total == 1,
                   "train: per-task gradients (loss.balancing pcgrad, gradnorm) "
                   "need one micro-batch per step");
      settings.task_gradients->backward(ctx, seed);
    } else {
      engine.prepare(ctx, accumulate, last);
      graph.backward(ctx, {{nodes.loss, seed}}, accumulate);
      engine.finish(ctx);
    }
    if (phases) phases->backward.end(stream);
    add(sums.loss, nodes.loss);
    if (multitask) {
      add(sums.seg, nodes.seg_loss);
      add(sums.depth, nodes.depth_loss);
    }
  }
  if (phases) phases->update.begin(stream);
  if (scaler.enabled()) {
    Tensor grads = engine.gradients();
    scaler.unscale(ctx, grads);
  }
  if (settings.grad_clip_norm > 0) engine.clip_grad_norm(ctx, settings.grad_clip_norm);
  engine.step(ctx, settings.lr, scaler.skip_flag());
  if (settings.task_gradients != nullptr)
    settings.task_gradients->after_step(ctx, scaler.enabled() ? scaler.seed() : Tensor(),
                                        scaler.skip_flag());
  scaler.update(ctx);
  if (phases) phases->update.end(stream);
  if (k_total == 1) return sums;
  StepLosses means;
  const double inv = 1.0 / k_total;
  means.loss = core::ops::scale(ctx, sums.loss, inv);
  if (multitask) {
    means.seg = core::ops::scale(ctx, sums.seg, inv);
    means.depth = core::ops::scale(ctx, sums.depth, inv);
  }
  return means;
}

}  // namespace cohort::launch
