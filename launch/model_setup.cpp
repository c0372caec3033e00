#include "launch/model_setup.hpp"

#include <fmt/format.h>

#include <memory>

#include "core/nn/layers.hpp"
#include "core/nn/loss_balancing.hpp"
#include "models/deeplabv3plus.hpp"
#include "models/resnet.hpp"
#include "models/small_cnn.hpp"

namespace cohort::launch {

using core::DType;
using core::Shape;
using core::Tensor;

int rank_of(const TrainRanks& r) {
  return r.control != nullptr ? r.control->rank() : 0;
}
int world_of(const TrainRanks& r) {
  return r.control != nullptr ? r.control->size() : 1;
}

std::vector<double> sum_over_ranks(const TrainRanks& r, const std::vector<double>& values) {
  if (r.control == nullptr || values.empty()) return values;
  Tensor t = Tensor::from_vector(values, Shape{static_cast<int64_t>(values.size())}, DType::f64);
  r.control->all_reduce(t, comm::ReduceOp::sum)->wait();
  return t.to_vector();
}

// Counts travel as i64 (exact beyond 2^53, unlike the f64 sum above).
std::vector<int64_t> sum_over_ranks(const TrainRanks& r, const std::vector<int64_t>& values) {
  if (r.control == nullptr || values.empty()) return values;
  Tensor t = Tensor::empty(Shape{static_cast<int64_t>(values.size())}, DType::i64);
  std::copy(values.begin(), values.end(), t.data<int64_t>());
  r.control->all_reduce(t, comm::ReduceOp::sum)->wait();
  return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + values.size());
}

int64_t sum_over_ranks(const TrainRanks& r, int64_t value) {
  return sum_over_ranks(r, std::vector<int64_t>{value})[0];
}

DType compute_dtype(const TrainConfig& c) {
  if (c.dtype == "bf16") return DType::bf16;
  if (c.dtype == "f16") return DType::f16;
  return DType::f32;
}

namespace {

// loss.class_weights as cross entropy's weight tensor (undefined when none).
core::Tensor class_weights_of(const TrainConfig& c) {
  if (c.class_weights.empty()) return {};
  return core::Tensor::from_vector(
      c.class_weights, core::Shape{static_cast<int64_t>(c.class_weights.size())}, core::DType::f32);
}

// loss.* as the model takes it (a TrainConfig made in code skips validation, so
// an unknown method is refused here too).
core::nn::LossBalancing loss_balancing_of(const TrainConfig& c) {
  using Method = core::nn::LossBalancingMethod;
  core::nn::LossBalancing b;
  if (c.loss_balancing == "fixed")
    b.method = Method::fixed;
  else if (c.loss_balancing == "dwa")
    b.method = Method::dwa;
  else if (c.loss_balancing == "pcgrad")
    b.method = Method::pcgrad;
  else if (c.loss_balancing == "gradnorm")
    b.method = Method::gradnorm;
  else
    COHORT_CHECK(c.loss_balancing == "uncertainty",
                 fmt::format("train: loss.balancing must be uncertainty, fixed, dwa, pcgrad or "
                             "gradnorm, got '{}'",
                             c.loss_balancing));
  b.weights = c.loss_weights;
  b.temperature = c.dwa_temperature;
  return b;
}

}  // namespace

ModelNodes add_model(core::nn::Graph& graph, const TrainConfig& c, int64_t in_channels) {
  COHORT_CHECK(
      c.depth_head || (c.loss_balancing == TrainConfig{}.loss_balancing && c.loss_weights.empty()),
      "train: loss.balancing and loss.weights need model.depth_head (a multi-task "
      "model)");
  if (c.model == "resnet") {
    const core::nn::NodeId image = graph.input("image");
    const core::nn::NodeId label = graph.input("label");
    models::ResNetOptions o;
    o.depth = c.depth;
    o.num_classes = c.num_classes;
    o.in_channels = static_cast<int>(in_channels);
    const models::ResNetNodes n = models::add_resnet(graph, image, o);
    // Every class id counts, 255 included (ImageNet has 1000 classes): no ignore label.
    const core::nn::NodeId loss = graph.add(
        "loss",
        std::make_unique<core::nn::CrossEntropyLoss>(/*ignore_index=*/-1, class_weights_of(c)),
        {n.logits, label});
    return {n.logits, loss, false};
  }
  if (c.model == "deeplabv3plus") {
    models::DeepLabV3PlusOptions o;
    o.num_classes = c.num_classes;
    o.output_stride = c.output_stride;
    o.backbone_depth = c.depth;
    o.in_channels = static_cast<int>(in_channels);
    o.depth_head = c.depth_head;
    o.depth_scale = c.depth_head ? c.depth_scale : 1.0;
    o.class_weights = class_weights_of(c);
    if (c.depth_head) o.loss_balancing = loss_balancing_of(c);
    const models::DeepLabV3PlusNodes n = models::add_deeplabv3plus(graph, o);
    return {n.logits, n.loss, true, n.depth, n.seg_loss, n.depth_loss};
  }
  const models::SmallCnnNodes n =
      models::add_small_cnn(graph, c.num_classes, 0.25, class_weights_of(c));
  return {n.logits, n.loss, false};
}

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

data::LoaderOptions loader_options(const TrainConfig& c, const data::ShardSet& set,
                                   const TrainRanks& ranks, core::Device device, bool train,
                                   bool dense) {
  data::LoaderOptions o;
  o.mode = train ? data::LoaderMode::train : data::LoaderMode::eval;
  o.batch_size = c.batch / world_of(ranks);
  o.rank = rank_of(ranks);
  o.world_size = world_of(ranks);
  o.seed = c.seed;
  o.threads = c.threads;
  o.prefetch = c.prefetch;
  o.augment = augment_for(c, set, train, dense);
  o.image_dtype = compute_dtype(c) == DType::bf16 ? DType::bf16 : DType::f32;
  o.label_dtype = DType::i32;
  o.device = device;
  return o;
}

void add_depth_inputs(const data::Batch& b, std::map<std::string, Tensor>& inputs) {
  Shape s = b.depth.shape();
  s = Shape{s[0], s[1], s[2], 1};
  inputs["depth"] = b.depth.view(s);
  inputs["depth_valid"] = b.depth_valid.view(s);
}

}  // namespace cohort::launch
