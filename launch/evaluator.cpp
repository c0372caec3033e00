#include "launch/evaluator.hpp"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.hpp"
#include "core/io/atomic_file.hpp"
#include "core/ops/ops.hpp"
#include "data/image_codec.hpp"
#include "data/sampler.hpp"
#include "data/shard_format.hpp"

namespace cohort::launch {
namespace {

using core::DType;
using core::Shape;
using core::Tensor;

// Writes each row of a batch's predictions [B, H, W] (i32 train ids) as an 8-bit
// PNG named after its sample. The file appears whole or not at all (temporary
// name, then rename), so an interrupted run never leaves a truncated prediction
// that an evaluator would read.
class PredictionWriter {
 public:
  PredictionWriter(const PredictionOutput& out, int64_t num_classes) : m_out(out) {
    if (m_out.dir.empty()) return;
    if (m_out.value_of_class.empty())
      for (int64_t c = 0; c < num_classes; ++c)
        m_out.value_of_class.push_back(static_cast<uint8_t>(c));
    COHORT_CHECK(static_cast<int64_t>(m_out.value_of_class.size()) == num_classes,
                 fmt::format("eval: the prediction value table has {} entries for {} classes",
                             m_out.value_of_class.size(), num_classes));
    std::filesystem::create_directories(m_out.dir);
  }

  bool enabled() const { return !m_out.dir.empty(); }
  int64_t written() const { return m_written; }

  void write(core::Context& ctx, const Tensor& predicted, const data::Batch& batch,
             const data::ShardSet& set) {
    const Tensor host = predicted.to(core::Device::cpu(), ctx.stream());
    ctx.synchronize();
    const int64_t h = host.shape()[1], w = host.shape()[2];
    const int32_t* p = host.data<int32_t>();
    for (int64_t b = 0; b < batch.size(); ++b) {
      data::Image8 image{h, w, 1, std::vector<uint8_t>(static_cast<size_t>(h * w))};
      const int32_t* row = p + b * h * w;
      for (int64_t i = 0; i < h * w; ++i)
        image.pixels[static_cast<size_t>(i)] = m_out.value_of_class[static_cast<size_t>(row[i])];
      const std::vector<uint8_t> png = data::encode_png(image, 1);
      const std::string name = set.sample_name(batch.indices[static_cast<size_t>(b)]);
      const std::filesystem::path path =
          std::filesystem::path(m_out.dir) / fmt::format("{}_{}.png", name, m_out.suffix);
      core::io::write_file_atomically(path.string(), png.data(), png.size());
      ++m_written;
    }
  }

