#!/usr/bin/env python3
"""PyTorch eager baseline for `cohort bench stack`: forward+backward of a
ResNet-50 without its classifier (torchvision's layout, written out here so that
torchvision is not needed), channels_last, bf16 autocast, loss = mean of the
layer4 features. Prints the median time per iteration in the same format.

    python3 tools/bench_torch_stack.py --batch 256 --iters 20
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import ResNet  # noqa: E402


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
    model = ResNet(50, num_classes=0).to(dev).to(memory_format=torch.channels_last)
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
