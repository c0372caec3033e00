#pragma once
// `cohort eval --checkpoint C [--shards DIR] [--predictions DIR] [--format F]`:
// evaluates a training checkpoint on a shard set, alone or as the ranks of
// mpirun/srun (each image once across the ranks). The model is rebuilt from the
// resolved config the checkpoint holds (launch/train_config), so nothing has to
// be repeated on the command line; `--set section.key=value` may still change
// what does not alter the model (data.batch, data.threads, run.dtype, ...).
//
// Segmentation predictions are written as 8-bit PNGs, one per image at its full
// size: "<sample>_pred_labelIds.png" with Cityscapes label ids (what the
// official evaluator and the benchmark server read) when the set's class table
// is Cityscapes' 19 training classes, else "<sample>_pred_trainIds.png".
#include <string>
#include <vector>

#include "core/device.hpp"
#include "launch/evaluator.hpp"
#include "launch/model_setup.hpp"

namespace cohort::launch {

struct EvalCommandOptions {
  std::string checkpoint;
  std::string shards;                  // empty: the config's data.eval
  std::string predictions;             // directory for prediction PNGs; empty: none
  std::string format = "auto";         // auto | cityscapes-ids | train-ids
  std::vector<std::string> overrides;  // --set section.key=value
  std::string json;                    // file for the scores as JSON (rank 0); empty: none
  bool verbose = true;                 // rank 0 prints the config line and the scores
};

EvalResult run_checkpoint_eval(const EvalCommandOptions& options, core::Device device,
                               TrainRanks ranks = {});

}  // namespace cohort::launch
