#!/usr/bin/env python3
"""PyTorch eager counterpart of `cohort bench train`: whole training steps
(forward, loss, backward, SGD step) of the same models on synthetic inputs
already on the device, channels_last, autocast to bf16/f16 (fp16 with a
GradScaler), one synchronisation per step. Prints the same result lines.

    python3 tools/bench_torch_train.py --model deeplabv3plus --batch 8 --height 512 --width 1024
    python3 tools/bench_torch_train.py --model resnet --batch 256 --size 224
The matching cohort command:
    cohort bench train --set model.kind=deeplabv3plus --set data.batch=8 \\
        --set data.crop_height=512 --set data.crop_width=1024 --set run.dtype=bf16
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_models import DeepLabV3Plus, ResNet  # noqa: E402


def synthetic_inputs(a, dense, device):
    g = torch.Generator().manual_seed(0)
    h, w = (a.height, a.width) if dense else (a.size, a.size)
    x = (torch.rand(a.batch, 3, h, w, generator=g) * 4 - 2).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    if not dense:
        return x, torch.randint(0, a.classes, (a.batch,), generator=g).to(device), None, None
    label = torch.randint(0, a.classes, (a.batch, h, w), generator=g)
    label[torch.rand(a.batch, h, w, generator=g) < 0.1] = 255
    valid = (torch.rand(a.batch, 1, h, w, generator=g) < 0.9).float()
    depth = (1 + 79 * torch.rand(a.batch, 1, h, w, generator=g)) * valid
    return x, label.to(device), depth.to(device), valid.to(device)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="deeplabv3plus", choices=["deeplabv3plus", "resnet"])
    p.add_argument("--depth", type=int, default=50, choices=[50, 101])
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--output-stride", type=int, default=16, choices=[8, 16])
    p.add_argument("--depth-head", action="store_true", help="multi-task: + depth, balanced")
    p.add_argument("--depth-scale", type=float, default=1.0,
                   help="metres per unit of the depth head (cohort's model.depth_scale)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--size", type=int, default=224, help="classifier input size")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    dense = a.model == "deeplabv3plus"
    if dense:
        model = DeepLabV3Plus(a.classes, a.depth, a.output_stride, a.depth_head)
        what = (f"deeplabv3plus (ResNet-{a.depth}, output stride {a.output_stride}, "
                f"{a.classes} classes{', depth head, uncertainty balancing' if a.depth_head else ''})")
    else:
        model = ResNet(a.depth, a.classes)
        what = f"resnet (ResNet-{a.depth}, {a.classes} classes)"
    model = model.to(dev).to(memory_format=torch.channels_last).train()
    params = sum(t.numel() for t in model.parameters())
    step_model = torch.compile(model) if a.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    amp = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": None}[a.dtype]
    scaler = torch.cuda.amp.GradScaler(enabled=a.dtype == "f16")  # 1.13 and 2.x
    x, label, depth, valid = synthetic_inputs(a, dense, dev)

    # Phase marks (forward with the loss | backward | update), as cohort bench train
    # reports them: CUDA events (device time) or the host clock on the CPU.
    class Mark:
        def __init__(self):
            self.event = torch.cuda.Event(enable_timing=True) if cuda else None
            self.t = 0.0

        def record(self):
            if cuda:
                self.event.record()
            else:
                self.t = time.perf_counter()

        def ms_to(self, later):
            return self.event.elapsed_time(later.event) if cuda else (later.t - self.t) * 1e3

    marks = [Mark() for _ in range(4)]

    def step():
        marks[0].record()
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            out = step_model(x)
        if a.depth_head:
            logits, pred = out
            seg = F.cross_entropy(logits.float(), label, ignore_index=255)
            # The head regresses depth / scale, as cohort's with model.depth_scale.
            l1 = ((pred.float() - depth / a.depth_scale).abs() * valid).sum() / valid.sum()
            loss = model.balanced(seg, l1)
        else:
            loss = F.cross_entropy(out.float(), label, ignore_index=255)
        marks[1].record()
        scaler.scale(loss).backward()
        marks[2].record()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        marks[3].record()

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times, phases = [], []
    for i in range(a.warmup + a.iters):
        if i == a.warmup and cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
            phases.append([marks[k].ms_to(marks[k + 1]) for k in range(3)])
    med = statistics.median(times)
    h, w = (a.height, a.width) if dense else (a.size, a.size)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"bench train (torch {torch.__version__} eager{' +compile' if a.compile else ''}, "
          f"channels_last, autocast): {what}, {params} parameters, batch {a.batch}, input "
          f"{h}x{w}x3, {a.dtype} compute, sgd optimizer, device {name}")
    print(f"train step (forward + backward + optimizer): median {med:.2f} ms, mean "
          f"{statistics.mean(times):.2f} ms, min {min(times):.2f} ms over {len(times)} iterations "
          f"({a.warmup} warm-up); {1000.0 * a.batch / med:.1f} images/s")
    fwd, bwd, upd = (statistics.median(p[k] for p in phases) for k in range(3))
    print(f"phases (device time, medians): forward {fwd:.2f} ms, backward {bwd:.2f} ms, "
          f"update {upd:.2f} ms")
    if cuda:
        mib = 1024.0 * 1024.0
        print(f"peak memory (timed steps): {torch.cuda.max_memory_allocated() / mib:.1f} MiB "
              f"allocated, {torch.cuda.max_memory_reserved() / mib:.1f} MiB reserved")


if __name__ == "__main__":
    main()
