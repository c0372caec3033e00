#include "models/weights_import.hpp"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/io/checkpoint.hpp"
#include "core/io/safetensors.hpp"
#include "core/io/training_state.hpp"
#include "core/io/weight_layout.hpp"

namespace cohort::models {

using core::Tensor;

ImportReport import_torchvision_weights(const std::string& path, core::nn::Graph& graph,
                                        const ImportOptions& options) {
  const std::map<std::string, Tensor> file = core::io::read_safetensors(path);
  std::map<std::string, Tensor> targets = graph.state();
  std::map<std::string, std::string> owner_kind;
  for (const core::nn::Parameter& p : graph.parameters())
    if (p.owner != nullptr) owner_kind[p.name] = p.owner->kind();

  ImportReport report;
  std::vector<std::string> problems;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, converted source)
  std::map<std::string, bool> seen;
  for (const auto& [name, source] : file) {
    bool ignore = name.ends_with("num_batches_tracked");
    for (const std::string& prefix : options.ignore_file_prefixes)
      ignore = ignore || name.rfind(prefix, 0) == 0;
    if (ignore) {
      report.ignored.push_back(name);
      continue;
    }
    const std::string graph_name = options.graph_prefix + name;
    auto it = targets.find(graph_name);
    if (it == targets.end()) {
      problems.push_back(fmt::format("unexpected: '{}' {} has no graph entry '{}'", name,
                                     source.shape().str(), graph_name));
      continue;
    }
    seen[graph_name] = true;
    Tensor converted = source;
    const std::string kind = owner_kind.count(graph_name) ? owner_kind[graph_name] : "";
    if (source.rank() == 4 && kind == "Conv2d")
      converted = core::io::convert_conv_weight_oihw_to_ohwi(source);
    else if (source.rank() == 4 && kind == "ConvTranspose2d")
      converted = core::io::convert_conv_transpose_weight_iohw_to_ihwo(source);
    if (converted.shape() != it->second.shape()) {
      problems.push_back(fmt::format(
          "shape: '{}' is {} in the file (as {} in cohort's layout) "
          "but {} in the graph",
          name, source.shape().str(), converted.shape().str(), it->second.shape().str()));
      continue;
    }
    copies.emplace_back(it->second, converted.cast_cpu(it->second.dtype()));
  }
  if (options.strict) {
    for (const auto& [name, t] : targets)
      if (name.rfind(options.graph_prefix, 0) == 0 && !seen.count(name))
        problems.push_back(
            fmt::format("missing: graph entry '{}' {} is not in the file", name, t.shape().str()));
  }
  if (!problems.empty()) {
    std::string message = fmt::format("import of {} into the graph: {} problem(s); nothing loaded",
                                      path, problems.size());
    for (const std::string& p : problems)
      message += "\n  " + p;
    COHORT_FAIL(message);
  }
  core::Context ctx(graph.device());
  for (auto& [destination, source] : copies)
    destination.copy_from(source, ctx.stream());
  graph.refresh_compute_weights(ctx);
  ctx.synchronize();  // the host sources die with this function
  report.loaded = static_cast<int>(copies.size());
  report.format = "torchvision safetensors";
  return report;
}

WeightsFormat detect_weights_format(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string expected =
      "model.pretrained must be torchvision weights in safetensors (.safetensors, from "
      "tools/export_torchvision_safetensors.py) or a cohort checkpoint (.h5, written by "
      "`cohort train`)";
  std::error_code ec;
  COHORT_CHECK(fs::is_regular_file(path, ec),  // follows checkpoint.h5's symlink
               fmt::format("pretrained weights {}: no such file; {}", path, expected));
  const uint64_t size = fs::file_size(path, ec);
  std::array<unsigned char, 9> head{};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(head.data()), head.size());
  const auto got = static_cast<size_t>(in.gcount());
  // HDF5's superblock signature; cohort writes its checkpoints with the
  // superblock at offset 0.
  constexpr std::array<unsigned char, 8> kHdf5 = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (got >= kHdf5.size() && std::memcmp(head.data(), kHdf5.data(), kHdf5.size()) == 0)
    return WeightsFormat::cohort_checkpoint;
  if (got == head.size()) {
    uint64_t header = 0;
    for (int i = 7; i >= 0; --i)
      header = (header << 8) | head[static_cast<size_t>(i)];
    if (head[8] == '{' && header >= 2 && header <= size - 8) return WeightsFormat::safetensors;
  }
  const std::string extension = fs::path(path).extension().string();
  COHORT_FAIL(fmt::format(
      "pretrained weights {}: {} bytes{} that are neither safetensors nor "
      "HDF5; {}",
      path, size, extension.empty() ? "" : fmt::format(" ({} file)", extension), expected));
}

ImportReport import_pretrained_weights(const std::string& path, core::nn::Graph& graph,
                                       const ImportOptions& options) {
  if (detect_weights_format(path) == WeightsFormat::safetensors)
    return import_torchvision_weights(path, graph, options);
  core::io::ModelWeightsMapping mapping;
  mapping.graph_prefix = options.graph_prefix;
  mapping.skip_prefixes = options.ignore_file_prefixes;
  mapping.strict = options.strict;
  const core::io::CheckpointData data = core::io::read_checkpoint(path);
  const core::io::ModelWeightsReport loaded =
      core::io::load_model_weights(data, graph, mapping, path);
  ImportReport report;
  report.loaded = loaded.loaded;
  report.ignored = loaded.skipped;
  const auto step = data.integers.find("step");
  report.format = step == data.integers.end()
                      ? std::string("cohort checkpoint")
                      : fmt::format("cohort checkpoint at step {}", step->second);
  return report;
}

}  // namespace cohort::models
