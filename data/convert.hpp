#pragma once
// Converters from source datasets to shard sets (docs/SHARD_FORMAT.md), as library
// functions; `cohort convert <kind>` maps onto them through run_convert().
//
// Every converter writes one split into one directory (manifest.json + shards),
// decodes/encodes on a thread pool but appends samples in a fixed order (sorted
// file names, or index order), so its output does not depend on the thread count.
// Problems with the input are found before anything is written where possible and
// reported together in one cohort::Error, one line per file.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/idx.hpp"
#include "data/manifest.hpp"
#include "data/shard_format.hpp"
#include "data/shard_writer.hpp"

namespace cohort::data {

struct ConvertCommon {
  std::string out_dir;   // the shard set's directory (created)
  WriterOptions writer;  // shard size, deflate level, PNG/JPEG quality, overwrite
  int threads = 0;       // 0: all cores
  bool verify = false;   // re-read the written set (verify_shard_set) and fail on problems
  // Progress lines (e.g. "1200/2975 samples"); nothing is printed when empty.
  std::function<void(const std::string&)> log;
};

// ImageNet statistics: the normalisation pretrained torchvision backbones expect.
inline const std::vector<float> kImageNetMean{0.485f, 0.456f, 0.406f};
inline const std::vector<float> kImageNetStd{0.229f, 0.224f, 0.225f};

// Cityscapes from its real layout under `root`:
//   leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   (images)
//   <annotation>/<split>/<city>/..._<annotation>_labelIds.png          (segmentation)
//   disparity/<split>/<city>/..._disparity.png, camera/<split>/<city>/..._camera.json
// Label ids map to the 19 train ids (others 255). Depth = baseline * fx / d with
// d = (p - 1) / 256 for disparity pixel p > 0; p = 0 (and p = 1, d = 0) are invalid
// and stored as 0. A missing file or a size mismatch anywhere is listed, with every
// other one, in a single error before anything is written.
struct CityscapesOptions : ConvertCommon {
  std::string root;
  std::string split = "train";             // train, val, test, train_extra, ...
  std::string annotation = "gtFine";       // or gtCoarse
  TaskKind kind = TaskKind::segmentation;  // segmentation, depth or multitask
  // png: the frames re-encoded losslessly with the loader's fast row filters
  // (image_codec.cpp: about 23% faster to decode than Cityscapes' own files), or
  // with keep_png the source files verbatim (faster conversion, same pixels).
  ImageEncoding encoding = ImageEncoding::png;
  bool keep_png = false;
  DepthDType depth_dtype = DepthDType::f32;
  int64_t limit = 0;  // convert only the first N images (sorted); 0 = all
  std::vector<float> mean = kImageNetMean, std = kImageNetStd;
};
Manifest convert_cityscapes(const CityscapesOptions& options);

// One subfolder per class under `root`, holding .jpg/.jpeg/.png files (any case).
// Classes are the sorted folder names (ids 0..K-1); other files and hidden entries
// are ignored; an empty class folder or an undecodable image is an error. Images
// are converted to `channels`; `resize_shorter` > 0 resizes so the shorter side
// has that length. When the source file already has the wanted encoding and is
// not resized, its bytes are stored verbatim (no second lossy JPEG pass).
struct ImageFolderOptions : ConvertCommon {
  std::string root;
  std::string split = "train";
  ImageEncoding encoding = ImageEncoding::jpeg;
  int64_t resize_shorter = 0;
  int channels = 3;
  std::vector<float> mean = kImageNetMean, std = kImageNetStd;
};
Manifest convert_imagefolder(const ImageFolderOptions& options);

// Fashion-MNIST from the IDX files of Debian's dataset-fashion-mnist package:
// split "train" (60000) or "test" (the t10k files, 10000); [28, 28, 1] images.
// Normalisation statistics come from the training images (for either split).
struct FashionMnistOptions : ConvertCommon {
  std::string dir = kFashionMnistDir;
  std::string split = "train";
  ImageEncoding encoding = ImageEncoding::raw;
};
Manifest convert_fashion_mnist(const FashionMnistOptions& options);
const std::vector<std::string>& fashion_mnist_class_names();

// Procedural street scenes (synthetic_scenes.hpp): scene i of a split is
// generate_scene(width, height, seed ^ hash(split), i), so "train" and "val" with the
// same seed never share scenes. Classes: the 19 Cityscapes train ids.
struct SyntheticScenesOptions : ConvertCommon {
  std::string split = "train";
  int64_t count = 64;
  int64_t width = 512, height = 256;
  uint64_t seed = 0;
  TaskKind kind = TaskKind::multitask;  // segmentation, depth or multitask
  ImageEncoding encoding = ImageEncoding::raw;
  DepthDType depth_dtype = DepthDType::f32;
};
Manifest convert_synthetic_scenes(const SyntheticScenesOptions& options);
// The seed generate_scene() gets for a split (exposed so tests can regenerate scenes).
uint64_t synthetic_split_seed(uint64_t seed, const std::string& split);

// `cohort convert <kind> [options]`: `args` starts with the kind (cityscapes,
// imagefolder, fashion-mnist, synthetic-scenes, verify); --help lists the options.
// Prints a summary to stdout and errors to stderr; returns 0 on success, 1 on a
// failed conversion or verification, 2 on a usage error.
int run_convert(const std::vector<std::string>& args);

}  // namespace cohort::data
