#!/usr/bin/env python3
"""PyTorch eager baseline for `cohort bench stack`: forward+backward of a
ResNet-50 without its classifier (torchvision's layout, written out here so that
torchvision is not needed), channels_last, bf16 autocast, loss = mean of the
layer4 features. Prints the median time per iteration in the same format.

    python3 tools/bench_torch_stack.py --batch 256 --iters 20
"""
import argparse
import statistics
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride, downsample):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                         nn.BatchNorm2d(cout)) if downsample else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


def resnet50_backbone():
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, blocks in enumerate([3, 4, 6, 3]):
        width = 64 << stage
        for j in range(blocks):
            stride = 2 if (j == 0 and stage > 0) else 1
            layers.append(Bottleneck(cin, width, stride, j == 0))
            cin = width * 4
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = resnet50_backbone().to(dev).to(memory_format=torch.channels_last)
    if a.compile:
        model = torch.compile(model)
    x = torch.full((a.batch, 3, a.size, a.size), 0.5, device=dev).to(
        memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": None}[a.dtype]
    times = []
    for i in range(a.warmup + a.iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=amp, enabled=amp is not None):
            loss = model(x).float().mean()
        loss.backward()
        torch.cuda.synchronize()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(f"torch {torch.__version__} eager{' +compile' if a.compile else ''}: ResNet-50 stack, "
          f"batch {a.batch} x {a.size}x{a.size}x3 channels_last, {a.dtype}, "
          f"{torch.cuda.get_device_name()}")
    print(f"forward+backward: median {med:.2f} ms, min {min(times):.2f} ms over {len(times)} "
          f"iterations ({a.warmup} warm-up); {1000.0 * a.batch / med:.0f} images/s")


if __name__ == "__main__":
    main()
