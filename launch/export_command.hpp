#pragma once
// `cohort export --checkpoint C --out F.safetensors [--prefix backbone.]`: a
// training checkpoint's model as torchvision-named weights in PyTorch's layouts
// (models/weights_export), for torch's load_state_dict. The model is rebuilt from
// the config the checkpoint holds; no shards are needed.
#include <string>

namespace cohort::launch {

struct ExportCommandOptions {
  std::string checkpoint;
  std::string out;
  std::string prefix;  // only entries under it, without it ("backbone." for DeepLab's ResNet)
};

void run_export(const ExportCommandOptions& options);

}  // namespace cohort::launch
