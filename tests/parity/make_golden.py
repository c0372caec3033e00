#!/usr/bin/python3
"""Writes the golden file for cohort's PyTorch parity tests (tests/parity/*.cpp).

Usage: /usr/bin/python3 tests/parity/make_golden.py OUT.h5

Every case is one HDF5 group "<case>/" holding
  - inputs and parameters, already in cohort's layouts (activations NHWC, conv
    weight [O,kh,kw,I], conv-transpose weight [I,kh,kw,O], linear [out,in]);
  - the upstream gradient `dy` (or the scalar `dloss`);
  - PyTorch's forward outputs and every gradient, in cohort's layouts;
  - the op's settings (stride, padding, ...) as attributes of the group.

Inputs are drawn in float64 and rounded to float32 (`f32_exact`), so the same
values are exact in both precisions: the C++ tests run every case once in f32
and once in f64 against one reference, which PyTorch computes in float64. The
f64 run can then be compared tightly and the f32 run measures only cohort's own
rounding (see tests/parity/README.md). Inputs are stored as float32, references
as float64.
"""
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611
torch.manual_seed(SEED)
torch.set_default_dtype(torch.float64)
# Reproducible float64 reductions: one thread, deterministic kernels.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


# ---- value generation ----------------------------------------------------------
def f32_exact(t):
    """Rounds to the nearest float32 and back, so the value is exact in both dtypes."""
    return t.float().double()


def randn(*shape, scale=1.0, shift=0.0):
    return f32_exact(torch.randn(*shape) * scale + shift)


def uniform(*shape, lo=0.0, hi=1.0):
    return f32_exact(torch.rand(*shape) * (hi - lo) + lo)


def leaf(t):
    return t.clone().requires_grad_(True)


# ---- layout conversion (PyTorch -> cohort) ----------------------------------------
def nhwc(t):
    """[N,C,H,W] -> [N,H,W,C]; also [I,O,kh,kw] -> [I,kh,kw,O] and [O,I,kh,kw] -> [O,kh,kw,I]."""
    return t.detach().permute(0, 2, 3, 1).contiguous()


def nchw(t):
    """[N,H,W,C] -> [N,C,H,W] (for dy drawn directly in cohort's layout)."""
    return t.permute(0, 3, 1, 2).contiguous()


# ---- output ----------------------------------------------------------------------
class Writer:
    def __init__(self, path):
        self.file = h5py.File(path, "w")
        self.file.attrs["torch_version"] = str(torch.__version__).encode()
        self.file.attrs["seed"] = SEED

    def case(self, name, attrs=None, inputs=None, outputs=None):
        """inputs: exact float32 values (stored as f32); outputs: references (stored as f64).
        Integer tensors keep their integer type."""
        g = self.file.create_group(name)
        for key, value in (attrs or {}).items():
            g.attrs[key] = value
        for kind, values in (("input", inputs or {}), ("output", outputs or {})):
            for key, t in values.items():
                a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
                if a.dtype.kind == "f":
                    if kind == "input":
                        assert np.array_equal(a.astype(np.float32).astype(a.dtype), a), \
                            f"{name}/{key}: input is not exact in float32"
                        a = a.astype(np.float32)
                    else:
                        a = a.astype(np.float64)
                g.create_dataset(key, data=np.ascontiguousarray(a))

    def close(self):
        self.file.close()


def geometry_attrs(stride, pad, dilation=(1, 1), output_pad=(0, 0)):
    return dict(stride_h=stride[0], stride_w=stride[1], pad_h=pad[0], pad_w=pad[1],
                dilation_h=dilation[0], dilation_w=dilation[1],
                output_pad_h=output_pad[0], output_pad_w=output_pad[1])


