#!/usr/bin/env python3
"""tools/torch_models.py (the PyTorch twin `tools/bench_torch_train.py` times) must
be the networks cohort benchmarks: given the weights of torchvision's resnet50 and
of the parity suite's DeepLabV3+ reference (tests/parity/make_deeplab_golden.py,
which cohort's DeepLabV3+ matches op for op), the twin loads them with every name
and shape agreeing and computes the same outputs, in double precision, eval mode.
A wrong stride, dilation or atrous rate changes the outputs even where it would
leave the parameter count alone.

    /usr/bin/python3 tests/parity/check_torch_models.py
"""
import importlib.util
import os
import sys

import torch
import torchvision
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import torch_models  # noqa: E402

spec = importlib.util.spec_from_file_location("golden", os.path.join(HERE, "make_deeplab_golden.py"))
golden = importlib.util.module_from_spec(spec)
spec.loader.exec_module(golden)


def compare(name, reference, twin, x, outputs=lambda m, x: (m(x),)):
    twin.load_state_dict(reference.state_dict(), strict=True)
    reference.double().eval()
    twin.double().eval()
    with torch.no_grad():
        want, got = outputs(reference, x), outputs(twin, x)
    worst = max(float((a - b).abs().max()) for a, b in zip(want, got))
    scale = max(float(a.abs().max()) for a in want)
    ok = worst <= 1e-9 * max(1.0, scale)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |difference| {worst:.3g} (outputs up to {scale:.3g})")
    return ok


def main():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 65, 97, dtype=torch.float64)
    # DeepLab: layer4 larger than the widest atrous rate (18 at output stride 16,
    # 36 at 8), else the outer taps all fall into the padding and a wrong rate
    # computes the same.
    big = torch.randn(1, 3, 305, 321, dtype=torch.float64)
    ok = True

    ref = torchvision.models.resnet50(num_classes=10)
    golden.randomise_batch_norm(ref)
    ok &= compare("ResNet-50 classifier", ref, torch_models.ResNet(50, 10), x)

    for stride, rates, dilate in ((16, (6, 12, 18), [False, False, True]),
                                  (8, (12, 24, 36), [False, True, True])):
        ref = golden.DeepLabV3Plus(7, rates, dilate, nn.Dropout(0.1))
        golden.randomise_batch_norm(ref)
        twin = torch_models.DeepLabV3Plus(7, 50, stride)
        ok &= compare(f"DeepLabV3+ R50 output stride {stride}", ref, twin, big)
        if stride == 16:
            mt = golden.with_depth_head(ref.float())
            twin = torch_models.DeepLabV3Plus(7, 50, stride, depth_head=True)
            ok &= compare("DeepLabV3+ R50 multi-task (logits, depth)", mt, twin, big,
                          lambda m, x: golden.multitask_forward(m, x) if m is mt else m(x))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
