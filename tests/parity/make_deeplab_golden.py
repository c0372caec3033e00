#!/usr/bin/python3
"""Golden values for DeepLabV3+ on a dilated torchvision ResNet-50 (output stride 16):
a PyTorch reference module with random weights and randomised BatchNorm state,
exported to safetensors, plus its eval-mode logits and one training step's logits,
loss, parameter gradients and running statistics for a fixed 2 x 3 x 65 x 65 input
(odd sizes: layer1 is 17x17 and layer4 5x5, so no resize is an integer factor) with
about 20% of the label pixels set to ignore_index 255.

The reference runs in float64 from float32 weights and inputs (exact in both), so the
golden values carry only cohort's own float32 rounding. Gradients are stored rounded
to float32 (6e-8 relative, far below the test's tolerances) to halve the file.

Dropout cannot match PyTorch's generator, so the reference applies cohort's mask:
Philox-4x32-10 keyed by the seed at counter (element index in NHWC order, offset 0),
as core/ops/philox.hpp defines it; the C++ test re-derives the stored mask with
dropout_keep before comparing anything else.

Multi-task case (groups "multitask" and "multitask_grad"): the same network and weights
with a depth head (a 1x1 conv with bias on the decoder's features, upsampled to the
input), a masked L1 depth loss and the two task losses balanced by learned uncertainty
(Kendall, Gal and Cipolla, CVPR 2018), total = sum_i 0.5 exp(-s_i) L_i + 0.5 s_i, with
s = log_vars = (LOG_VARS) so that both weights differ from 0.5 and from each other. One
training step from the same initial state as the segmentation case (same image, labels,
dropout mask). Depth targets sit at least DEPTH_MIN_GAP metres from PyTorch's prediction
on every pixel, so float32 noise in cohort's prediction cannot flip the sign of any L1
gradient; about a quarter of the pixels (and a band of columns) are invalid, half of them
with depth 0 (as the loader writes) and half with a far, wrong depth, so only the mask
can exclude them. depth_head.* and loss.log_vars go to a small safetensors file of
their own, so the segmentation-only graph still imports the main file strictly.

PCGrad case (group "pcgrad_grad", attributes on group "pcgrad"): the multi-task model
from the same initial state and inputs, depth targets mirrored about the prediction
(so that the tasks conflict; with the originals they agree), the task losses weighted
PCGRAD_WEIGHTS and combined by PCGrad (Yu et al., NeurIPS 2020): each task's gradient
taken alone by autograd, the parameters both tasks reach (shared) found from which
gradients autograd returns, and on those the two weighted gradients projected off
each other where their dot product is negative; elsewhere plain sums. The attributes
record the dot product and squared norms over the shared parameters (the C++ test
requires a conflict, or the projection would not be tested).

Usage: /usr/bin/python3 tests/parity/make_deeplab_golden.py OUT_DIR
writes OUT_DIR/deeplabv3plus.safetensors, OUT_DIR/deeplabv3plus_multitask_head.safetensors
and OUT_DIR/deeplabv3plus_golden.h5.
"""
import copy
import importlib.util
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "export", os.path.join(HERE, "..", "..", "tools", "export_torchvision_safetensors.py"))
export = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export)

NUM_CLASSES = 19
ASPP_RATES = (6, 12, 18)  # output stride 16
DROPOUT_P = 0.1
DROPOUT_SEED = 0x5EED00C0FFEE  # both 32-bit key words non-zero
IGNORE = 255
LOG_VARS = (0.5, -0.25)  # exact in float32; task weights 0.5 exp(-s): 0.303 and 0.642
DEPTH_BIAS = 3.0  # depth head bias: predictions of a few metres, like real scenes
DEPTH_MIN_GAP = 0.1  # metres between each target and PyTorch's prediction
PCGRAD_WEIGHTS = (1.0, 0.5)  # segmentation, depth

U32 = np.uint64(0xFFFFFFFF)


