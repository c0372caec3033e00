#pragma once
// Evaluation of a model over a whole shard set, shared by `cohort train` (during
// and after training) and `cohort eval` (a checkpoint): each sample is visited
// once across the ranks (data::EvalSampler, no padded duplicates), the metrics
// are accumulated on the model's device (a confusion matrix, depth error sums)
// and read back once at the end, then summed over the ranks.
//
//   classification: accuracy (the confusion matrix's trace over its total)
//   segmentation:   per-class IoU = TP / (TP + FP + FN) over the labelled pixels
//                   (255 ignored) of every image at its full size; mIoU averages
//                   the classes present in the truth or the predictions (as the
//                   Cityscapes evaluator does: a class absent from both has none)
//   multi-task:     + depth abs-rel and RMSE (metres) over the valid pixels
//
// Optionally the per-pixel predictions are written as 8-bit PNGs named after
// each sample ("<sample name>_<suffix>.png"), e.g. as Cityscapes label ids for
// the official evaluator or the benchmark server.
#include <cstdint>
#include <string>
#include <vector>

#include "core/context.hpp"
#include "core/nn/graph.hpp"
#include "launch/model_setup.hpp"
#include "launch/train_config.hpp"

namespace cohort::launch {

struct PredictionOutput {
  std::string dir;                       // empty: write nothing
  std::vector<uint8_t> value_of_class;   // train id -> pixel value (empty: the train id)
  std::string suffix = "pred_trainIds";  // file: <dir>/<sample name>_<suffix>.png
};

struct EvalResult {
  int64_t samples = 0;             // over all ranks
  double accuracy = -1;            // classification accuracy, or segmentation pixel accuracy
  double miou = -1;                // segmentation only
  std::vector<double> class_iou;   // segmentation: NaN where undefined
  std::vector<int64_t> confusion;  // [K * K], rows truth, columns prediction
  double depth_abs_rel = -1, depth_rmse = -1;  // multi-task only
  int64_t depth_pixels = 0;
  int64_t predictions_written = 0;  // by this rank
};

struct EvalSetup {
  core::Context* ctx = nullptr;
  core::nn::Graph* graph = nullptr;
  ModelNodes nodes;
  TrainRanks ranks;
  core::Device device;
  // ZeRO-3 forwards gather parameters collectively: every rank then runs as many
  // forwards as the rank with the most batches (the others on a zero image).
  bool collective_forward = false;
};

// Evaluates on config.eval_shards (or `shards` when given). Throws, naming the
// set, when a label lies outside the class table.
EvalResult evaluate(const EvalSetup& setup, const TrainConfig& config,
                    const std::string& shards = {}, const PredictionOutput& predictions = {});

// Mean IoU and per-class IoU from a confusion matrix (as described above).
void fill_segmentation_scores(EvalResult& result, int64_t num_classes);

// The scores as one JSON object: samples, accuracy, and for segmentation miou,
// class_iou (by class name; null where undefined) and the confusion matrix; for
// multi-task the depth errors.
std::string to_json(const EvalResult& result, const std::vector<std::string>& class_names);

// Lines for a person: the headline metrics, and for segmentation a per-class IoU
// table with the set's class names.
std::string describe(const EvalResult& result, const std::vector<std::string>& class_names);

}  // namespace cohort::launch