# ---- convolution and linear -------------------------------------------------------
def conv2d_case(w_out, name, x_shape, out_ch, kernel, stride, pad, dilation, with_bias):
    c = x_shape[1]
    x = leaf(randn(*x_shape))
    w = leaf(randn(out_ch, c, *kernel, scale=0.3))
    b = leaf(randn(out_ch)) if with_bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    inputs = dict(x=nhwc(x), w=nhwc(w), dy=dy)
    outputs = dict(y=nhwc(y), dx=nhwc(x.grad), dw=nhwc(w.grad))
    if with_bias:
        inputs["b"] = b.detach()
        outputs["db"] = b.grad
    w_out.case(name, geometry_attrs(stride, pad, dilation) | dict(has_bias=int(with_bias)),
               inputs, outputs)


def conv_transpose2d_case(w_out, name, x_shape, out_ch, kernel, stride, pad, output_pad,
                          dilation, with_bias):
    c = x_shape[1]
    x = leaf(randn(*x_shape))
    w = leaf(randn(c, out_ch, *kernel, scale=0.3))  # PyTorch: [I, O, kh, kw]
    b = leaf(randn(out_ch)) if with_bias else None
    y = F.conv_transpose2d(x, w, b, stride=stride, padding=pad, output_padding=output_pad,
                           dilation=dilation)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    inputs = dict(x=nhwc(x), w=nhwc(w), dy=dy)
    outputs = dict(y=nhwc(y), dx=nhwc(x.grad), dw=nhwc(w.grad))
    if with_bias:
        inputs["b"] = b.detach()
        outputs["db"] = b.grad
    w_out.case(name, geometry_attrs(stride, pad, dilation, output_pad) |
               dict(has_bias=int(with_bias)), inputs, outputs)


def linear_case(w_out):
    x = leaf(randn(4, 6))
    w = leaf(randn(5, 6, scale=0.4))
    b = leaf(randn(5))
    y = F.linear(x, w, b)
    dy = randn(4, 5)
    y.backward(dy)
    w_out.case("linear", {}, dict(x=x, w=w, b=b, dy=dy),
               dict(y=y, dx=x.grad, dw=w.grad, db=b.grad))


# ---- batch normalisation -----------------------------------------------------------
MOMENTUM, EPS = 0.1, 1e-5


def batch_norm_case(w_out, name, training, relu, residual):
    x = leaf(randn(3, 4, 5, 6, scale=1.5, shift=0.5))
    gamma = leaf(uniform(4, lo=0.5, hi=1.5))
    beta = leaf(randn(4, scale=0.5))
    running_mean = randn(4, scale=0.2)
    running_var = uniform(4, lo=0.5, hi=1.5)
    z = leaf(randn(3, 4, 5, 6)) if residual else None
    rm, rv = running_mean.clone(), running_var.clone()
    y = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=MOMENTUM, eps=EPS)
    if residual:
        y = y + z
    if relu:
        y = F.relu(y)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    with torch.no_grad():
        if training:
            saved_mean = x.mean(dim=(0, 2, 3))
            saved_invstd = 1.0 / torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False) + EPS)
        else:
            saved_mean = running_mean.clone()
            saved_invstd = 1.0 / torch.sqrt(running_var + EPS)
    inputs = dict(x=nhwc(x), gamma=gamma, beta=beta, running_mean=running_mean,
                  running_var=running_var, dy=dy)
    outputs = dict(y=nhwc(y), running_mean_out=rm, running_var_out=rv, saved_mean=saved_mean,
                   saved_invstd=saved_invstd, dx=nhwc(x.grad), dgamma=gamma.grad,
                   dbeta=beta.grad)
    if residual:
        inputs["residual"] = nhwc(z)
        outputs["dresidual"] = nhwc(z.grad)
    w_out.case(name, dict(momentum=MOMENTUM, eps=EPS, training=int(training), relu=int(relu),
                          has_residual=int(residual)), inputs, outputs)