def philox_first(seed, offset, index):
    """First word of Philox-4x32-10 at counter (index, offset) under key seed.
    index: uint64 array; 32-bit lanes kept in uint64 so products do not overflow."""
    c0, c1 = index & U32, index >> np.uint64(32)
    c2 = np.full_like(index, offset & 0xFFFFFFFF)
    c3 = np.full_like(index, offset >> 32)
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & U32
        hi1, lo1 = p1 >> np.uint64(32), p1 & U32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + 0x9E3779B9) & 0xFFFFFFFF
        k1 = (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0


def cohort_keep_mask_nhwc(shape_nhwc, seed, p):
    """cohort's dropout_keep for every element of an NHWC tensor (offset 0)."""
    index = np.arange(int(np.prod(shape_nhwc)), dtype=np.uint64)
    bits = philox_first(seed, 0, index)
    u = (bits >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return (u >= np.float32(p)).reshape(shape_nhwc)


class CohortDropout(nn.Module):
    """Dropout with cohort's Philox mask (training) and identity (eval)."""

    def __init__(self, p, seed):
        super().__init__()
        self.p, self.seed = p, seed
        self.last_keep_nhwc = None

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n, c, h, w = x.shape
        keep = cohort_keep_mask_nhwc((n, h, w, c), self.seed, self.p)
        self.last_keep_nhwc = keep
        mask = torch.from_numpy(keep.transpose(0, 3, 1, 2).copy()).to(x.dtype)
        return x * mask * (1.0 / (1.0 - self.p))


def conv_bn_relu(cin, cout, k, dilation=1):
    return [nn.Conv2d(cin, cout, k, padding=(k // 2) * dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(cin, cout, 1))

    def forward(self, x):
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """torchvision's ASPP layout (names convs.0..4, project), dropout p configurable."""

    def __init__(self, cin, rates, cout, dropout):
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(cin, cout, 1))]
        branches += [nn.Sequential(*conv_bn_relu(cin, cout, 3, r)) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*conv_bn_relu(len(branches) * cout, cout, 1), dropout)

    def forward(self, x):
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class Decoder(nn.Module):
    def __init__(self, low_in, low_out, aspp_ch, ch):
        super().__init__()
        self.low_level = nn.Sequential(*conv_bn_relu(low_in, low_out, 1))
        self.fuse = nn.Sequential(*conv_bn_relu(aspp_ch + low_out, ch, 3), *conv_bn_relu(ch, ch, 3))

    def forward(self, aspp, low):
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([aspp, self.low_level(low)], dim=1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, num_classes, rates, dilate, dropout):
        super().__init__()
        self.backbone = torchvision.models.resnet50(replace_stride_with_dilation=dilate)
        del self.backbone.avgpool
        del self.backbone.fc
        self.aspp = ASPP(2048, rates, 256, dropout)
        self.decoder = Decoder(256, 48, 256, 256)
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, x):
        return F.interpolate(self.classifier(self.decoded(x)), size=x.shape[-2:],
                             mode="bilinear", align_corners=False)

    def decoded(self, x):
        """The decoder's features (stride 4), which both task heads read."""
        b = self.backbone
        y = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        low = b.layer1(y)
        high = b.layer4(b.layer3(b.layer2(low)))
        return self.decoder(self.aspp(high), low)


class UncertaintyWeighting(nn.Module):
    """Homoscedastic-uncertainty task weighting: each task loss L_i scaled by
    1 / (2 sigma_i^2) plus a log(sigma_i) penalty, with s_i = log(sigma_i^2) learned."""

    def __init__(self, log_vars):
        super().__init__()
        self.log_vars = nn.Parameter(torch.tensor(log_vars, dtype=torch.float32))

    def forward(self, losses):
        total = 0
        for i, task_loss in enumerate(losses):
            precision = torch.exp(-self.log_vars[i])  # 1 / sigma_i^2
            total = total + 0.5 * precision * task_loss + 0.5 * self.log_vars[i]
        return total


def with_depth_head(model):
    """A copy of `model` (same weights and BatchNorm state) with the depth head and the
    loss balancer added as submodules "depth_head" and "loss" (their state_dict names)."""
    mt = copy.deepcopy(model)
    mt.depth_head = nn.Conv2d(256, 1, 1)
    with torch.no_grad():
        mt.depth_head.bias.fill_(DEPTH_BIAS)
    mt.loss = UncertaintyWeighting(LOG_VARS)
    return mt


def multitask_forward(mt, x):
    d = mt.decoded(x)
    size = x.shape[-2:]
    logits = F.interpolate(mt.classifier(d), size=size, mode="bilinear", align_corners=False)
    depth = F.interpolate(mt.depth_head(d), size=size, mode="bilinear", align_corners=False)
    return logits, depth


def masked_l1(pred, target, valid):
    """Mean of |pred - target| over the pixels where valid is 1."""
    return ((pred - target).abs() * valid).sum() / valid.sum()


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).contiguous().numpy()


def write_gradients(f, group, model):
    for name, p in model.named_parameters():
        g = p.grad.detach()
        g = g.permute(0, 2, 3, 1).contiguous() if g.dim() == 4 else g
        f[group + "/" + name] = g.numpy().astype(np.float32)


def write_multitask_case(f, mt, x, label):
    """One training step of the multi-task model (see the module docstring)."""
    mt.train()
    logits, depth = multitask_forward(mt, x)
    n, _, h, w = depth.shape
    gap = DEPTH_MIN_GAP + torch.rand(n, 1, h, w, dtype=torch.float64) * 1.4
    # 70% of the targets below the prediction: the L1 gradients do not cancel out.
    sign = torch.where(torch.rand(n, 1, h, w) < 0.7, -1.0, 1.0).double()
    target = (depth.detach() + sign * gap).float().double()  # exact in float32
    invalid = torch.rand(n, 1, h, w) < 0.25
    invalid[0, :, :, :7] = True  # a band of invalid columns
    zero = torch.rand(n, 1, h, w) < 0.5
    target[invalid & zero] = 0.0
    target[invalid & ~zero] = 250.0  # would dominate the loss if the mask were ignored
    valid = (~invalid).double()
    seg_loss = F.cross_entropy(logits, label, ignore_index=IGNORE)
    depth_loss = masked_l1(depth, target, valid)
    total = mt.loss([seg_loss, depth_loss])
    total.backward()
    g = "multitask/"
    f[g + "depth"] = nhwc(target).astype(np.float32)
    f[g + "depth_valid"] = nhwc(valid).astype(np.uint8)
    f[g + "log_vars"] = np.array(LOG_VARS, dtype=np.float32)
    f[g + "logits"] = nhwc(logits)
    f[g + "depth_pred"] = nhwc(depth)
    f[g + "seg_loss"] = seg_loss.detach().numpy().reshape(1)
    f[g + "depth_loss"] = depth_loss.detach().numpy().reshape(1)
    f[g + "loss"] = total.detach().numpy().reshape(1)
    write_gradients(f, "multitask_grad", mt)
    return target, valid


def write_pcgrad_case(f, mt, x, label, target, valid):
    """One PCGrad step's combined gradient (see the module docstring)."""
    mt.train()
    logits, depth = multitask_forward(mt, x)
    # The multi-task case's targets mirrored about the prediction (the same gaps on
    # the other side): with them the two tasks' gradients conflict (with the
    # originals their dot product is positive), which is what PCGrad acts on.
    mirrored = (2 * depth.detach() - target).float().double()
    target = torch.where(valid > 0, mirrored, target)
    losses = (F.cross_entropy(logits, label, ignore_index=IGNORE), masked_l1(depth, target, valid))
    named = [(n, p) for n, p in mt.named_parameters() if not n.startswith("loss.")]
    params = [p for _, p in named]
    task_grads = []
    for k, (loss, w) in enumerate(zip(losses, PCGRAD_WEIGHTS)):
        g = torch.autograd.grad(loss, params, retain_graph=k == 0, allow_unused=True)
        task_grads.append([None if t is None else w * t for t in g])
    h1, h2 = task_grads
    shared = [a is not None and b is not None for a, b in zip(h1, h2)]
    dot = sum((a * b).sum() for a, b, s in zip(h1, h2, shared) if s)
    n1 = sum((a * a).sum() for a, s in zip(h1, shared) if s)
    n2 = sum((b * b).sum() for b, s in zip(h2, shared) if s)
    for (name, p), a, b, s in zip(named, h1, h2, shared):
        zero = torch.zeros_like(p)
        a = zero if a is None else a
        b = zero if b is None else b
        g = a + b
        if s and dot < 0:
            g = g - dot / n2 * b - dot / n1 * a
        g = g.detach()
        g = g.permute(0, 2, 3, 1).contiguous() if g.dim() == 4 else g
        f["pcgrad_grad/" + name] = g.numpy().astype(np.float32)
    f["pcgrad/weights"] = np.array(PCGRAD_WEIGHTS, dtype=np.float32)
    f["pcgrad/depth"] = nhwc(target).astype(np.float32)
    f["pcgrad"].attrs["dot"] = float(dot)
    f["pcgrad"].attrs["norm2_seg"] = float(n1)
    f["pcgrad"].attrs["norm2_depth"] = float(n2)
    f["pcgrad"].attrs["shared"] = int(sum(p.numel() for p, s in zip(params, shared) if s))


def randomise_batch_norm(model):
    """Non-trivial BatchNorm state (running statistics, affine), so that eval mode
    means something."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(11)
    torch.set_num_threads(1)
    dropout = CohortDropout(DROPOUT_P, DROPOUT_SEED)
    model = DeepLabV3Plus(NUM_CLASSES, ASPP_RATES, [False, False, True], dropout)
    randomise_batch_norm(model)
    export.write_safetensors(os.path.join(out_dir, "deeplabv3plus.safetensors"),
                             model.state_dict(),
                             {"source": "tests/parity/make_deeplab_golden.py"})

    # Inputs drawn in float64 and rounded to float32: exact in both precisions.
    x = torch.randn(2, 3, 65, 65, dtype=torch.float64).float().double()
    label = torch.randint(0, NUM_CLASSES, (2, 65, 65))
    label[torch.rand(2, 65, 65) < 0.2] = IGNORE
    label[1, :10, :] = IGNORE  # a fully ignored band
    # The multi-task copy: after the draws above (so the segmentation case's inputs do
    # not depend on it), before any step (so it starts from the same BatchNorm state).
    mt = with_depth_head(model)
    head = {k: v for k, v in mt.state_dict().items() if k.startswith(("depth_head.", "loss."))}
    export.write_safetensors(os.path.join(out_dir, "deeplabv3plus_multitask_head.safetensors"),
                             head, {"source": "tests/parity/make_deeplab_golden.py"})
    model.double()
    mt.double()
    with h5py.File(os.path.join(out_dir, "deeplabv3plus_golden.h5"), "w") as f:
        f["inputs/x"] = nhwc(x).astype(np.float32)
        f["inputs/label"] = label.numpy().astype(np.uint8)
        model.eval()
        with torch.no_grad():
            f["eval/logits"] = nhwc(model(x))
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, label, ignore_index=IGNORE)
        loss.backward()
        f["train/logits"] = nhwc(logits)
        f["train/loss"] = loss.detach().numpy().reshape(1)
        f["dropout/keep"] = dropout.last_keep_nhwc.astype(np.uint8)
        f["dropout"].attrs["seed"] = np.uint64(DROPOUT_SEED)
        f["dropout"].attrs["p"] = DROPOUT_P
        write_gradients(f, "grad", model)
        for name, b in model.named_buffers():
            if "running" in name:
                f["buffer/" + name] = b.detach().numpy()
        pcgrad = copy.deepcopy(mt)  # the same initial state for the PCGrad step
        target, valid = write_multitask_case(f, mt, x, label)
        write_pcgrad_case(f, pcgrad, x, label, target, valid)


if __name__ == "__main__":
    main()
