#include "launch/trainer.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

#include "comm/step_timer.hpp"
#include "core/io/training_state.hpp"
#include "core/nn/graph.hpp"
#include "core/nn/layers.hpp"
#include "core/ops/ops.hpp"
#include "core/optim/loss_scaler.hpp"
#include "core/optim/optimizer.hpp"
#include "core/optim/schedule.hpp"
#include "data/loader.hpp"
#include "data/sampler.hpp"
#include "launch/engine.hpp"
#include "models/deeplabv3plus.hpp"
#include "models/resnet.hpp"
#include "models/small_cnn.hpp"
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

// Rank 0's metrics file (JSON lines), appended to across resumed runs.
class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path) {
    if (!path.empty()) {
      m_file = std::fopen(path.c_str(), "a");
      COHORT_CHECK(m_file != nullptr, fmt::format("train: cannot append to {}", path));
    }
  }
  ~MetricsLog() {
    if (m_file != nullptr) std::fclose(m_file);
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const std::string& json_line) {
    if (m_file == nullptr) return;
    std::fputs((json_line + "\n").c_str(), m_file);
    std::fflush(m_file);  // a killed run keeps what it logged
  }

 private:
  std::FILE* m_file = nullptr;
};

int rank_of(const TrainRanks& r) {
  return r.control != nullptr ? r.control->rank() : 0;
}
int world_of(const TrainRanks& r) {
  return r.control != nullptr ? r.control->size() : 1;
}

// Element-wise sum over the ranks, in one host collective on the control
// communicator (never a device sync); alone, the values themselves.
std::vector<int64_t> sum_over_ranks(const TrainRanks& r, const std::vector<int64_t>& values) {
  if (r.control == nullptr || values.empty()) return values;
  std::vector<double> as_double(values.begin(), values.end());
  Tensor t = Tensor::from_vector(as_double, Shape{static_cast<int64_t>(values.size())}, DType::i64);
  r.control->all_reduce(t, comm::ReduceOp::sum)->wait();
  const std::vector<double> summed = t.to_vector();
  return std::vector<int64_t>(summed.begin(), summed.end());
}

int64_t sum_over_ranks(const TrainRanks& r, int64_t value) {
  return sum_over_ranks(r, std::vector<int64_t>{value})[0];
}

DType dtype_of(const std::string& name) {
  if (name == "bf16") return DType::bf16;
  if (name == "f16") return DType::f16;
  return DType::f32;
}

// What the trainer needs of a model: its inputs are "image" and "label".
struct ModelNodes {
  core::nn::NodeId logits = -1, loss = -1;
  bool dense = false;           // per-pixel labels (segmentation) or one class per image
  core::nn::NodeId depth = -1;  // multi-task: the depth prediction
  core::nn::NodeId seg_loss = -1, depth_loss = -1;  // multi-task: the balanced task losses
};

ModelNodes add_model(core::nn::Graph& graph, const TrainConfig& c, int64_t in_channels) {
  if (c.model == "resnet") {
    const core::nn::NodeId image = graph.input("image");
    const core::nn::NodeId label = graph.input("label");
    models::ResNetOptions o;
    o.depth = c.depth;
    o.num_classes = c.num_classes;
    o.in_channels = static_cast<int>(in_channels);
    const models::ResNetNodes n = models::add_resnet(graph, image, o);
    const core::nn::NodeId loss =
        graph.add("loss", std::make_unique<core::nn::CrossEntropyLoss>(), {n.logits, label});
    return {n.logits, loss, false};
  }
  if (c.model == "deeplabv3plus") {
    models::DeepLabV3PlusOptions o;
    o.num_classes = c.num_classes;
    o.output_stride = c.output_stride;
    o.backbone_depth = c.depth;
    o.in_channels = static_cast<int>(in_channels);
    o.depth_head = c.depth_head;
    const models::DeepLabV3PlusNodes n = models::add_deeplabv3plus(graph, o);
    return {n.logits, n.loss, true, n.depth, n.seg_loss, n.depth_loss};
  }
  const models::SmallCnnNodes n = models::add_small_cnn(graph, c.num_classes);
  return {n.logits, n.loss, false};
}

