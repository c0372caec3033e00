"""Writes a small tree in Cityscapes' on-disk layout for the official-evaluator test.

    /usr/bin/python3 tests/parity/make_cityscapes_tree.py <root>

<root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png (RGB) and
<root>/gtFine/<split>/<city>/..._gtFine_labelIds.png (8-bit label ids), 128x64, for
the splits train (aachen, 6 frames) and val (frankfurt and lindau, 2 frames each).
Each frame is a street-like layout of bands (sky, building with a pole, sidewalk,
road with a car), with the band edges moved per frame and pixels of ids the
evaluation ignores (ego vehicle, static, unlabeled), so that a briefly trained
model predicts several classes and misses some: every term of IoU is exercised.
"""
import os
import sys

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 128, 64
# label id -> mean RGB (the classes a frame draws)
COLOURS = {23: (70, 130, 180), 11: (70, 70, 70), 17: (153, 153, 153), 8: (244, 35, 232),
           7: (128, 64, 128), 26: (0, 0, 142), 1: (0, 0, 0), 4: (111, 74, 0), 0: (20, 20, 20)}


def frame(rng):
    ids = np.zeros((HEIGHT, WIDTH), np.uint8)
    sky = rng.integers(10, 20)
    building = rng.integers(30, 38)
    sidewalk = rng.integers(40, 46)
    ids[:sky] = 23
    ids[sky:building] = 11
    ids[building:sidewalk] = 8
    ids[sidewalk:] = 7
    pole = rng.integers(10, WIDTH - 10)
    ids[sky - 4:sidewalk, pole:pole + 3] = 17
    car = rng.integers(0, WIDTH - 40)
    ids[sidewalk - 6:sidewalk + 8, car:car + 36] = 26
    ids[HEIGHT - 4:] = 1  # ego vehicle: ignored by the evaluation
    static = rng.integers(0, WIDTH - 12)
    ids[building - 4:building, static:static + 12] = 4  # static: ignored
    ids[0, :] = 0  # unlabeled: ignored
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.float64)
    for label, colour in COLOURS.items():
        rgb[ids == label] = colour
    rgb += rng.normal(0, 12, rgb.shape)
    return ids, np.clip(rgb, 0, 255).astype(np.uint8)


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(7)
    for split, cities, frames in (("train", ["aachen"], 6), ("val", ["frankfurt", "lindau"], 2)):
        for city in cities:
            for k in range(frames):
                stem = f"{city}_{k:06d}_{19 + k:06d}"
                ids, rgb = frame(rng)
                for kind, suffix, image in (("leftImg8bit", "leftImg8bit", rgb),
                                            ("gtFine", "gtFine_labelIds", ids)):
                    d = os.path.join(root, kind, split, city)
                    os.makedirs(d, exist_ok=True)
                    Image.fromarray(image).save(os.path.join(d, f"{stem}_{suffix}.png"))


if __name__ == "__main__":
    main()