# ---- element-wise -----------------------------------------------------------------
def elementwise_cases(w_out):
    # Shapes are NHWC directly: these ops do not care about layout.
    x = leaf(randn(2, 3, 4, 5))
    y = F.relu(x)
    dy = randn(2, 3, 4, 5)
    y.backward(dy)
    w_out.case("relu", {}, dict(x=x, dy=dy), dict(y=y, dx=x.grad))

    a, b = leaf(randn(2, 3, 4, 5)), leaf(randn(2, 3, 4, 5))
    w_out.case("add", {}, dict(a=a, b=b), dict(y=a + b))

    (a * b).backward(dy)
    w_out.case("mul", {}, dict(a=a, b=b, dy=dy), dict(y=a * b, da=a.grad, db=b.grad))

    alpha = -1.75
    x = leaf(randn(2, 3, 4, 5))
    y = x * alpha
    y.backward(dy)
    w_out.case("scale", dict(alpha=alpha), dict(x=x, dy=dy), dict(y=y, dx=x.grad))

    acc, x = randn(3, 7), randn(3, 7)
    w_out.case("add_inplace", {}, dict(acc=acc, x=x), dict(y=acc + x))

    # Casts to the 16-bit types: a spread of magnitudes (f16 subnormals included)
    # and exact round-to-nearest-even ties for both formats.
    ties = [1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -8),  # bf16 ties
            1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 3 * 2.0 ** -20]     # f16 ties, f16 subnormal
    spread = torch.cat([randn(40) * 10.0 ** e for e in (-6, -3, 0, 2, 4)])
    values = f32_exact(torch.cat([torch.tensor(ties), spread, torch.tensor([0.0, -0.0])]))
    values32 = values.float()
    w_out.case("cast", {}, dict(x=values),
               dict(to_bf16=values32.bfloat16().double(), to_f16=values32.half().double()))


# ---- reductions -------------------------------------------------------------------
def reduction_cases(w_out):
    x = leaf(randn(3, 4, 5, 2))
    dloss = torch.tensor([0.375])
    s = x.sum()
    s.backward(dloss[0])
    dsum = x.grad.clone()
    x.grad = None
    m = x.mean()
    m.backward(dloss[0])
    w_out.case("reduce", {}, dict(x=x, dloss=dloss),
               dict(sum=s.reshape(1), mean=m.reshape(1), dx_sum=dsum, dx_mean=x.grad))

    # argmax over channels (NHWC last dim), with some exact ties: first index wins.
    logits = torch.randint(0, 4, (2, 3, 4, 6)).double()
    logits[0, 0, 0] = torch.tensor([1.0, 3.0, 3.0, 0.0, 3.0, 2.0])
    w_out.case("argmax", {}, dict(x=logits), dict(index=logits.argmax(dim=-1)))


# ---- pooling and resizing -------------------------------------------------------------
def pool_attrs(kernel, stride, pad, count_include_pad=True):
    return dict(kernel_h=kernel[0], kernel_w=kernel[1], stride_h=stride[0], stride_w=stride[1],
                pad_h=pad[0], pad_w=pad[1], count_include_pad=int(count_include_pad))


def max_pool_case(w_out, name, x, kernel, stride, pad):
    x = leaf(x)
    y = F.max_pool2d(x, kernel, stride, pad)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    w_out.case(name, pool_attrs(kernel, stride, pad), dict(x=nhwc(x), dy=dy),
               dict(y=nhwc(y), dx=nhwc(x.grad)))


def avg_pool_case(w_out, name, x_shape, kernel, stride, pad, count_include_pad):
    x = leaf(randn(*x_shape))
    y = F.avg_pool2d(x, kernel, stride, pad, count_include_pad=count_include_pad)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    w_out.case(name, pool_attrs(kernel, stride, pad, count_include_pad), dict(x=nhwc(x), dy=dy),
               dict(y=nhwc(y), dx=nhwc(x.grad)))


