#!/usr/bin/python3
"""Exports a torchvision model's state_dict to a .safetensors file for cohort.

    /usr/bin/python3 tools/export_torchvision_safetensors.py resnet50 out.safetensors \
        [--weights path.pth | --random-seed N] [--list]

Names are PyTorch's, unchanged; layouts are PyTorch's (conv weights OIHW) -- cohort
converts them at import (core/io/weight_layout.hpp). The file is written by hand (an
8-byte little-endian header length, a JSON header, then raw little-endian bytes) so
only torch, torchvision and numpy are needed (Debian's python3-torch 1.13 works; the
safetensors package is not used). Pretrained weights cannot be downloaded offline:
pass a .pth file with --weights, or --random-seed for a reproducible random init.

--list prints the state_dict's names as a JSON list on stdout (with or without an
output file), so tests can compare what cohort reads against what torch has.
"""
import argparse
import json
import sys

import numpy as np
import torch
import torchvision

# torch dtype -> (safetensors name, little-endian numpy dtype). bfloat16 has no numpy
# type: its bits are exported through an int16 view.
DTYPES = {
    torch.float32: ("F32", np.dtype("<f4")),
    torch.float16: ("F16", np.dtype("<f2")),
    torch.bfloat16: ("BF16", np.dtype("<i2")),
    torch.float64: ("F64", np.dtype("<f8")),
    torch.int64: ("I64", np.dtype("<i8")),
    torch.int32: ("I32", np.dtype("<i4")),
    torch.uint8: ("U8", np.dtype("<u1")),
}


def build_model(name, weights, seed):
    if not hasattr(torchvision.models, name) or not callable(getattr(torchvision.models, name)):
        sys.exit(f"export: torchvision.models has no model '{name}'")
    if seed is not None:
        torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None)
    if weights is not None:
        state = torch.load(weights, map_location="cpu")
        # Training scripts often wrap the state_dict; accept the common wrappers.
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        if not isinstance(state, dict):
            sys.exit(f"export: {weights} does not hold a state_dict")
        # DistributedDataParallel prefixes every name with "module.".
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items()}
        model.load_state_dict(state, strict=True)  # names and shapes must match the model
    model.eval()
    return model


def tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype not in DTYPES:
        raise ValueError(f"dtype {t.dtype} has no safetensors mapping here")
    st_name, np_dtype = DTYPES[t.dtype]
    if t.dtype == torch.bfloat16:
        array = t.view(torch.int16).numpy()
    else:
        array = t.numpy()
    return st_name, array.astype(np_dtype, copy=False).tobytes(order="C")


def write_safetensors(path, state, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in state.items():
        st_name, data = tensor_bytes(t)
        header[name] = {
            "dtype": st_name,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # keeps the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in blobs:
            f.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="torchvision model name, e.g. resnet50")
    parser.add_argument("output", nargs="?", help="the .safetensors file to write")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="a .pth file holding the model's state_dict")
    source.add_argument("--random-seed", type=int, help="seed for a random initialisation")
    parser.add_argument("--list", action="store_true",
                        help="print the state_dict names as a JSON list on stdout")
    args = parser.parse_args()
    if args.output is None and not args.list:
        parser.error("give an output file, --list, or both")

    model = build_model(args.model, args.weights, args.random_seed)
    state = model.state_dict()
    if args.output is not None:
        if args.weights:
            source_text = args.weights
        elif args.random_seed is not None:
            source_text = f"random-seed {args.random_seed}"
        else:
            source_text = "random (unseeded)"
        write_safetensors(args.output, state, {
            "format": "pt",
            "model": args.model,
            "source": source_text,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        })
    if args.list:
        print(json.dumps(list(state.keys())))


if __name__ == "__main__":
    main()