 private:
  PredictionOutput m_out;
  int64_t m_written = 0;
};

std::vector<int64_t> host_i64(core::Context& ctx, const Tensor& t) {
  const Tensor host = t.to(core::Device::cpu(), ctx.stream());
  ctx.synchronize();
  return std::vector<int64_t>(host.data<int64_t>(), host.data<int64_t>() + host.numel());
}

}  // namespace

void fill_segmentation_scores(EvalResult& r, int64_t k) {
  r.class_iou.assign(static_cast<size_t>(k), std::numeric_limits<double>::quiet_NaN());
  int64_t total = 0, hit = 0, classes = 0;
  double iou_sum = 0;
  for (int64_t c = 0; c < k; ++c) {
    int64_t row = 0, col = 0;
    for (int64_t j = 0; j < k; ++j) {
      row += r.confusion[static_cast<size_t>(c * k + j)];
      col += r.confusion[static_cast<size_t>(j * k + c)];
    }
    const int64_t tp = r.confusion[static_cast<size_t>(c * k + c)];
    total += row;
    hit += tp;
    if (row + col - tp > 0) {
      const double iou = static_cast<double>(tp) / static_cast<double>(row + col - tp);
      r.class_iou[static_cast<size_t>(c)] = iou;
      iou_sum += iou;
      ++classes;
    }
  }
  r.miou = classes > 0 ? iou_sum / static_cast<double>(classes) : 0;
  r.accuracy = total > 0 ? static_cast<double>(hit) / static_cast<double>(total) : 0;
}

EvalResult evaluate(const EvalSetup& setup, const TrainConfig& c, const std::string& shards,
                    const PredictionOutput& predictions) {
  COHORT_CHECK(setup.ctx != nullptr && setup.graph != nullptr, "evaluate: no context or graph");
  core::Context& ctx = *setup.ctx;
  core::nn::Graph& graph = *setup.graph;
  const ModelNodes& nodes = setup.nodes;
  const std::string dir = shards.empty() ? c.eval_shards : shards;
  data::ShardSet set = data::ShardSet::open(dir);
  check_set_fits(c, set, nodes.dense);
  COHORT_CHECK(
      predictions.dir.empty() || nodes.dense,
      fmt::format("eval: predictions are written per pixel; model {} classifies images", c.model));
  COHORT_CHECK(predictions.dir.empty() || c.eval_crop == "full",
               "eval: predictions must cover whole images: set data.eval_crop=full");
  data::LoaderOptions eo = loader_options(c, set, setup.ranks, setup.device, false, nodes.dense);
  const int64_t size = set.size();
  const int rank = rank_of(setup.ranks), world = world_of(setup.ranks);
  data::Loader loader(std::move(set), eo);
  const int64_t rounds = setup.collective_forward
                             ? data::EvalSampler(size, eo.batch_size, rank, world).max_batches()
                             : loader.batches();
  const int64_t k = c.num_classes;
  PredictionWriter writer(predictions, k);

  // Accumulated on the device; read back once after the last batch.
  Tensor confusion = Tensor::zeros(Shape{k, k}, DType::i64, setup.device, ctx.stream());
  Tensor out_of_range = Tensor::zeros(Shape{1}, DType::i64, setup.device, ctx.stream());
  Tensor depth_sums = Tensor::zeros(Shape{3}, DType::f64, setup.device, ctx.stream());
  const DType compute = compute_dtype(c);
  Tensor filler;
  for (int64_t b = 0; b < rounds; ++b) {
    const data::Batch* batch = loader.next(ctx.stream());
    Tensor image;
    if (batch != nullptr) {
      image = batch->image;
    } else {
      if (!filler.defined())
        filler = Tensor::zeros(
            Shape{1, loader.height(), loader.width(), loader.shards().spec().channels},
            eo.image_dtype, setup.device, ctx.stream());
      image = filler;
    }
    if (image.dtype() != compute) image = core::ops::cast(ctx, image, compute);
    std::vector<core::nn::NodeId> wanted = {nodes.logits};
    if (c.depth_head) wanted.push_back(nodes.depth);
    graph.forward(ctx, {{"image", image}}, {.training = false}, wanted);
    if (batch == nullptr) continue;
    const Tensor predicted = core::ops::argmax_channels(ctx, graph.output(nodes.logits));
    // Classification has no ignore label: class 255 counts (ImageNet's 1000 classes).
    core::ops::accumulate_confusion(ctx, predicted, nodes.dense ? batch->label : batch->class_id,
                                    nodes.dense ? data::kIgnoreLabel : -1, confusion, out_of_range);
    if (c.depth_head)
      core::ops::accumulate_depth_errors(ctx, graph.output(nodes.depth), batch->depth,
                                         batch->depth_valid, depth_sums);
    if (writer.enabled()) writer.write(ctx, predicted, *batch, loader.shards());
  }

  EvalResult r;
  r.samples = size;
  r.predictions_written = writer.written();
  r.confusion = sum_over_ranks(setup.ranks, host_i64(ctx, confusion));
  const int64_t outside = sum_over_ranks(setup.ranks, host_i64(ctx, out_of_range)[0]);
  COHORT_CHECK(outside == 0,
               fmt::format("eval: {} {} in {} lie outside the class table (0..{}{}); "
                           "`cohort convert verify` names the samples",
                           outside, nodes.dense ? "labelled pixels" : "labels", dir, k - 1,
                           nodes.dense ? fmt::format("; {} = ignored", data::kIgnoreLabel) : ""));
  if (nodes.dense) {
    fill_segmentation_scores(r, k);
  } else {
    int64_t total = 0, hit = 0;
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        total += r.confusion[static_cast<size_t>(i * k + j)];
        if (i == j) hit += r.confusion[static_cast<size_t>(i * k + j)];
      }
    r.accuracy = total > 0 ? static_cast<double>(hit) / static_cast<double>(total) : 0;
  }
  if (c.depth_head) {
    const Tensor host = depth_sums.to(core::Device::cpu(), ctx.stream());
    ctx.synchronize();
    const std::vector<double> sums = sum_over_ranks(setup.ranks, host.to_vector());
    const double n = std::max(sums[2], 1.0);
    r.depth_abs_rel = sums[0] / n;
    r.depth_rmse = std::sqrt(sums[1] / n);
    r.depth_pixels = static_cast<int64_t>(sums[2]);
  }
  return r;
}