def adaptive_case(w_out, name, x_shape, out_hw):
    x = leaf(randn(*x_shape))
    y = F.adaptive_avg_pool2d(x, out_hw)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    w_out.case(name, dict(out_h=out_hw[0], out_w=out_hw[1]), dict(x=nhwc(x), dy=dy),
               dict(y=nhwc(y), dx=nhwc(x.grad)))


def resize_case(w_out, name, x_shape, out_hw):
    x = leaf(randn(*x_shape))
    y = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    w_out.case(name, dict(out_h=out_hw[0], out_w=out_hw[1]), dict(x=nhwc(x), dy=dy),
               dict(y=nhwc(y), dx=nhwc(x.grad)))


def pool_cases(w_out):
    max_pool_case(w_out, "max_pool2d", randn(2, 3, 9, 8), (3, 3), (2, 2), (1, 1))
    # Small integers make many ties: the gradient must go to the first maximum of
    # each window in row-major order (PyTorch's CPU kernel).
    ties = torch.randint(0, 3, (2, 3, 6, 7)).double()
    max_pool_case(w_out, "max_pool2d_ties", ties, (3, 3), (2, 2), (1, 1))
    max_pool_case(w_out, "max_pool2d_overlap_ties", ties, (2, 2), (1, 1), (0, 0))
    avg_pool_case(w_out, "avg_pool2d_include_pad", (2, 3, 7, 6), (3, 3), (2, 2), (1, 1), True)
    avg_pool_case(w_out, "avg_pool2d_exclude_pad", (2, 3, 7, 6), (3, 3), (2, 2), (1, 1), False)
    avg_pool_case(w_out, "avg_pool2d_asym", (2, 3, 7, 6), (3, 2), (2, 1), (1, 0), False)
    adaptive_case(w_out, "adaptive_avg_pool2d_3x2", (2, 3, 7, 5), (3, 2))
    adaptive_case(w_out, "adaptive_avg_pool2d_1x1", (2, 3, 7, 5), (1, 1))
    resize_case(w_out, "resize_up", (2, 3, 4, 5), (7, 9))
    resize_case(w_out, "resize_up2x", (2, 3, 4, 5), (8, 10))
    resize_case(w_out, "resize_down", (2, 3, 9, 8), (4, 3))


# ---- concat ---------------------------------------------------------------------------
def concat_case(w_out):
    parts = [leaf(randn(2, c, 3, 4)) for c in (2, 3, 1)]
    y = torch.cat(parts, dim=1)
    dy = randn(*nhwc(y).shape)
    y.backward(nchw(dy))
    inputs = {f"x{i}": nhwc(p) for i, p in enumerate(parts)} | dict(dy=dy)
    outputs = {f"dx{i}": nhwc(p.grad) for i, p in enumerate(parts)} | dict(y=nhwc(y))
    w_out.case("concat", dict(count=len(parts)), inputs, outputs)


# ---- losses -----------------------------------------------------------------------------
DLOSS = 0.75  # exact in float32; a non-unit upstream gradient checks the scaling


def cross_entropy_case(w_out, name, logits_shape, ignore_fraction, with_weights):
    c = logits_shape[1]
    logits = leaf(randn(*logits_shape, scale=2.0))
    label_shape = (logits_shape[0],) + tuple(logits_shape[2:])
    labels = torch.randint(0, c, label_shape)
    labels[torch.rand(label_shape) < ignore_fraction] = 255
    weights = uniform(c, lo=0.25, hi=2.0) if with_weights else None
    loss = F.cross_entropy(logits, labels, weight=weights, ignore_index=255, reduction="mean")
    loss.backward(torch.tensor(DLOSS))
    to_cohort = nhwc if logits.dim() == 4 else (lambda t: t.detach())
    inputs = dict(logits=to_cohort(logits), labels=labels, dloss=torch.tensor([DLOSS]))
    if with_weights:
        inputs["class_weights"] = weights
    w_out.case(name, dict(ignore_index=255, has_weights=int(with_weights)), inputs,
               dict(loss=loss.reshape(1), dlogits=to_cohort(logits.grad)))


