#include "data/shard_format.hpp"

#include <fmt/format.h>

#include <cmath>

#include "core/error.hpp"

namespace cohort::data {

const char* to_string(TaskKind kind) {
  switch (kind) {
    case TaskKind::segmentation:
      return "segmentation";
    case TaskKind::depth:
      return "depth";
    case TaskKind::classification:
      return "classification";
    case TaskKind::multitask:
      return "multitask";
  }
  return "?";
}

const char* to_string(ImageEncoding encoding) {
  switch (encoding) {
    case ImageEncoding::raw:
      return "raw";
    case ImageEncoding::png:
      return "png";
    case ImageEncoding::jpeg:
      return "jpeg";
  }
  return "?";
}

const char* to_string(DepthDType dtype) {
  return dtype == DepthDType::f32 ? "f32" : "f16";
}

TaskKind parse_task_kind(const std::string& text, const std::string& where) {
  for (TaskKind k :
       {TaskKind::segmentation, TaskKind::depth, TaskKind::classification, TaskKind::multitask})
    if (text == to_string(k)) return k;
  COHORT_FAIL(
      fmt::format("{}: kind '{}' is not one of segmentation, depth, classification, "
                  "multitask",
                  where, text));
}

ImageEncoding parse_image_encoding(const std::string& text, const std::string& where) {
  for (ImageEncoding e : {ImageEncoding::raw, ImageEncoding::png, ImageEncoding::jpeg})
    if (text == to_string(e)) return e;
  COHORT_FAIL(fmt::format("{}: image encoding '{}' is not one of raw, png, jpeg", where, text));
}

DepthDType parse_depth_dtype(const std::string& text, const std::string& where) {
  if (text == "f32") return DepthDType::f32;
  if (text == "f16") return DepthDType::f16;
  COHORT_FAIL(fmt::format("{}: depth dtype '{}' is not f32 or f16", where, text));
}

void DatasetSpec::validate(const std::string& where) const {
  COHORT_CHECK(channels == 1 || channels == 3,
               fmt::format("{}: images must have 1 or 3 channels, not {}", where, channels));
  COHORT_CHECK((height > 0) == (width > 0) && height >= 0 && width >= 0,
               fmt::format("{}: image size {}x{} (both positive, or both 0 for varying sizes)",
                           where, height, width));
  COHORT_CHECK(fixed_size() || kind == TaskKind::classification,
               fmt::format("{}: {} sets need one image size for all samples (got {}x{})", where,
                           to_string(kind), height, width));
  COHORT_CHECK(image_encoding != ImageEncoding::jpeg || channels == 1 || channels == 3,
               fmt::format("{}: JPEG needs 1 or 3 channels", where));
  COHORT_CHECK(
      mean.size() == static_cast<size_t>(channels) && std.size() == static_cast<size_t>(channels),
      fmt::format("{}: normalisation has {} mean and {} std values for {} channels", where,
                  mean.size(), std.size(), channels));
  for (size_t c = 0; c < std.size(); ++c)
    COHORT_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] > 0,
                 fmt::format("{}: channel {} has mean {} and std {} (std must be > 0)", where, c,
                             mean[c], std[c]));
  if (kind == TaskKind::depth) {
    COHORT_CHECK(classes.empty(), fmt::format("{}: a depth set has no class table", where));
  } else {
    COHORT_CHECK(!classes.empty(),
                 fmt::format("{}: {} needs a class table", where, to_string(kind)));
  }
  const int64_t max_classes = has_label_map(kind) ? kIgnoreLabel : INT32_MAX;
  COHORT_CHECK(static_cast<int64_t>(classes.size()) <= max_classes,
               fmt::format("{}: {} classes; label maps hold at most {}", where, classes.size(),
                           max_classes));
  for (size_t i = 0; i < classes.size(); ++i) {
    COHORT_CHECK(classes[i].id == static_cast<int32_t>(i),
                 fmt::format("{}: class '{}' has id {} at position {}; ids must be 0..K-1 in "
                             "order",
                             where, classes[i].name, classes[i].id, i));
    COHORT_CHECK(!classes[i].name.empty(), fmt::format("{}: class {} has no name", where, i));
  }
}

std::array<bool, 256> allowed_label_values(const DatasetSpec& spec) {
  std::array<bool, 256> allowed{};
  for (const ClassEntry& c : spec.classes)
    if (c.id >= 0 && c.id < 256) allowed[static_cast<size_t>(c.id)] = true;
  allowed[kIgnoreLabel] = true;
  return allowed;
}

}  // namespace cohort::data
