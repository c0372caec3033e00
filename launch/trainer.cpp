#include "launch/trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "comm/data_parallel.hpp"
#include "comm/step_timer.hpp"
#include "core/determinism.hpp"
#include "core/io/training_state.hpp"
#include "core/memory_stats.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/loss_balancing.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/optim/optimizer.hpp"
#include "core/optim/schedule.hpp"
#include "data/loader.hpp"
#include "launch/checkpoint_history.hpp"
#include "launch/engine.hpp"
#include "launch/evaluator.hpp"
#include "launch/model_setup.hpp"
#include "launch/run_log.hpp"
#include "launch/train_step.hpp"
#include "models/weights_import.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_requested{0};

extern "C" void on_stop_signal(int) {
  g_stop_requested.store(1);
}

// Installs the stop handlers for the run and puts the previous ones back after.
class StopSignals {
 public:
  StopSignals() {
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kSignals.size(); ++i)
      sigaction(kSignals[i], &sa, &m_previous[i]);
  }
  ~StopSignals() {
    for (size_t i = 0; i < kSignals.size(); ++i)
      sigaction(kSignals[i], &m_previous[i], nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGTERM, SIGINT, SIGUSR1};
  std::array<struct sigaction, 3> m_previous{};
};

// Fine-tuning: freezes or unfreezes the backbone (a resnet's everything but its
// fc head; DeepLab's backbone.*).
void set_backbone_trainable(core::nn::Graph& graph, const TrainConfig& c, bool trainable) {
  if (c.model == "deeplabv3plus") {
    graph.set_trainable("backbone.", trainable);
    return;
  }
  graph.set_trainable("", trainable);
  graph.set_trainable("fc.", true);
}

// "2h05m", "4m10s", "42s": the remaining time of a run at its current pace.
std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(std::llround(std::max(seconds, 0.0)));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace

void request_training_stop() {
  g_stop_requested.store(1);
}

