#!/usr/bin/python3
"""Golden values for a whole torchvision network: ResNet-18 with random weights
and randomised BatchNorm statistics, exported to safetensors (as users import
pretrained weights), plus its eval-mode logits and one training step's loss,
gradients and running statistics for a fixed input.

Usage: /usr/bin/python3 tests/parity/make_resnet_golden.py OUT_DIR
writes OUT_DIR/resnet18.safetensors and OUT_DIR/resnet18_golden.h5.
"""
import importlib.util
import os
import sys

import h5py
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "export", os.path.join(HERE, "..", "..", "tools", "export_torchvision_safetensors.py"))
export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export)


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(7)
    torch.set_num_threads(1)
    model = torchvision.models.resnet18(num_classes=10)
    with torch.no_grad():  # non-trivial BatchNorm state so eval mode means something
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    export.write_safetensors(os.path.join(out_dir, "resnet18.safetensors"), model.state_dict(),
                             {"source": "tests/parity/make_resnet_golden.py"})

    x = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([3, 8])
    with h5py.File(os.path.join(out_dir, "resnet18_golden.h5"), "w") as f:
        f["inputs/x"] = nhwc(x)
        f["inputs/labels"] = labels.numpy().astype("int32")
        model.eval()
        with torch.no_grad():
            f["eval/logits"] = model(x).numpy()
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        f["train/loss"] = loss.detach().numpy().reshape(1)
        for name, p in model.named_parameters():
            g = p.grad.detach()
            f["grad/" + name] = (g.permute(0, 2, 3, 1).contiguous() if g.dim() == 4 else g).numpy()
        for name, b in model.named_buffers():
            if "running" in name:
                f["buffer/" + name] = b.detach().numpy()


if __name__ == "__main__":
    main()