namespace {

std::string json_number(double v) {
  return std::isfinite(v) ? fmt::format("{:.17g}", v) : "null";
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(ch));
      continue;
    }
    out += ch;
  }
  return out + "\"";
}

std::string class_name(const std::vector<std::string>& names, size_t c) {
  return c < names.size() ? names[c] : fmt::format("class {}", c);
}

}  // namespace

std::string to_json(const EvalResult& r, const std::vector<std::string>& names) {
  std::string j =
      fmt::format(R"({{"samples": {}, "accuracy": {})", r.samples, json_number(r.accuracy));
  if (r.miou >= 0) {
    j += fmt::format(R"(, "miou": {}, "class_iou": {{)", json_number(r.miou));
    for (size_t c = 0; c < r.class_iou.size(); ++c)
      j += fmt::format("{}{}: {}", c > 0 ? ", " : "", json_string(class_name(names, c)),
                       json_number(r.class_iou[c]));
    j += R"(}, "confusion": [)";
    const size_t k = r.class_iou.size();
    for (size_t i = 0; i < k; ++i) {
      j += i > 0 ? ", [" : "[";
      for (size_t c = 0; c < k; ++c)
        j += fmt::format("{}{}", c > 0 ? ", " : "", r.confusion[i * k + c]);
      j += "]";
    }
    j += "]";
  }
  if (r.depth_abs_rel >= 0)
    j += fmt::format(R"(, "depth_abs_rel": {}, "depth_rmse": {}, "depth_pixels": {})",
                     json_number(r.depth_abs_rel), json_number(r.depth_rmse), r.depth_pixels);
  return j + "}";
}

std::string describe(const EvalResult& r, const std::vector<std::string>& class_names) {
  if (r.miou < 0)
    return fmt::format("eval accuracy {:.2f}% on {} samples\n", 100 * r.accuracy, r.samples);
  std::string text;
  text += "class IoU:\n";
  for (size_t c = 0; c < r.class_iou.size(); ++c) {
    const std::string name = class_name(class_names, c);
    text += std::isnan(r.class_iou[c])
                ? fmt::format("  {:<16} {:>7}\n", name, "n/a")
                : fmt::format("  {:<16} {:>6.2f}%\n", name, 100 * r.class_iou[c]);
  }
  if (r.depth_abs_rel >= 0)
    text += fmt::format("eval depth: abs rel {:.4f}, RMSE {:.3f} m over {} valid pixels\n",
                        r.depth_abs_rel, r.depth_rmse, r.depth_pixels);
  text += fmt::format("eval mIoU {:.2f}% (pixel accuracy {:.2f}%) on {} images\n", 100 * r.miou,
                      100 * r.accuracy, r.samples);
  return text;
}

}  // namespace cohort::launch