TrainResult run_training(const TrainConfig& c, core::Device device, TrainRanks ranks) {
  const auto start = Clock::now();
  // run.deterministic for this run (COHORT_DETERMINISTIC=1 sets it for the process).
  const core::DeterministicAlgorithms deterministic(c.deterministic ||
                                                    core::deterministic_algorithms());
  const int rank = rank_of(ranks), world = world_of(ranks);
  COHORT_CHECK((ranks.grads == nullptr) == (ranks.control == nullptr),
               "train: the gradient and control communicators come together");
  COHORT_CHECK(ranks.grads != nullptr || c.zero_stage == 0,
               fmt::format("train: parallel.zero_stage {} needs ranks (start under mpirun or srun)",
                           c.zero_stage));
  COHORT_CHECK(c.batch % (world * c.micro_batches) == 0,
               fmt::format("train: the global data.batch {} must split evenly over {} ranks x {} "
                           "micro-batches (data.micro_batches)",
                           c.batch, world, c.micro_batches));
  g_stop_requested.store(0);
  StopSignals signals;
  const bool talk = rank == 0;
  COHORT_CHECK(c.keep_last >= 1,
               fmt::format("train: checkpoint.keep_last must be >= 1 (got {})", c.keep_last));
  if (rank == 0) std::filesystem::create_directories(c.out_dir);
  // Every rank must resume from the same checkpoint; rank 0's view of the
  // directory decides (0: none, 1: an older run's checkpoint.h5, else step + 2).
  ResumePoint point;
  if (rank == 0) {
    if (c.resume)
      point = find_resume_checkpoint(c.out_dir);
    else
      check_fresh_start(c.out_dir);
  }
  const int64_t code = sum_over_ranks(ranks, point.found ? point.step + 2 : 0);
  const bool resume = code != 0;
  point = {resume, code - 2};
  const std::string checkpoint = resume ? resume_path(c.out_dir, point) : std::string();

  // Model, engine, loss scaling.
  const DType compute = compute_dtype(c);
  data::ShardSet train_set = data::ShardSet::open(c.train_shards);
  core::nn::Graph graph;
  const ModelNodes nodes = add_model(graph, c, train_set.spec().channels);
  graph.build(device, c.seed, compute);
  // Pretrained backbone weights (torchvision ImageNet safetensors, or a ResNet
  // checkpoint of `cohort train`; the file's content decides) before the engine:
  // it broadcasts rank 0's parameters.
  if (!c.pretrained.empty() && !resume) {
    models::ImportOptions io;
    io.graph_prefix = c.model == "deeplabv3plus" ? "backbone." : "";  // resnet: as named
    io.ignore_file_prefixes = {"fc."};
    io.strict = true;
    const models::ImportReport report = models::import_pretrained_weights(c.pretrained, graph, io);
    if (talk)
      fmt::print("pretrained: {} tensors from {} ({}; {} ignored)\n", report.loaded, c.pretrained,
                 report.format, report.ignored.size());
  }
  core::Context ctx(device);
  ctx.set_seed(c.seed + 1 + static_cast<uint64_t>(rank));  // dropout differs per rank
  TrainingEngine engine(graph, c, ranks.grads);            // collective with ranks
  // Multi-task loss.balancing dwa: the loss node keeps its weights and epoch sums
  // as buffers (in checkpoints); with ranks, each step's task losses are summed
  // over them on the device (like SyncBatchNorm's statistics), so every rank
  // holds the same sums and rank 0's checkpoint holds all that is needed.
  auto* dwa = dynamic_cast<core::nn::WeightedLossSum*>(graph.layer(nodes.loss));
  if (dwa != nullptr && !dwa->is_dwa()) dwa = nullptr;
  std::unique_ptr<core::ops::StatsReducer> dwa_reducer;
  if (dwa != nullptr && world > 1) {
    dwa_reducer = comm::make_stats_reducer(*ranks.grads);
    dwa->set_reducer(dwa_reducer.get());
  }
  // loss.balancing pcgrad | gradnorm: one backward per task, combined.
  const std::unique_ptr<TaskGradients> task_gradients =
      make_task_gradients(ctx, graph, nodes, engine, c);
  if (task_gradients && talk)
    fmt::print(
        "{}: {} of {} parameters shared by both tasks{}\n", c.loss_balancing,
        task_gradients->shared_parameters(), graph.num_parameters(),
        task_gradients->gradnorm_layer().empty()
            ? std::string()
            : fmt::format("; gradient norms compared on '{}'", task_gradients->gradnorm_layer()));
  core::optim::LossScalerConfig lc;
  lc.enabled = compute == DType::f16;
  core::optim::LossScaler scaler(lc, device);

  TrainResult result;
  core::io::TrainingProgress progress;
  progress.config = to_yaml(c);
  if (resume) {
    const std::string config_text = progress.config;
    progress = engine.load(checkpoint, &scaler, ctx);
    progress.config = config_text;
    // The checkpoint holds rank 0's RNG state; each rank's dropout stream is its
    // own seed at the common offset (every rank draws the same amount per step).
    ctx.set_seed(c.seed + 1 + static_cast<uint64_t>(rank), ctx.rng_offset());
    result.resumed = true;
    result.checkpoint = checkpoint;
  }
  result.steps = progress.step;

  // Data: this rank's part of the global order, from the checkpoint's position.
  data::LoaderOptions lo = loader_options(c, train_set, ranks, device, true, nodes.dense);
  const int64_t dataset_size = train_set.size();
  if (resume)
    lo.start =
        data::SamplerPosition{c.seed, dataset_size, progress.epoch, progress.sample_in_epoch};
  data::Loader loader(std::move(train_set), lo);

  core::optim::ScheduleConfig sc;
  sc.kind = c.schedule;
  sc.base_lr = c.lr;
  sc.total_steps = loader.steps_per_epoch() * c.epochs;
  if (c.max_steps > 0) sc.total_steps = std::min(sc.total_steps, c.max_steps);
  sc.warmup_steps = std::min(c.warmup_steps, sc.total_steps / 2);
  core::optim::validate(sc);
  if (talk)
    fmt::print("cohort train: {} ranks, {} -> {}, {} steps of global batch {} ({} per epoch){}\n",
               world, c.train_shards, c.out_dir, sc.total_steps, c.batch, loader.steps_per_epoch(),
               resume ? fmt::format(", resuming at step {}", progress.step) : "");
  if (talk)
    fmt::print("model: {} ({:.2f} M parameters), {} compute on {}, ZeRO stage {}\n", c.model,
               static_cast<double>(graph.num_parameters()) / 1e6, c.dtype, device.str(),
               c.zero_stage);
  RunLog metrics(talk ? c.out_dir : "", c.tensorboard, resume ? progress.step : 0);
  RankLog rank_log(world > 1 ? c.out_dir : "", rank, resume ? progress.step : 0);

  // The whole training state at this step boundary into `path` (atomic).
  auto save_to = [&](const std::string& path) {
    const data::SamplerPosition pos = loader.position();
    progress.step = result.steps;
    progress.epoch = pos.epoch;
    progress.sample_in_epoch = pos.samples_done;
    engine.save(path, &scaler, ctx, progress);
  };
  auto save = [&]() {
    const std::string path = checkpoint_path(c.out_dir, result.steps);
    save_to(path);
    if (rank == 0) publish_checkpoint(c.out_dir, path, c.keep_last);
    result.checkpoint = path;
  };
  // checkpoint.keep_best: rank 0 keeps the record (best.json, continued on
  // resume) and decides; every rank takes part in the save.
  BestEvaluation best;
  if (talk && !c.keep_best.empty()) best = read_best_evaluation(c.out_dir, c.keep_best);
  auto keep_if_best = [&](const EvalResult& r) {
    if (c.keep_best.empty()) return;
    const double value = c.keep_best == "eval_miou"            ? r.miou
                         : c.keep_best == "eval_depth_abs_rel" ? r.depth_abs_rel
                         : c.keep_best == "eval_depth_rmse"    ? r.depth_rmse
                                                               : r.accuracy;
    const bool better = talk && improves(c.keep_best, value, best);
    if (sum_over_ranks(ranks, better ? 1 : 0) == 0) return;
    if (talk) write_best_evaluation(c.out_dir, c.keep_best, result.steps, value, true);
    save_to(best_checkpoint_path(c.out_dir));
    if (!talk) return;
    // The checkpoint is complete: a record that cannot be finished only warns.
    try {
      write_best_evaluation(c.out_dir, c.keep_best, result.steps, value);
    } catch (const Error& e) {
      std::fprintf(stderr, "cohort train: warning: %s\n", e.what());
    }
    best = {true, result.steps, value};
    fmt::print("step {}: best {} so far ({:.4f}): {}\n", result.steps, c.keep_best, value,
               best_checkpoint_path(c.out_dir));
  };

  // Evaluation over the whole eval set (each sample once across ranks); with
  // log.eval_every_steps also during training. Forward in eval mode changes no
  // training state, so resumed runs stay bitwise equal.
  EvalSetup eval_setup{&ctx, &graph, nodes, ranks, device, c.zero_stage == 3};
  auto evaluate_now = [&]() {
    const EvalResult r = evaluate(eval_setup, c);
    result.eval_accuracy = r.accuracy;
    result.eval_miou = r.miou;
    result.eval_depth_abs_rel = r.depth_abs_rel;
    result.eval_depth_rmse = r.depth_rmse;
    keep_if_best(r);
    if (!talk) return;
    std::vector<std::string> names;
    // The set outlives the loop (a range-for over a temporary's member dangles).
    const data::ShardSet eval_set = data::ShardSet::open(c.eval_shards);
    for (const data::ClassEntry& e : eval_set.spec().classes)
      names.push_back(e.name);
    fmt::print("{}", describe(r, names));
    std::vector<Metric> record{
        {nodes.dense ? "eval_pixel_accuracy" : "eval_accuracy", {r.accuracy}, {}}};
    if (nodes.dense) record.push_back({"eval_miou", {r.miou}, {}});
    if (c.depth_head) {
      record.push_back({"eval_depth_abs_rel", {r.depth_abs_rel}, {}});
      record.push_back({"eval_depth_rmse", {r.depth_rmse}, {}});
    }
    metrics.write(result.steps, record);
  };

  // Fine-tuning: frozen backbone for the first freeze_backbone_steps steps (also
  // when resuming inside that window). The engines and the optimizer follow the
  // trainable set at their next backward/step (buckets and segments rebuilt).
  bool backbone_frozen = result.steps < c.freeze_backbone_steps;
  if (backbone_frozen) set_backbone_trainable(graph, c, false);

  comm::StepTimer timer;             // per-rank data wait / exposed communication / compute
  comm::StepBreakdown logged_timer;  // its means at the last record (rank logs)
  int logged_timer_steps = 0;
  auto window_start = Clock::now();
  int64_t window_steps = 0;
  while (result.steps < sc.total_steps) {
    // One host all-reduce per step: every rank stops at the same step, or none.
    const bool slice_done = c.stop_after_steps > 0 && result.steps_this_run >= c.stop_after_steps;
    if (slice_done || sum_over_ranks(ranks, g_stop_requested.load()) > 0) {
      result.stopped = true;
      break;
    }
    if (backbone_frozen && result.steps >= c.freeze_backbone_steps) {
      set_backbone_trainable(graph, c, true);
      backbone_frozen = false;
      if (talk) fmt::print("step {}: backbone unfrozen\n", result.steps);
    }
    timer.begin_step();
    const auto data_start = Clock::now();
    const data::Batch* batch = loader.next(ctx.stream());
    timer.add_data_wait(std::chrono::duration<double>(Clock::now() - data_start).count());
    const double lr = core::optim::learning_rate(sc, result.steps);
    const StepLosses losses =
        run_train_step(ctx, graph, nodes, engine, scaler,
                       step_inputs(ctx, *batch, nodes, compute, c.micro_batches),
                       {.lr = lr,
                        .grad_clip_norm = c.grad_clip_norm,
                        .whole_batch_mean = c.loss_normalize == "global",
                        .task_gradients = task_gradients.get()});
    timer.add_exposed_comm(task_gradients ? task_gradients->exposed_comm_seconds()
                                          : engine.exposed_comm_seconds());
    timer.end_step();
    ++result.steps;
    ++result.steps_this_run;
    ++window_steps;
    const bool last = result.steps == sc.total_steps;
    if (result.steps % c.log_every == 0 || last) {
      // The step's losses, averaged over the ranks (every rank logs at the same
      // steps): with whole-batch means a rank's value is only its part of the
      // global mean, times the rank count. Multi-task: each task's own loss too.
      std::vector<double> values = {losses.loss.item(ctx.stream())};  // synchronises
      if (c.depth_head)
        values.insert(values.end(),
                      {losses.seg.item(ctx.stream()), losses.depth.item(ctx.stream())});
      if (world > 1) {
        // This rank's own view, in its own log: its loss and where its time went
        // since the last record.
        const comm::StepBreakdown now = timer.mean();
        const double n = timer.steps() - logged_timer_steps;
        auto window_ms = [&](double mean_now, double mean_before) {
          return n > 0 ? 1e3 * (mean_now * timer.steps() - mean_before * logged_timer_steps) / n
                       : 0.0;
        };
        rank_log.write(fmt::format(
            "step {}: loss {:.5f} (this rank's value), per step: data wait {:.2f} ms, exposed "
            "communication {:.2f} ms, compute {:.2f} ms",
            result.steps, values[0], window_ms(now.data_s, logged_timer.data_s),
            window_ms(now.comm_s, logged_timer.comm_s),
            window_ms(now.compute_s, logged_timer.compute_s)));
        logged_timer = now;
        logged_timer_steps = timer.steps();
        values = sum_over_ranks(ranks, values);
        for (double& v : values)
          v /= world;
      }
      result.final_loss = values[0];
      const double seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double rate = seconds > 0 ? static_cast<double>(window_steps * c.batch) / seconds : 0;
      std::vector<Metric> record{{"epoch", {static_cast<double>(batch->epoch)}, {}},
                                 {"loss", {result.final_loss}, {}}};
      std::string tasks_text;
      if (c.depth_head) {
        const double seg = values[1], depth = values[2];
        tasks_text = fmt::format(" (seg {:.4f}, depth {:.4f})", seg, depth);
        record.push_back({"seg_loss", {seg}, {}});
        record.push_back({"depth_loss", {depth}, {}});
      }
      if (c.depth_head && c.loss_balancing == "gradnorm") {
        // The same on every rank (computed from all-reduced norms and losses).
        auto* weights = dynamic_cast<core::nn::WeightedLossSum*>(graph.layer(nodes.loss));
        const std::vector<double> w = weights->weights(ctx).to_vector(ctx.stream());
        tasks_text += fmt::format(" weights {:.3f}/{:.3f}", w.at(0), w.at(1));
        record.push_back({"loss_weights", w, {"seg", "depth"}});
      }
      // Tensor memory at its peak since the last record (the pool's counters on
      // a GPU): what decides whether a larger batch would fit.
      const double peak_gib =
          static_cast<double>(core::memory_stats(device).peak_in_use) / (1 << 30);
      core::reset_peak_memory(device);
      record.push_back({"lr", {lr}, {}});
      record.push_back({"samples_per_s", {rate}, {}});
      record.push_back({"memory_peak_gib", {peak_gib}, {}});
      if (talk) {
        const double eta =
            rate > 0 ? static_cast<double>((sc.total_steps - result.steps) * c.batch) / rate : 0;
        fmt::print(
            "step {:>6}/{} epoch {} loss {:.4f}{} lr {:.5f} {:.1f} samples/s, eta {}, peak "
            "memory {:.2f} GiB\n",
            result.steps, sc.total_steps, batch->epoch + 1, result.final_loss, tasks_text, lr, rate,
            duration_text(eta), peak_gib);
        metrics.write(result.steps, record);
      }
      window_start = Clock::now();
      window_steps = 0;
    }
    // DWA: after an epoch's last step, the weights of the next epoch (one host
    // read of the sums; every rank computes the same weights from the same sums).
    if (dwa != nullptr && batch->step + 1 == loader.steps_per_epoch()) {
      const std::vector<double> weights = dwa->finish_epoch(ctx);
      if (talk) {
        fmt::print("epoch {} done: DWA loss weights for epoch {}: seg {:.4f}, depth {:.4f}\n",
                   batch->epoch + 1, batch->epoch + 2, weights.at(0), weights.at(1));
        metrics.write(result.steps, {{"epoch", {static_cast<double>(batch->epoch + 1)}, {}},
                                     {"loss_weights", weights, {"seg", "depth"}}});
      }
    }
    if (c.checkpoint_every > 0 && result.steps % c.checkpoint_every == 0 && !last) save();
    if (c.eval_every > 0 && result.steps % c.eval_every == 0 && !last && !c.eval_shards.empty())
      evaluate_now();
  }
  save();
  if (talk)
    fmt::print("{} at step {}: checkpoint {}\n", result.stopped ? "stopped" : "finished",
               result.steps, result.checkpoint);
  if (ranks.control != nullptr && timer.steps() > 0) {
    // The launcher's ranks are MPI_COMM_WORLD (launch/main.cpp builds both
    // communicators over it).
    const comm::RankBreakdowns times = comm::summarize(timer, MPI_COMM_WORLD);
    if (talk) fmt::print("step time per rank (mean):\n{}", times.str());
  }

  if (!c.eval_shards.empty() && !result.stopped) evaluate_now();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace cohort::launch
