#pragma once
// Augmentation for the loader (data/loader.hpp), in two steps:
//
//  1. plan_sample(): every random choice for one sample (scale, crop window, flip,
//     colour jitter) as a SamplePlan, a pure function of (seed, epoch, global sample
//     index) and the image size. Thread count, world size and the order in which
//     samples are processed therefore cannot change a crop.
//  2. render_sample(): ONE pass over the output pixels. The plan maps each output
//     pixel to a point of the source image (scale and crop folded into an affine map
//     per axis, flip into the column table), so the rescaled image (4096 x 2048 at
//     scale 2) is never materialised; colour jitter and normalisation are applied to
//     the sampled value and the result is written in the batch's layout (NHWC, f32 or
//     bf16) straight into the batch buffer.
//
// Interpolation: images bilinear (4 taps, pixel centres aligned, edge pixels
// repeated; no anti-alias filter when shrinking, like OpenCV's INTER_LINEAR and
// torch's interpolate(antialias=False): scales stay >= 0.5 for dense training, where
// that costs nothing visible), labels and depth nearest (the source pixel that
// contains the output pixel's centre), so labels only ever hold ids that exist and
// depth only measured values.
//
// Depth under scaling: a depth map rescaled with its image keeps its values in metres.
// Zooming an image by s looks like moving the camera, which would change depth by
// 1/s, but the camera intrinsics change too (focal length x s), and a metric depth
// network must learn depth from the image under the intrinsics it is given: we keep
// the measured metres unchanged, as the usual Cityscapes/KITTI pipelines do.
//
// Padding (a scaled image smaller than the crop): image = the dataset mean (0 after
// normalisation), label = 255 (ignore), depth = 0 (invalid).
#include <cstdint>

#include "core/dtype.hpp"
#include "data/image_codec.hpp"
#include "data/shard_format.hpp"
#include "data/shard_reader.hpp"

namespace cohort::data {

enum class EvalCrop { full, center };
const char* to_string(EvalCrop crop);

struct AugmentOptions {
  bool train = true;  // random operations (training) or none (evaluation)
  // Output size. Dense evaluation with EvalCrop::full ignores it (the image's size).
  int64_t height = 512, width = 1024;
  bool flip = true;  // training: horizontal flip with probability 1/2

  // Dense training (segmentation, depth, multitask): scale uniform in
  // [min_scale, max_scale], then a random crop of the output size, padded where the
  // scaled image is smaller (the image lands at a uniformly random offset).
  double min_scale = 0.5, max_scale = 2.0;
  // Colour jitter (training): factors uniform in [1 - x, 1 + x], applied in this fixed
  // order to pixel/255: brightness (multiply), contrast (blend with the dataset mean's
  // grey, scaled by the brightness factor: a per-image mean would cost a pass over the
  // whole frame), saturation (blend with each pixel's grey, ITU-R 601 weights); then
  // clamped to [0, 1]. 0 disables each.
  float brightness = 0.1f, contrast = 0.1f, saturation = 0.1f;
  // Dense evaluation: the full image, or a centre crop of height x width (padded).
  EvalCrop eval_crop = EvalCrop::full;

  // Classification training: random resized crop (torchvision's algorithm: area
  // fraction in [min_area, max_area], log-uniform aspect ratio in [min_ratio,
  // max_ratio], 10 tries, then the centre crop with the ratio clamped) to
  // height x width, plus flip.
  double min_area = 0.08, max_area = 1.0;
  double min_ratio = 3.0 / 4.0, max_ratio = 4.0 / 3.0;
  // Classification evaluation: resize so the shorter side is resize_shorter (0: the
  // crop's shorter side / 0.875, i.e. 256 for 224), then a centre crop.
  int64_t resize_shorter = 0;

  // Presets: dense training with a crop size (jitter 0.1), dense evaluation, and
  // classification training/evaluation at size x size (no colour jitter).
  static AugmentOptions dense_train(int64_t height, int64_t width);
  static AugmentOptions dense_eval(EvalCrop crop = EvalCrop::full, int64_t height = 0,
                                   int64_t width = 0);
  static AugmentOptions classification_train(int64_t size);
  static AugmentOptions classification_eval(int64_t size);

  // Throws cohort::Error naming the bad field.
  void validate() const;
};

// One axis of the map from output pixels to source pixels: output position p (after
// the flip, see SamplePlan) looks at source coordinate origin + (p + 0.5) * step - 0.5
// (pixel centres); positions outside [valid_begin, valid_end) are padding.
struct AxisPlan {
  int64_t size = 0;  // output length
  double origin = 0, step = 1;
  int64_t valid_begin = 0, valid_end = 0;
};

struct SamplePlan {
  AxisPlan x, y;
  bool flip = false;  // output column c shows plan column x.size - 1 - c
  double scale = 1;   // dense: the image scale (1 in evaluation)
  float brightness = 1, contrast = 1, saturation = 1;
  bool jitter() const { return brightness != 1 || contrast != 1 || saturation != 1; }
};

// The output size for images of `image_height` x `image_width` (the options' size,
// or the image's for EvalCrop::full).
void output_size(const AugmentOptions& options, TaskKind kind, int64_t image_height,
                 int64_t image_width, int64_t& height, int64_t& width);

// The random choices of global sample `index` in `epoch` for an image of the given
// size. Evaluation plans use no randomness (seed, epoch and index are ignored).
SamplePlan plan_sample(const AugmentOptions& options, TaskKind kind, int64_t image_height,
                       int64_t image_width, uint64_t seed, int64_t epoch, int64_t index);

// The source pixels render_sample reads for the image under `plan` (bilinear taps
// of the non-padding outputs; labels and depth are read whole): what the loader
// asks decode_image_window for. Empty (all zero) when the crop is all padding.
ImageWindow source_window(const SamplePlan& plan, int64_t height, int64_t width);

// Where one sample's outputs go: row pointers into the batch buffers (any may be null
// to skip that output). Sizes are the plan's x.size, y.size and the image's channels.
struct SampleTarget {
  void* image = nullptr;  // [H, W, C] normalised, image_dtype (f32 or bf16)
  core::DType image_dtype = core::DType::f32;
  void* label = nullptr;  // [H, W] label_dtype (u8 or i32), 255 = ignore
  core::DType label_dtype = core::DType::u8;
  float* depth = nullptr;          // [H, W] metres, 0 = invalid
  uint8_t* depth_valid = nullptr;  // [H, W] 1 where depth > 0
};

// Renders `sample` through `plan` into `out`, normalising with spec.mean/std.
// Throws cohort::Error when the sample lacks an output that `out` asks for.
void render_sample(const Sample& sample, const SamplePlan& plan, const DatasetSpec& spec,
                   const SampleTarget& out);

}  // namespace cohort::data
