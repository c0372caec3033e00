// Procedural street scenes -> segmentation/depth/multitask shards (see convert.hpp).
#include <fmt/format.h>

#include <cmath>

#include "core/error.hpp"
#include "data/cityscapes_labels.hpp"
#include "data/convert.hpp"
#include "data/convert_common.hpp"
#include "data/parallel.hpp"
#include "data/synthetic_scenes.hpp"

namespace cohort::data {

uint64_t synthetic_split_seed(uint64_t seed, const std::string& split) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the split name
  for (char c : split)
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return seed ^ h;
}

Manifest convert_synthetic_scenes(const SyntheticScenesOptions& o) {
  COHORT_CHECK(o.kind != TaskKind::classification,
               "synthetic scenes: kind must be segmentation, depth or multitask");
  COHORT_CHECK(o.count > 0,
               fmt::format("synthetic scenes: count {}: the split would be empty", o.count));
  const uint64_t seed = synthetic_split_seed(o.seed, o.split);

  // Normalisation from the first (up to) 16 scenes: deterministic and cheap.
  const int64_t probe = std::min<int64_t>(o.count, 16);
  std::vector<std::array<double, 6>> sums(static_cast<size_t>(probe));
  parallel_for(probe, o.threads, [&](int64_t i) {
    const SyntheticScene s = generate_scene(o.width, o.height, seed, i);
    std::array<double, 6> acc{};
    for (size_t p = 0; p < s.image.pixels.size(); ++p) {
      const double x = s.image.pixels[p] / 255.0;
      acc[p % 3] += x;
      acc[3 + p % 3] += x * x;
    }
    sums[i] = acc;
  });
  DatasetSpec spec;
  const double n = static_cast<double>(probe * o.width * o.height);
  for (int c = 0; c < 3; ++c) {
    double s = 0, s2 = 0;
    for (const auto& acc : sums) {
      s += acc[c];
      s2 += acc[3 + c];
    }
    const double mean = s / n;
    spec.mean.push_back(static_cast<float>(mean));
    spec.std.push_back(static_cast<float>(std::sqrt(std::max(s2 / n - mean * mean, 1e-6))));
  }
  spec.kind = o.kind;
  spec.split = o.split;
  spec.image_encoding = o.encoding;
  spec.channels = 3;
  spec.height = o.height;
  spec.width = o.width;
  if (has_label_map(o.kind)) spec.classes = cityscapes_train_classes();
  spec.depth_dtype = o.depth_dtype;
  spec.source = fmt::format("synthetic-scenes seed={} split={} count={} size={}x{}", o.seed,
                            o.split, o.count, o.width, o.height);
  ShardSetWriter writer(o.out_dir, spec, o.writer);
  detail::write_in_order(
      writer, o.count, o.threads,
      [&](int64_t i) {
        SyntheticScene s = generate_scene(o.width, o.height, seed, i);
        SampleRecord r;
        r.name = fmt::format("scene-{:06d}", i);
        r.image = std::move(s.image);
        if (has_label_map(o.kind)) r.label = std::move(s.label);
        if (has_depth(o.kind)) r.depth = std::move(s.depth);
        return r;
      },
      o.log);
  return detail::finish_set(writer, o);
}

}  // namespace cohort::data
