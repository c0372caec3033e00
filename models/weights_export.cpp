#include "models/weights_export.hpp"

#include <fmt/format.h>

#include <map>

#include "core/context.hpp"
#include "core/io/safetensors.hpp"
#include "core/io/weight_layout.hpp"

namespace cohort::models {

using core::Tensor;

ExportReport export_torchvision_weights(core::nn::Graph& graph, const std::string& path,
                                        const ExportOptions& options) {
  COHORT_CHECK(graph.built(), "export: build the graph (and load its weights) first");
  std::map<std::string, std::string> owner_kind;
  for (const core::nn::Parameter& p : graph.parameters())
    if (p.owner != nullptr) owner_kind[p.name] = p.owner->kind();
  core::Context ctx(graph.device());
  std::map<std::string, Tensor> out;
  ExportReport report;
  for (const auto& [name, value] : graph.state()) {
    if (name.rfind(options.prefix, 0) != 0) continue;
    const std::string file_name = name.substr(options.prefix.size());
    Tensor host = value.to(core::Device::cpu(), ctx.stream());
    ctx.synchronize();
    if (host.dtype() != core::DType::f32 && host.dtype() != core::DType::i64)
      host = host.cast_cpu(core::DType::f32);
    const auto kind = owner_kind.find(name);
    if (kind != owner_kind.end()) {
      report.parameters += host.numel();
      if (host.rank() == 4 && kind->second == "Conv2d")
        host = core::io::convert_conv_weight_ohwi_to_oihw(host);
      else if (host.rank() == 4 && kind->second == "ConvTranspose2d")
        host = core::io::convert_conv_transpose_weight_ihwo_to_iohw(host);
    }
    out[file_name] = host;
    // PyTorch's BatchNorm keeps a counter beside its running statistics;
    // load_state_dict(strict=True) wants it.
    constexpr std::string_view kMean = "running_mean";
    if (file_name.ends_with(kMean)) {
      const std::string stem = file_name.substr(0, file_name.size() - kMean.size());
      out[stem + "num_batches_tracked"] = Tensor::from_vector(
          {static_cast<double>(options.batches_tracked)}, core::Shape{}, core::DType::i64);
    }
  }
  COHORT_CHECK(!out.empty(),
               fmt::format("export: no graph entry starts with '{}'", options.prefix));
  core::io::write_safetensors(path, out);
  report.tensors = static_cast<int>(out.size());
  return report;
}

}  // namespace cohort::models