// The set must fit the model: its kind, and its class table the model's classes.
void check_set_fits(const TrainConfig& c, const data::ShardSet& set, bool dense) {
  const data::DatasetSpec& spec = set.spec();
  COHORT_CHECK(!c.depth_head || data::has_depth(spec.kind),
               fmt::format("train: model.depth_head needs multitask shards (labels and depth); {} "
                           "holds {} data",
                           set.dir(), data::to_string(spec.kind)));
  const bool ok = dense ? data::has_label_map(spec.kind) : data::has_class_id(spec.kind);
  COHORT_CHECK(ok, fmt::format("train: model {} needs {} shards; {} holds {} data", c.model,
                               dense ? "segmentation (or multitask)" : "classification", set.dir(),
                               data::to_string(spec.kind)));
  COHORT_CHECK(static_cast<int>(spec.classes.size()) == c.num_classes,
               fmt::format("train: model.num_classes is {} but {} has {} classes", c.num_classes,
                           set.dir(), spec.classes.size()));
}

data::AugmentOptions augment_for(const TrainConfig& c, const data::ShardSet& set, bool train,
                                 bool dense) {
  check_set_fits(c, set, dense);
  if (dense) {
    if (!train)
      return data::AugmentOptions::dense_eval(
          c.eval_crop == "center" ? data::EvalCrop::center : data::EvalCrop::full, c.crop_height,
          c.crop_width);
    data::AugmentOptions a = data::AugmentOptions::dense_train(c.crop_height, c.crop_width);
    a.min_scale = c.min_scale;
    a.max_scale = c.max_scale;
    return a;
  }
  // Classification: "none" feeds square images of one size as they are;
  // "standard" makes data.image_size crops (random resized crop + flip; evaluation:
  // shorter side to image_size / 0.875, centre crop), whatever the images' sizes.
  const data::DatasetSpec& spec = set.spec();
  if (c.augment == "standard") {
    const int64_t size = c.image_size > 0 ? c.image_size : spec.height;
    COHORT_CHECK(size > 0, fmt::format("train: {} has images of varying sizes: set "
                                       "data.image_size for the crops",
                                       set.dir()));
    return train ? data::AugmentOptions::classification_train(size)
                 : data::AugmentOptions::classification_eval(size);
  }
  COHORT_CHECK(spec.fixed_size() && spec.height == spec.width,
               fmt::format("train: data.augment none feeds images as they are, so they must be "
                           "square and of one size; {} has {}; use data.augment standard with "
                           "data.image_size",
                           set.dir(),
                           spec.fixed_size() ? fmt::format("{}x{}", spec.height, spec.width)
                                             : std::string("varying sizes")));
  const int64_t size = spec.height;
  if (train) {
    data::AugmentOptions a = data::AugmentOptions::classification_train(size);
    a.flip = false;  // the whole image, unflipped: no randomness at all
    a.min_area = a.max_area = 1.0;
    a.min_ratio = a.max_ratio = 1.0;
    return a;
  }
  data::AugmentOptions a = data::AugmentOptions::classification_eval(size);
  a.resize_shorter = size;  // the image as it is
  return a;
}

struct SegmentationScores {
  double miou = 0, pixel_accuracy = 0;
};

// mIoU over the classes that occur in the truth or the predictions (a class absent
// from both has no IoU), as Cityscapes' evaluation averages its 19 classes.
SegmentationScores segmentation_scores(const std::vector<int64_t>& confusion, int64_t k) {
  SegmentationScores s;
  int64_t total = 0, hit = 0, classes = 0;
  double iou_sum = 0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t row = 0, col = 0;
    for (int64_t j = 0; j < k; ++j) {
      row += confusion[static_cast<size_t>(c * k + j)];
      col += confusion[static_cast<size_t>(j * k + c)];
    }
    const int64_t tp = confusion[static_cast<size_t>(c * k + c)];
    total += row;
    hit += tp;
    if (row + col - tp > 0) {
      iou_sum += static_cast<double>(tp) / static_cast<double>(row + col - tp);
      ++classes;
    }
  }
  s.miou = classes > 0 ? iou_sum / static_cast<double>(classes) : 0;
  s.pixel_accuracy = total > 0 ? static_cast<double>(hit) / static_cast<double>(total) : 0;
  return s;
}

// Multi-task inputs: depth and its validity as [N, H, W, 1], like the prediction.
void add_depth_inputs(const data::Batch& b, std::map<std::string, Tensor>& inputs) {
  Shape s = b.depth.shape();
  s = Shape{s[0], s[1], s[2], 1};
  inputs["depth"] = b.depth.view(s);
  inputs["depth_valid"] = b.depth_valid.view(s);
}

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