def masked_mean(per_element, mask):
    return (per_element * mask).sum() / mask.sum()


def regression_case(w_out, name, kind, beta):
    shape = (2, 4, 3, 5)  # NHWC; element-wise, the layout does not matter
    pred = leaf(randn(*shape))
    # Differences spread over both smooth-L1 regimes (|d| < beta and |d| >= beta).
    target = f32_exact(pred.detach() + torch.randn(*shape) * 1.2)
    mask = (torch.rand(shape) < 0.6).to(torch.uint8)

    def per_element(p):
        if kind == "l1":
            return (p - target).abs()
        return F.smooth_l1_loss(p, target, reduction="none", beta=beta)

    outputs = {}
    loss = masked_mean(per_element(pred), mask.double())
    loss.backward(torch.tensor(DLOSS))
    outputs |= dict(loss=loss.reshape(1), dpred=pred.grad.clone())
    pred.grad = None
    loss = per_element(pred).mean()  # no mask: plain mean
    loss.backward(torch.tensor(DLOSS))
    outputs |= dict(loss_nomask=loss.reshape(1), dpred_nomask=pred.grad.clone())
    w_out.case(name, dict(beta=beta, smooth=int(kind == "smooth_l1")),
               dict(pred=pred, target=target, mask=mask, dloss=torch.tensor([DLOSS])), outputs)


def loss_cases(w_out):
    cross_entropy_case(w_out, "cross_entropy_nchw", (2, 5, 4, 3), 0.25, True)
    cross_entropy_case(w_out, "cross_entropy_nc", (6, 4), 0.0, False)
    regression_case(w_out, "l1", "l1", 1.0)
    regression_case(w_out, "smooth_l1_beta1", "smooth_l1", 1.0)
    regression_case(w_out, "smooth_l1_beta05", "smooth_l1", 0.5)


