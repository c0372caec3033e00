#pragma once
// The configuration of `cohort train`: a YAML file (configs/*.yaml) plus
// `--set section.key=value` overrides, resolved into one TrainConfig whose YAML
// text is stored in every checkpoint. Unknown sections or keys, values of the
// wrong type and values out of range are errors naming the key and where it came
// from (file or override), so a typo never silently trains with a default.
//
//   run:        out_dir, seed, device (auto|cpu|cuda:N), dtype (f32|bf16|f16),
//               stop_after_steps (stop as if signalled after this many steps of
//               this invocation: time-sliced jobs; 0 = never)
//   model:      kind (small_cnn | resnet | deeplabv3plus), num_classes, depth
//               (ResNet 18|34|50|101, for resnet and DeepLab's backbone),
//               output_stride (8|16, DeepLab), pretrained (the whole ResNet but its
//               fc head, or DeepLab's backbone, from torchvision ImageNet ResNet
//               weights in safetensors (tools/export_torchvision_safetensors.py) or
//               from a resnet checkpoint of `cohort train` (runs/x/checkpoint.h5;
//               its model/ entries but fc.*); the file's content tells which;
//               empty = random initialisation), freeze_backbone_steps
//               (fine-tuning: the backbone -- all of a resnet but fc, DeepLab's
//               backbone.* -- stays frozen for the first N steps, then trains),
//               depth_head (deeplabv3plus on multitask shards: segmentation + depth,
//               the two losses balanced per the loss section)
//   loss:       normalize (global, the default: losses averaged over valid elements
//               -- pixels not ignored, valid depth -- average over the whole global
//               batch, so the step is the same however it is split over ranks and
//               micro-batches; per_rank: each micro-batch of each rank averages its
//               own, as PyTorch's DistributedDataParallel does), class_weights
//               (cross entropy's weight per class, as PyTorch's `weight`: one per
//               class, >= 0, not all 0; a YAML list or "1,2,..."; empty: none);
//               multi-task only
//               (model.depth_head; an error otherwise): balancing
//               (uncertainty: learned weights, the default | fixed: sum of w_k L_k
//               with weights | dwa: Dynamic Weight Average, weights set each epoch
//               from how fast each task loss fell | pcgrad: fixed weights, the task
//               gradients on the shared layers projected apart where they conflict |
//               gradnorm: weights learned so that the tasks' gradient norms on the
//               last shared layer train at similar rates; pcgrad and gradnorm take
//               one backward (and one gradient reduction) per task and need
//               data.micro_batches 1), weights (fixed, pcgrad: one per task loss,
//               segmentation then depth, >= 0; a YAML list or "1,0.5"; empty: all
//               1), dwa_temperature (dwa: T > 0, default 2), gradnorm_alpha
//               (asymmetry, >= 0, default 1.5), gradnorm_lr (Adam's rate for the
//               weights, > 0, default 0.025), gradnorm_layer (the node whose
//               parameters' gradient norms are compared; empty: the last layer with
//               a weight matrix that every task uses)
//   data:       train, eval (shard-set directories), batch (global), threads,
//               prefetch, augment (none|standard; classification), image_size
//               (classification crop with standard augmentation), crop_height,
//               crop_width, min_scale, max_scale (dense training: random scale,
//               crop, flip, colour jitter), eval_crop (full|center), micro_batches
//               (gradient accumulation: each rank's share of data.batch runs as this
//               many micro-batches, their gradients summed before one optimizer step
//               and one communication; activations of batch / (ranks x micro_batches)
//               images. The whole batch's step but for BatchNorm, which normalises
//               each micro-batch and updates its running statistics once per
//               micro-batch (and, with loss.normalize per_rank, for losses over valid
//               pixels, then averaged per micro-batch))
//   optimizer:  kind (sgd|adamw), lr, momentum, nesterov, weight_decay,
//               grad_clip_norm (> 0: gradients scaled so that their global L2 norm over
//               all ranks is at most this, after fp16 unscaling; 0 = off)
//   schedule:   kind (constant|step|poly|cosine), warmup_steps, epochs, max_steps
//   parallel:   zero_stage (0-3), bucket_mib (gradient buckets, 25), bf16_gradients
//               (stages 0/1: all-reduce gradients in bf16), sync_batch_norm (true:
//               batch statistics over all ranks), prefetch_mib (stage 3: parameter
//               gathers in flight ahead of the running layer; 0 = the next layer)
//   checkpoint: every_steps (0: only at the end and on a stop signal), resume,
//               keep_last (checkpoint-<step>.h5 files kept; checkpoint.h5 links
//               the newest; a damaged newest one is set aside on resume),
//               keep_best (an evaluation metric -- eval_accuracy, eval_pixel_accuracy,
//               eval_miou, eval_depth_abs_rel, eval_depth_rmse -- that the model
//               reports: checkpoint-best.h5 then holds the training state at its best
//               evaluation so far, best.json says which; needs data.eval; empty: off)
//   log:        every_steps, eval_every_steps (0: evaluate at the end only)
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cohort::launch {

struct TrainConfig {
  // run
  std::string out_dir = "runs/train";  // checkpoint.h5 and metrics.jsonl
  uint64_t seed = 0;
  std::string device = "auto";
  std::string dtype = "f32";  // compute dtype; master weights stay f32
  int64_t stop_after_steps = 0;
  bool deterministic = false;  // GPU: bitwise repeatable steps (core/determinism.hpp)
  // model
  std::string model = "small_cnn";
  int num_classes = 10;
  int depth = 50;
  int output_stride = 16;
  std::string pretrained;
  int64_t freeze_backbone_steps = 0;
  bool depth_head = false;  // deeplabv3plus multi-task: + depth, losses balanced per loss.*
  // depth_head: metres per unit of the head's output (models/deeplabv3plus.hpp).
  double depth_scale = 1.0;
  // loss
  std::string loss_normalize = "global";       // global | per_rank (every model)
  std::vector<double> class_weights;           // cross entropy: one per class (empty: none)
  std::string loss_balancing = "uncertainty";  // multi-task: uncertainty|fixed|dwa|pcgrad|gradnorm
  std::vector<double> loss_weights;            // fixed, pcgrad: one per task loss (empty: all 1)
  double dwa_temperature = 2.0;                // dwa: T
  double gradnorm_alpha = 1.5;                 // gradnorm: asymmetry
  double gradnorm_lr = 0.025;                  // gradnorm: Adam's learning rate for the weights
  std::string gradnorm_layer;                  // gradnorm: node name (empty: automatic)
  // data
  std::string train_shards, eval_shards;  // eval: optional
  int64_t batch = 64;                     // global, split evenly over the ranks
  int threads = 0;                        // loader threads per rank (0: all cores)
  int prefetch = 2;
  std::string augment = "none";  // none | standard (random resized crop + flip)
  int64_t image_size = 0;        // classification crops with augment standard (0: the set's)
  int64_t crop_height = 512, crop_width = 1024;
  double min_scale = 0.5, max_scale = 2.0;
  std::string eval_crop = "full";
  int micro_batches = 1;  // gradient accumulation: micro-batches per optimizer step
  // optimizer
  std::string optimizer = "sgd";
  double lr = 0.05, momentum = 0.9, weight_decay = 5e-4;
  bool nesterov = true;
  double grad_clip_norm = 0;  // > 0: clip the global gradient norm to this
  // schedule
  std::string schedule = "cosine";
  int64_t warmup_steps = 100;
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0: stop after this many steps (of the whole schedule)
  // parallel
  int zero_stage = 0;
  double bucket_mib = 25;
  bool bf16_gradients = false;
  bool sync_batch_norm = true;
  double prefetch_mib = 0;
  // checkpoint
  int64_t checkpoint_every = 0;
  bool resume = true;     // continue from the newest good checkpoint in out_dir
  int keep_last = 2;      // checkpoint-<step>.h5 files kept (checkpoint.h5 links the newest)
  std::string keep_best;  // an eval metric: checkpoint-best.h5 at its best (empty: off)
  // log
  int64_t log_every = 50;
  int64_t eval_every = 0;   // evaluate every N steps too (0: only at the end)
  bool tensorboard = true;  // events.out.tfevents.* in out_dir beside metrics.jsonl
};

// Reads `path` (empty: defaults only), then applies each "section.key=value".
TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides);
// The same from YAML text (e.g. the config a checkpoint holds); errors name `source`.
TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source,
                               const std::vector<std::string>& overrides = {});

// The config a `cohort train` checkpoint stores (its "config" string), parsed with
// `overrides`; `command` ("eval", "export") names the caller in the error when the
// checkpoint holds none.
TrainConfig checkpoint_train_config(const std::map<std::string, std::string>& checkpoint_strings,
                                    const std::string& path, const std::string& command,
                                    const std::vector<std::string>& overrides = {});

// The resolved configuration as YAML (stored in checkpoints, printed at start);
// load_train_config of this text gives the same TrainConfig.
std::string to_yaml(const TrainConfig& config);

}  // namespace cohort::launch