std::string json_number(double v) {
  return std::isfinite(v) ? fmt::format("{:.6g}", v) : "null";
}

}  // namespace

void request_training_stop() {
  g_stop_requested.store(1);
}

TrainResult run_training(const TrainConfig& c, core::Device device, TrainRanks ranks) {
  const auto start = Clock::now();
  const int rank = rank_of(ranks), world = world_of(ranks);
  COHORT_CHECK((ranks.grads == nullptr) == (ranks.control == nullptr),
               "train: the gradient and control communicators come together");
  COHORT_CHECK(ranks.grads != nullptr || c.zero_stage == 0,
               fmt::format("train: parallel.zero_stage {} needs ranks (start under mpirun or srun)",
                           c.zero_stage));
  COHORT_CHECK(c.batch % world == 0,
               fmt::format("train: the global data.batch {} must split evenly over {} ranks",
                           c.batch, world));
  g_stop_requested.store(0);
  StopSignals signals;
  const bool talk = rank == 0;
  const std::string checkpoint = (std::filesystem::path(c.out_dir) / "checkpoint.h5").string();
  if (rank == 0) std::filesystem::create_directories(c.out_dir);
  // Every rank must see the same decision; rank 0's view of the file decides.
  const bool resume =
      sum_over_ranks(ranks, rank == 0 && c.resume && std::filesystem::exists(checkpoint)) > 0;

  // Model, engine, loss scaling.
  const DType compute = dtype_of(c.dtype);
  data::ShardSet train_set = data::ShardSet::open(c.train_shards);
  core::nn::Graph graph;
  const ModelNodes nodes = add_model(graph, c, train_set.spec().channels);
  graph.build(device, c.seed, compute);
  // ImageNet backbone weights before the engine: it broadcasts rank 0's parameters.
  if (!c.pretrained.empty() && !resume) {
    models::ImportOptions io;
    io.graph_prefix = c.model == "deeplabv3plus" ? "backbone." : "";  // resnet: as named
    io.ignore_file_prefixes = {"fc."};
    io.strict = true;
    const models::ImportReport report = models::import_torchvision_weights(c.pretrained, graph, io);
    if (talk)
      fmt::print("pretrained: {} tensors from {} ({} ignored)\n", report.loaded, c.pretrained,
                 report.ignored.size());
  }
  core::Context ctx(device);
  ctx.set_seed(c.seed + 1 + static_cast<uint64_t>(rank));  // dropout differs per rank
  core::optim::OptimizerConfig oc;
  oc.kind = c.optimizer;
  oc.momentum = c.momentum;
  oc.nesterov = c.nesterov;
  oc.weight_decay = c.weight_decay;
  TrainingEngine engine(graph, oc, ranks.grads, c.zero_stage);  // collective with ranks
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
  data::LoaderOptions lo;
  lo.mode = data::LoaderMode::train;
  lo.batch_size = c.batch / world;
  lo.rank = rank;
  lo.world_size = world;
  lo.seed = c.seed;
  lo.threads = c.threads;
  lo.prefetch = c.prefetch;
  lo.augment = augment_for(c, train_set, true, nodes.dense);
  lo.image_dtype = compute == DType::bf16 ? DType::bf16 : DType::f32;
  lo.label_dtype = DType::i32;
  lo.device = device;
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
  MetricsLog metrics(talk ? (std::filesystem::path(c.out_dir) / "metrics.jsonl").string() : "");

  auto save = [&]() {
    const data::SamplerPosition pos = loader.position();
    progress.step = result.steps;
    progress.epoch = pos.epoch;
    progress.sample_in_epoch = pos.samples_done;
    engine.save(checkpoint, &scaler, ctx, progress);
    result.checkpoint = checkpoint;
  };

  // Evaluation over the whole eval set (each sample once across ranks); with
  // log.eval_every_steps also during training. Forward in eval mode changes no
  // training state, so resumed runs stay bitwise equal.
  auto evaluate = [&]() {
    data::ShardSet eval_set = data::ShardSet::open(c.eval_shards);
    data::LoaderOptions eo = lo;
    eo.mode = data::LoaderMode::eval;
    eo.start.reset();
    eo.augment = augment_for(c, eval_set, false, nodes.dense);
    const int64_t eval_size = eval_set.size();
    data::Loader eval(std::move(eval_set), eo);
    // ZeRO-3 forwards are collective: every rank runs the most batches any rank has.
    const int64_t rounds =
        c.zero_stage == 3 ? data::EvalSampler(eval_size, eo.batch_size, rank, world).max_batches()
                          : eval.batches();
    // Classification: correct images; segmentation: a confusion matrix over the
    // labelled pixels (rows: truth, columns: prediction), both summed over ranks.
    const int64_t k = c.num_classes;
    std::vector<int64_t> confusion(nodes.dense ? static_cast<size_t>(k * k) : 0, 0);
    int64_t correct = 0;
    // Multi-task depth: sums over valid pixels of |d - t| / t, (d - t)^2 and count.
    std::vector<double> depth_sums(3, 0.0);
    Tensor filler;
    for (int64_t b = 0; b < rounds; ++b) {
      const data::Batch* eb = eval.next(ctx.stream());
      Tensor image;
      if (eb != nullptr) {
        image = eb->image;
      } else {
        if (!filler.defined())
          filler =
              Tensor::zeros(Shape{1, eval.height(), eval.width(), eval.shards().spec().channels},
                            eo.image_dtype, device, ctx.stream());
        image = filler;
      }
      if (image.dtype() != compute) image = core::ops::cast(ctx, image, compute);
      std::vector<core::nn::NodeId> wanted = {nodes.logits};
      if (c.depth_head) wanted.push_back(nodes.depth);
      graph.forward(ctx, {{"image", image}}, {.training = false}, wanted);
      if (eb == nullptr) continue;
      if (c.depth_head) {
        const std::vector<double> d = graph.output(nodes.depth).to_vector(ctx.stream());
        const std::vector<double> t = eb->depth.to_vector(ctx.stream());
        const std::vector<double> v = eb->depth_valid.to_vector(ctx.stream());
        for (size_t i = 0; i < t.size(); ++i) {
          if (v[i] == 0 || t[i] <= 0) continue;
          depth_sums[0] += std::abs(d[i] - t[i]) / t[i];
          depth_sums[1] += (d[i] - t[i]) * (d[i] - t[i]);
          depth_sums[2] += 1;
        }
      }
      const std::vector<double> predicted =
          core::ops::argmax_channels(ctx, graph.output(nodes.logits)).to_vector(ctx.stream());
      const std::vector<double> truth =
          (nodes.dense ? eb->label : eb->class_id).to_vector(ctx.stream());
      for (size_t i = 0; i < truth.size(); ++i) {
        if (!nodes.dense) {
          correct += predicted[i] == truth[i];
        } else if (truth[i] != data::kIgnoreLabel) {
          ++confusion[static_cast<size_t>(truth[i]) * static_cast<size_t>(k) +
                      static_cast<size_t>(predicted[i])];
        }
      }
    }
    if (!nodes.dense) {
      result.eval_accuracy =
          static_cast<double>(sum_over_ranks(ranks, correct)) / static_cast<double>(eval_size);
      if (talk) {
        fmt::print("eval accuracy {:.2f}% on {} samples\n", 100 * result.eval_accuracy, eval_size);
        metrics.write(fmt::format(R"({{"step": {}, "eval_accuracy": {}}})", result.steps,
                                  json_number(result.eval_accuracy)));
      }
    } else {
      confusion = sum_over_ranks(ranks, confusion);
      const SegmentationScores s = segmentation_scores(confusion, k);
      result.eval_accuracy = s.pixel_accuracy;
      result.eval_miou = s.miou;
      if (c.depth_head) {
        if (ranks.control != nullptr) {
          Tensor t = Tensor::from_vector(depth_sums, Shape{3}, DType::f64);
          ranks.control->all_reduce(t, comm::ReduceOp::sum)->wait();
          depth_sums = t.to_vector();
        }
        const double n = std::max(depth_sums[2], 1.0);
        result.eval_depth_abs_rel = depth_sums[0] / n;
        result.eval_depth_rmse = std::sqrt(depth_sums[1] / n);
        if (talk) {
          fmt::print("eval depth: abs rel {:.4f}, RMSE {:.3f} m over {} valid pixels\n",
                     result.eval_depth_abs_rel, result.eval_depth_rmse,
                     static_cast<int64_t>(depth_sums[2]));
          metrics.write(fmt::format(
              R"({{"step": {}, "eval_depth_abs_rel": {}, "eval_depth_rmse": {}}})", result.steps,
              json_number(result.eval_depth_abs_rel), json_number(result.eval_depth_rmse)));
        }
      }
      if (talk) {
        fmt::print("eval mIoU {:.2f}% (pixel accuracy {:.2f}%) on {} images\n", 100 * s.miou,
                   100 * s.pixel_accuracy, eval_size);
        metrics.write(fmt::format(R"({{"step": {}, "eval_miou": {}, "eval_pixel_accuracy": {}}})",
                                  result.steps, json_number(s.miou),
                                  json_number(s.pixel_accuracy)));
      }
    }
  };

  // Fine-tuning: frozen backbone for the first freeze_backbone_steps steps (also
  // when resuming inside that window). The engines and the optimizer follow the
  // trainable set at their next backward/step (buckets and segments rebuilt).
  bool backbone_frozen = result.steps < c.freeze_backbone_steps;
  if (backbone_frozen) set_backbone_trainable(graph, c, false);

  comm::StepTimer timer;  // per-rank data wait / exposed communication / compute
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
    Tensor image = batch->image;
    if (image.dtype() != compute) image = core::ops::cast(ctx, image, compute);
    std::map<std::string, Tensor> inputs = {
        {"image", image}, {"label", nodes.dense ? batch->label : batch->class_id}};
    if (c.depth_head) add_depth_inputs(*batch, inputs);
    // Multi-task: the task losses are kept too, for the log lines.
    std::vector<core::nn::NodeId> wanted = {nodes.loss};
    if (c.depth_head) wanted.insert(wanted.end(), {nodes.seg_loss, nodes.depth_loss});
    graph.forward(ctx, inputs, {.training = true}, wanted);
    engine.prepare(ctx);
    graph.backward(ctx, {{nodes.loss, scaler.enabled() ? scaler.seed() : Tensor()}});
    engine.finish(ctx);
    if (scaler.enabled()) {
      Tensor grads = engine.gradients();
      scaler.unscale(ctx, grads);
    }
    const double lr = core::optim::learning_rate(sc, result.steps);
    engine.step(ctx, lr, scaler.skip_flag());
    scaler.update(ctx);
    timer.add_exposed_comm(engine.exposed_comm_seconds());
    timer.end_step();
    ++result.steps;
    ++result.steps_this_run;
    ++window_steps;
    const bool last = result.steps == sc.total_steps;
    if (result.steps % c.log_every == 0 || last) {
      result.final_loss = graph.output(nodes.loss).item(ctx.stream());  // synchronises
      const double seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double rate = seconds > 0 ? static_cast<double>(window_steps * c.batch) / seconds : 0;
      // Multi-task: each task's own loss beside the balanced total.
      std::string tasks_text, tasks_json;
      if (c.depth_head) {
        const double seg = graph.output(nodes.seg_loss).item(ctx.stream());
        const double depth = graph.output(nodes.depth_loss).item(ctx.stream());
        tasks_text = fmt::format(" (seg {:.4f}, depth {:.4f})", seg, depth);
        tasks_json = fmt::format(R"(, "seg_loss": {}, "depth_loss": {})", json_number(seg),
                                 json_number(depth));
      }
      if (talk) {
        fmt::print("step {:>6}/{} epoch {} loss {:.4f}{} lr {:.5f} {:.1f} samples/s\n",
                   result.steps, sc.total_steps, batch->epoch + 1, result.final_loss, tasks_text,
                   lr, rate);
        metrics.write(fmt::format(
            R"({{"step": {}, "epoch": {}, "loss": {}{}, "lr": {}, "samples_per_s": {}}})",
            result.steps, batch->epoch, json_number(result.final_loss), tasks_json, json_number(lr),
            json_number(rate)));
      }
      window_start = Clock::now();
      window_steps = 0;
    }
    if (c.checkpoint_every > 0 && result.steps % c.checkpoint_every == 0 && !last) save();
    if (c.eval_every > 0 && result.steps % c.eval_every == 0 && !last && !c.eval_shards.empty())
      evaluate();
  }
  save();
  if (talk)
    fmt::print("{} at step {}: checkpoint {}\n", result.stopped ? "stopped" : "finished",
               result.steps, checkpoint);
  if (ranks.control != nullptr && timer.steps() > 0) {
    // The launcher's ranks are MPI_COMM_WORLD (launch/main.cpp builds both
    // communicators over it).
    const comm::RankBreakdowns times = comm::summarize(timer, MPI_COMM_WORLD);
    if (talk) fmt::print("step time per rank (mean):\n{}", times.str());
  }

  if (!c.eval_shards.empty() && !result.stopped) evaluate();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace cohort::launch
