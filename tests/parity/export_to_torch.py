"""`cohort export`'s file in PyTorch: torchvision's ResNet takes it with
load_state_dict(strict=True), and classifies the Fashion-MNIST test set as
`cohort eval` did:

    /usr/bin/python3 export_to_torch.py WEIGHTS.safetensors DEPTH CLASSES IDX_DIR MANIFEST EVAL_JSON

The images are normalised as cohort's shards say (manifest.json's mean and std
of pixel / 255). The file is parsed here with numpy (8-byte header length, JSON
header, raw little-endian data), so no safetensors package is needed. Exit 0 when
the load is strict and the accuracies agree to 0.05 points (a few images near a
tie may flip between the two float orders), 1 otherwise.
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch
import torchvision

DTYPES = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def idx_images(path):
    with gzip.open(path, "rb") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(count, rows, cols)


def idx_labels(path):
    with gzip.open(path, "rb") as f:
        _, count = struct.unpack(">II", f.read(8))
        return np.frombuffer(f.read(), dtype=np.uint8)


def main():
    weights, depth, classes, idx_dir, manifest, eval_json = sys.argv[1:7]
    state = read_safetensors(weights)
    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=int(classes))
    channels = state["conv1.weight"].shape[1]
    model.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    model.load_state_dict(state, strict=True)  # raises on any missing/unexpected/mis-shaped entry
    model.eval()

    norm = json.load(open(manifest))["normalization"]
    images = idx_images(f"{idx_dir}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    images = (images - norm["mean"][0]) / norm["std"][0]
    labels = idx_labels(f"{idx_dir}/t10k-labels-idx1-ubyte.gz")
    correct = 0
    with torch.no_grad():
        for begin in range(0, len(images), 500):
            x = torch.from_numpy(images[begin:begin + 500]).unsqueeze(1)
            correct += int((model(x).argmax(1).numpy() == labels[begin:begin + 500]).sum())
    torch_accuracy = correct / len(images)
    cohort_accuracy = json.load(open(eval_json))["accuracy"]
    print(f"strict load of {len(state)} tensors: ok; accuracy on {len(images)} test images: "
          f"PyTorch {100 * torch_accuracy:.2f}%, cohort eval {100 * cohort_accuracy:.2f}%")
    if abs(torch_accuracy - cohort_accuracy) > 0.0005 or cohort_accuracy < 0.3:
        print("FAIL: the accuracies differ (or the model learnt nothing to compare)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
