#pragma once
// The HDF5 shard format, schema version 1: names, enums and the dataset-wide
// description every shard and the manifest carry. docs/SHARD_FORMAT.md is the
// normative text; keep the two in step.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cohort::data {

inline constexpr int64_t kShardSchemaVersion = 1;
inline constexpr const char* kShardFormatName = "cohort-shard";      // file attribute
inline constexpr const char* kManifestFormatName = "cohort-shards";  // manifest "format"
inline constexpr const char* kManifestFileName = "manifest.json";
inline constexpr uint8_t kIgnoreLabel = 255;

// Dataset names inside a shard (all at the root group).
namespace ds {
inline constexpr const char* image = "image";                  // u8 [N,H,W,C] raw, fixed size
inline constexpr const char* image_bytes = "image_bytes";      // u8 [total] encoded or varying
inline constexpr const char* image_offsets = "image_offsets";  // u64 [N+1] into image_bytes
inline constexpr const char* image_shapes = "image_shapes";    // i32 [N,3] (H, W, C) decoded
inline constexpr const char* label = "label";                  // u8 [N,H,W] train ids
inline constexpr const char* depth = "depth";                  // f32|f16 [N,H,W] metres
inline constexpr const char* class_id = "class_id";            // i32 [N]
inline constexpr const char* sample_name = "sample_name";      // fixed-length strings [N]
}  // namespace ds

enum class TaskKind { segmentation, depth, classification, multitask };
enum class ImageEncoding { raw, png, jpeg };
enum class DepthDType { f32, f16 };

const char* to_string(TaskKind kind);
const char* to_string(ImageEncoding encoding);
const char* to_string(DepthDType dtype);
// Parse the names above; throw cohort::Error naming `where` and the accepted values.
TaskKind parse_task_kind(const std::string& text, const std::string& where);
ImageEncoding parse_image_encoding(const std::string& text, const std::string& where);
DepthDType parse_depth_dtype(const std::string& text, const std::string& where);

inline bool has_label_map(TaskKind k) {
  return k == TaskKind::segmentation || k == TaskKind::multitask;
}
inline bool has_depth(TaskKind k) {
  return k == TaskKind::depth || k == TaskKind::multitask;
}
inline bool has_class_id(TaskKind k) {
  return k == TaskKind::classification;
}

struct ClassEntry {
  int32_t id = 0;
  std::string name;
  bool operator==(const ClassEntry&) const = default;
};

// What every shard of a set shares: written as file attributes of each shard and
// into manifest.json, and checked to agree when a set is opened.
struct DatasetSpec {
  TaskKind kind = TaskKind::segmentation;
  std::string split = "train";
  ImageEncoding image_encoding = ImageEncoding::raw;
  int64_t channels = 3;
  // The size of every image (and label/depth map). 0 x 0: sizes vary from sample to
  // sample, which only classification allows (dense targets need one size).
  int64_t height = 0, width = 0;
  // Class ids must be 0..K-1 in order (they index logits); label maps hold these ids
  // or kIgnoreLabel. Empty for depth-only sets.
  std::vector<ClassEntry> classes;
  // Per-channel normalisation of pixel/255 (x - mean) / std, as torchvision writes it.
  std::vector<float> mean, std;
  DepthDType depth_dtype = DepthDType::f32;  // meaningful only when has_depth(kind)
  std::string source;                        // provenance: converter and its options

  bool fixed_size() const { return height > 0 && width > 0; }
  // True when images live in image_bytes/image_offsets/image_shapes rather than in a
  // [N,H,W,C] "image" dataset: encoded images, or raw images of varying size.
  bool uses_image_blob() const { return image_encoding != ImageEncoding::raw || !fixed_size(); }
  // Consistency checks (ids 0..K-1, mean/std per channel, sizes, kind vs encoding);
  // throws cohort::Error starting with `where`.
  void validate(const std::string& where) const;
  bool operator==(const DatasetSpec&) const = default;
};

// allowed[v] for every label byte v: a class id or kIgnoreLabel.
std::array<bool, 256> allowed_label_values(const DatasetSpec& spec);

}  // namespace cohort::data