# ---- a small whole network -----------------------------------------------------------------
def network_case(w_out):
    """The op chain of a tiny encoder-decoder with three heads (see test_parity_network.cpp)."""
    p = dict(
        conv1_w=leaf(randn(4, 3, 3, 3, scale=0.4)),
        bn1_gamma=leaf(uniform(4, lo=0.5, hi=1.5)), bn1_beta=leaf(randn(4, scale=0.3)),
        conv2_w=leaf(randn(4, 4, 3, 3, scale=0.3)),
        bn2_gamma=leaf(uniform(4, lo=0.5, hi=1.5)), bn2_beta=leaf(randn(4, scale=0.3)),
        up_w=leaf(randn(4, 3, 3, 3, scale=0.3)), up_b=leaf(randn(3, scale=0.3)),
        fc_w=leaf(randn(5, 7, scale=0.4)), fc_b=leaf(randn(5, scale=0.3)),
        seg_w=leaf(randn(5, 7, 1, 1, scale=0.4)), seg_b=leaf(randn(5, scale=0.3)),
        reg_w=leaf(randn(2, 7, 1, 1, scale=0.4)), reg_b=leaf(randn(2, scale=0.3)),
    )
    x = leaf(randn(2, 3, 8, 8))
    rm = [torch.zeros(4), torch.zeros(4)]
    rv = [torch.ones(4), torch.ones(4)]
    cls_labels = torch.tensor([3, 1])
    seg_labels = torch.randint(0, 5, (2, 10, 10))
    seg_labels[torch.rand(2, 10, 10) < 0.2] = 255
    reg_target = randn(2, 2, 8, 8)
    reg_mask = (torch.rand(2, 2, 8, 8) < 0.7).to(torch.uint8)

    a1 = F.conv2d(x, p["conv1_w"], None, padding=1)
    a1 = F.batch_norm(a1, rm[0], rv[0], p["bn1_gamma"], p["bn1_beta"], True, MOMENTUM, EPS)
    a1 = F.relu(a1)
    p1 = F.max_pool2d(a1, 3, 2, 1)                                    # [2,4,4,4]
    c2 = F.conv2d(p1, p["conv2_w"], None, padding=1)
    a2 = F.relu(F.batch_norm(c2, rm[1], rv[1], p["bn2_gamma"], p["bn2_beta"], True, MOMENTUM,
                             EPS) + p1)
    up = F.conv_transpose2d(a2, p["up_w"], p["up_b"], stride=2, padding=1,
                            output_padding=1)                          # [2,3,8,8]
    skip = F.interpolate(p1, size=(8, 8), mode="bilinear", align_corners=False)
    cat = torch.cat([up, skip], dim=1)                                # [2,7,8,8]
    feat = F.dropout(cat, p=0.0, training=True)
    pooled = F.adaptive_avg_pool2d(feat, (1, 1)).flatten(1)           # [2,7]
    cls_loss = F.cross_entropy(F.linear(pooled, p["fc_w"], p["fc_b"]), cls_labels)
    seg = F.interpolate(F.conv2d(feat, p["seg_w"], p["seg_b"]), size=(10, 10), mode="bilinear",
                        align_corners=False)
    seg_loss = F.cross_entropy(seg, seg_labels, ignore_index=255)
    reg = F.conv2d(feat, p["reg_w"], p["reg_b"])
    reg_loss = masked_mean((reg - reg_target).abs(), reg_mask.double())
    loss = cls_loss + seg_loss + 0.5 * reg_loss
    loss.backward()

    to_cohort = lambda t: nhwc(t) if t.dim() == 4 else t.detach()
    inputs = {k: to_cohort(v) for k, v in p.items()}
    inputs |= dict(x=nhwc(x), cls_labels=cls_labels, seg_labels=seg_labels,
                   reg_target=nhwc(reg_target), reg_mask=nhwc(reg_mask))
    outputs = {"d" + k: to_cohort(v.grad) for k, v in p.items()}
    outputs |= dict(dx=nhwc(x.grad), loss=loss.reshape(1), cls_loss=cls_loss.reshape(1),
                    seg_loss=seg_loss.reshape(1), reg_loss=reg_loss.reshape(1),
                    bn1_running_mean=rm[0], bn1_running_var=rv[0], bn2_running_mean=rm[1],
                    bn2_running_var=rv[1])
    w_out.case("network", dict(momentum=MOMENTUM, eps=EPS, reg_weight=0.5), inputs, outputs)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_golden.py OUT.h5")
    w = Writer(sys.argv[1])
    conv2d_case(w, "conv2d", (2, 5, 9, 7), 4, (3, 2), (2, 2), (1, 1), (2, 2), True)
    conv2d_case(w, "conv2d_asym", (2, 3, 8, 9), 4, (3, 3), (2, 1), (1, 2), (2, 1), True)
    conv2d_case(w, "conv2d_1x1", (2, 6, 5, 4), 3, (1, 1), (1, 1), (0, 0), (1, 1), False)
    conv_transpose2d_case(w, "conv_transpose2d", (2, 4, 5, 4), 3, (3, 3), (2, 2), (1, 1),
                          (1, 1), (1, 1), True)
    conv_transpose2d_case(w, "conv_transpose2d_asym", (2, 3, 4, 3), 2, (3, 4), (2, 3), (1, 0),
                          (1, 2), (1, 1), False)
    linear_case(w)
    batch_norm_case(w, "batch_norm_train", training=True, relu=False, residual=False)
    batch_norm_case(w, "batch_norm_eval", training=False, relu=False, residual=False)
    batch_norm_case(w, "bn_add_relu_train", training=True, relu=True, residual=True)
    batch_norm_case(w, "bn_relu_eval", training=False, relu=True, residual=False)
    elementwise_cases(w)
    reduction_cases(w)
    pool_cases(w)
    concat_case(w)
    loss_cases(w)
    network_case(w)
    w.close()


if __name__ == "__main__":
    main()
