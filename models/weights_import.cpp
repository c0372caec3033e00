#include "models/weights_import.hpp"

#include <fmt/format.h>

#include <map>

#include "core/io/safetensors.hpp"
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
  return report;
}

}  // namespace cohort::models
