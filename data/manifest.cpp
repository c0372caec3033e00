#include "data/manifest.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/io/atomic_file.hpp"
#include "data/checksum.hpp"

namespace cohort::data {
namespace {

using nlohmann::json;
using ordered = nlohmann::ordered_json;  // keeps fields in the documented order

ordered spec_to_json(const DatasetSpec& s) {
  ordered j;
  j["kind"] = to_string(s.kind);
  j["split"] = s.split;
  j["image"] = {{"encoding", to_string(s.image_encoding)},
                {"channels", s.channels},
                {"height", s.height},
                {"width", s.width}};
  ordered classes = ordered::array();
  for (const ClassEntry& c : s.classes)
    classes.push_back({{"id", c.id}, {"name", c.name}});
  j["classes"] = classes;
  if (has_label_map(s.kind)) j["ignore_label"] = kIgnoreLabel;
  j["normalization"] = {{"mean", s.mean}, {"std", s.std}, {"scale", "pixel / 255"}};
  if (has_depth(s.kind))
    j["depth"] = {{"dtype", to_string(s.depth_dtype)}, {"unit", "m"}, {"invalid", 0}};
  j["source"] = s.source;
  return j;
}

// Typed access with errors that name the manifest and the field.
template <typename T>
T get(const json& j, const char* key, const std::string& where) {
  COHORT_CHECK(j.is_object() && j.contains(key),
               fmt::format("{}: field '{}' is missing", where, key));
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    COHORT_FAIL(fmt::format("{}: field '{}' has the wrong type: {}", where, key, e.what()));
  }
}

DatasetSpec spec_from_json(const json& j, const std::string& where) {
  DatasetSpec s;
  s.kind = parse_task_kind(get<std::string>(j, "kind", where), where);
  s.split = get<std::string>(j, "split", where);
  const json image = get<json>(j, "image", where);
  s.image_encoding =
      parse_image_encoding(get<std::string>(image, "encoding", where + " image"), where);
  s.channels = get<int64_t>(image, "channels", where + " image");
  s.height = get<int64_t>(image, "height", where + " image");
  s.width = get<int64_t>(image, "width", where + " image");
  for (const json& c : get<json>(j, "classes", where))
    s.classes.push_back(ClassEntry{get<int32_t>(c, "id", where + " classes"),
                                   get<std::string>(c, "name", where + " classes")});
  const json norm = get<json>(j, "normalization", where);
  s.mean = get<std::vector<float>>(norm, "mean", where + " normalization");
  s.std = get<std::vector<float>>(norm, "std", where + " normalization");
  if (has_depth(s.kind))
    s.depth_dtype = parse_depth_dtype(
        get<std::string>(get<json>(j, "depth", where), "dtype", where + " depth"), where);
  s.source = j.contains("source") ? get<std::string>(j, "source", where) : std::string();
  s.validate(where);
  return s;
}

}  // namespace

std::string manifest_path(const std::string& dir) {
  return (std::filesystem::path(dir) / kManifestFileName).string();
}

void write_manifest(const std::string& dir, const Manifest& m) {
  ordered j;
  j["format"] = kManifestFormatName;
  j["schema_version"] = m.schema_version;
  const ordered spec = spec_to_json(m.spec);
  for (const auto& item : spec.items())
    j[item.key()] = item.value();
  j["sample_count"] = m.sample_count;
  j["checksum"] = "crc32 of each shard file's bytes (zlib polynomial), 8 hex digits";
  ordered shards = ordered::array();
  for (const ShardEntry& e : m.shards)
    shards.push_back({{"file", e.file},
                      {"first_sample", e.first_sample},
                      {"samples", e.samples},
                      {"bytes", e.bytes},
                      {"crc32", crc32_hex(e.crc32)}});
  j["shards"] = shards;
  j["created_by"] = m.created_by;
  const std::string text = j.dump(2) + "\n";

  core::io::write_file_atomically(manifest_path(dir), text.data(), text.size());
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = manifest_path(dir);
  std::ifstream in(path);
  COHORT_CHECK(in.good(),
               fmt::format("{}: cannot open the shard manifest ({}); is {} a shard directory "
                           "made by `cohort convert`?",
                           path, std::strerror(errno), dir));
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::exception& e) {
    COHORT_FAIL(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  COHORT_CHECK(j.is_object(), fmt::format("{}: not a JSON object", path));
  const std::string format = get<std::string>(j, "format", path);
  COHORT_CHECK(format == kManifestFormatName,
               fmt::format("{}: format '{}', expected '{}'", path, format, kManifestFormatName));
  Manifest m;
  m.schema_version = get<int64_t>(j, "schema_version", path);
  COHORT_CHECK(m.schema_version == kShardSchemaVersion,
               fmt::format("{}: schema_version {}; this build reads version {} (re-run "
                           "`cohort convert`, or use a matching cohort)",
                           path, m.schema_version, kShardSchemaVersion));
  m.spec = spec_from_json(j, path);
  m.sample_count = get<int64_t>(j, "sample_count", path);
  m.created_by = j.contains("created_by") ? get<std::string>(j, "created_by", path) : "";
  int64_t next = 0;
  for (const json& s : get<json>(j, "shards", path)) {
    ShardEntry e;
    const std::string where = fmt::format("{} shard #{}", path, m.shards.size());
    e.file = get<std::string>(s, "file", where);
    e.first_sample = get<int64_t>(s, "first_sample", where);
    e.samples = get<int64_t>(s, "samples", where);
    e.bytes = get<uint64_t>(s, "bytes", where);
    e.crc32 = parse_crc32_hex(get<std::string>(s, "crc32", where), where);
    COHORT_CHECK(!e.file.empty() && e.file.find('/') == std::string::npos,
                 fmt::format("{}: file '{}' must be a plain name in {}", where, e.file, dir));
    COHORT_CHECK(e.first_sample == next && e.samples > 0,
                 fmt::format("{} ({}): first_sample {} and {} samples; expected first_sample {} "
                             "and at least one sample",
                             where, e.file, e.first_sample, e.samples, next));
    next += e.samples;
    m.shards.push_back(std::move(e));
  }
  COHORT_CHECK(
      next == m.sample_count,
      fmt::format("{}: shards hold {} samples but sample_count is {}", path, next, m.sample_count));
  COHORT_CHECK(m.sample_count > 0,
               fmt::format("{}: the split '{}' is empty (0 samples)", path, m.spec.split));
  return m;
}

}  // namespace cohort::data
