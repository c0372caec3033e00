#!/usr/bin/env python3
"""PyTorch DataLoader baseline for `cohort bench data` (docs/PERFORMANCE.md, "Data loading").

Reads the frames `cohort bench data --dir DIR` writes to DIR/frames (*_image.png,
*_label.png, meta.json) and runs the usual DeepLab training pipeline on them with
PIL and torchvision: random scale in [0.5, 2] (bilinear image, nearest label), pad to
the crop (mean colour / 255), random crop, horizontal flip, to_tensor + normalise;
torch.utils.data.DataLoader with N worker processes, pinned memory, batch 8.
Prints samples/s in the layout of the cohort table:

  storage   threads  samples/s  ms/batch

Usage: python3 tools/bench_torch_dataloader.py --frames DIR/frames [--workers 1,2,4,8,16]
"""
import argparse
import glob
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image


class Frames(torch.utils.data.Dataset):
    def __init__(self, root, crop, scale, mean, std, ignore):
        self.images = sorted(glob.glob(os.path.join(root, "*_image.png")))
        if not self.images:
            sys.exit(f"no *_image.png files in {root} (run `cohort bench data --dir DIR` first)")
        self.labels = [p[: -len("_image.png")] + "_label.png" for p in self.images]
        self.crop, self.scale, self.mean, self.std, self.ignore = crop, scale, mean, std, ignore
        self.fill = tuple(int(round(255 * m)) for m in mean)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.open(self.images[i]).convert("RGB")
        label = Image.open(self.labels[i])
        s = random.uniform(*self.scale)
        w, h = image.size
        size = (max(1, round(w * s)), max(1, round(h * s)))
        image = image.resize(size, Image.BILINEAR)
        label = label.resize(size, Image.NEAREST)
        ch, cw = self.crop
        pad_w, pad_h = max(cw - size[0], 0), max(ch - size[1], 0)
        if pad_w or pad_h:
            image = TF.pad(image, [0, 0, pad_w, pad_h], fill=self.fill)
            label = TF.pad(label, [0, 0, pad_w, pad_h], fill=self.ignore)
        w, h = image.size
        top, left = random.randint(0, h - ch), random.randint(0, w - cw)
        image = TF.crop(image, top, left, ch, cw)
        label = TF.crop(label, top, left, ch, cw)
        if random.random() < 0.5:
            image, label = TF.hflip(image), TF.hflip(label)
        x = TF.normalize(TF.to_tensor(image), self.mean, self.std)
        y = torch.from_numpy(np.asarray(label, dtype=np.int64).copy())
        return x, y


def measure(dataset, workers, batch, min_seconds, min_batches):
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=1 << 30)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=True,
        drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    for _ in range(2):  # warm-up: worker start, first batches
        next(it)
    batches = 0
    start = time.perf_counter()
    while batches < min_batches or time.perf_counter() - start < min_seconds:
        next(it)
        batches += 1
    seconds = time.perf_counter() - start
    del it, loader
    return batches * batch / seconds, 1000.0 * seconds / batches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", required=True, help="DIR/frames written by `cohort bench data`")
    ap.add_argument("--workers", default="1,2,4,8,16", help="comma-separated worker counts")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--min-batches", type=int, default=4)
    args = ap.parse_args()

    meta_path = os.path.join(args.frames, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    mean = meta.get("mean", [0.485, 0.456, 0.406])
    std = meta.get("std", [0.229, 0.224, 0.225])
    crop = tuple(meta.get("crop", [512, 1024]))
    scale = tuple(meta.get("scale", [0.5, 2.0]))
    dataset = Frames(args.frames, crop, scale, mean, std, meta.get("ignore_label", 255))
    first = Image.open(dataset.images[0])
    print(f"\n# PyTorch {torch.__version__} DataLoader: {len(dataset)} {first.size[0]}x"
          f"{first.size[1]} PNG frames -> {crop[1]}x{crop[0]} crops (PIL scale 0.5-2, pad, crop, "
          f"flip, normalise), batch {args.batch}, pinned, {os.cpu_count()} hardware threads")
    print(f"{'storage':<8} {'threads':>8} {'samples/s':>10} {'ms/batch':>9}")
    for workers in [int(w) for w in args.workers.split(",")]:
        rate, ms = measure(dataset, workers, args.batch, args.min_seconds, args.min_batches)
        print(f"{'png-pil':<8} {workers:>8} {rate:>10.1f} {ms:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
