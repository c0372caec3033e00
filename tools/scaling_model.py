#!/usr/bin/env python3
"""Paper estimate of data-parallel scaling efficiency (docs/PERFORMANCE.md).

Alpha-beta model of a hierarchical ring all-reduce, as NCCL runs it on
multi-node H100 systems: reduce-scatter inside the node over NVLink, ring
all-reduce of each GPU's 1/8 share across nodes over its share of the node's
InfiniBand rails, all-gather inside the node. Communication overlaps backward
(bucketed, reverse order); what cannot hide is the part that exceeds the
backward time plus the last bucket, which starts only when backward ends.

    python3 tools/scaling_model.py
"""

GPUS_PER_NODE = 8
NVLINK_GBS = 450.0       # H100 SXM NVLink 4: per GPU, per direction
NVLINK_ALPHA_US = 3.0
IB_NODE_GBS = 4 * 400 / 8  # 4 x 400 Gb/s per node = 200 GB/s per direction
IB_ALPHA_US = 8.0
BUCKET_MB = 25.0
# NCCL reaches roughly this fraction of the raw link bandwidth on large messages.
ACHIEVED = 0.8

WORKLOADS = {
    # name: (gradient MB per step as communicated, step ms on one GPU, backward share)
    # Step times and backward shares are cohort's own `cohort bench train` medians
    # on an H200 (docs/PERFORMANCE.md, 2026-11-27); an H100 has the same tensor
    # cores and less memory bandwidth, so its steps are no shorter: shorter steps
    # hide less communication, so these figures err low.
    # ResNet-50 classifier, 25.56 M parameters, batch 256: 54.43 ms, backward 39.44 ms.
    "ResNet-50, batch 256/GPU, f32 grads": (25.56e6 * 4 / 1e6, 54.43, 39.44 / 54.43),
    "ResNet-50, batch 256/GPU, bf16 grads": (25.56e6 * 2 / 1e6, 54.43, 39.44 / 54.43),
    # DeepLabV3+ R50 OS16, 40.35 M parameters, batch 8 at 512x1024: 38.46 ms (the
    # median of six runs' medians, 35.88-57.98), backward 22.9 ms.
    "DeepLabV3+ R50, batch 8/GPU, f32 grads": (40.35e6 * 4 / 1e6, 38.46, 22.9 / 38.46),
    "DeepLabV3+ R50, batch 8/GPU, bf16 grads": (40.35e6 * 2 / 1e6, 38.46, 22.9 / 38.46),
}


def ring_ms(mb, ranks, gbs, alpha_us):
    """All-reduce time of a ring over `ranks` with per-rank link bandwidth `gbs`."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) * alpha_us / 1e3 + 2 * (ranks - 1) / ranks * mb / gbs


def allreduce_ms(mb, gpus):
    nvlink = NVLINK_GBS * ACHIEVED
    if gpus <= GPUS_PER_NODE:
        return ring_ms(mb, gpus, nvlink, NVLINK_ALPHA_US)
    nodes = gpus // GPUS_PER_NODE
    # Reduce-scatter + all-gather inside the node cost one intra-node ring all-reduce.
    intra = ring_ms(mb, GPUS_PER_NODE, nvlink, NVLINK_ALPHA_US)
    # Each GPU all-reduces its 1/8 share across nodes over its share of the rails.
    per_gpu_ib = IB_NODE_GBS / GPUS_PER_NODE * ACHIEVED
    inter = ring_ms(mb / GPUS_PER_NODE, nodes, per_gpu_ib, IB_ALPHA_US)
    return intra + inter


def main():
    print(f"model: NVLink {NVLINK_GBS:.0f} GB/s/GPU alpha {NVLINK_ALPHA_US} us; "
          f"IB {IB_NODE_GBS:.0f} GB/s/node ({IB_NODE_GBS / GPUS_PER_NODE:.0f} GB/s per GPU) "
          f"alpha {IB_ALPHA_US} us; {100 * ACHIEVED:.0f}% of raw bandwidth achieved; "
          f"bucket {BUCKET_MB:.0f} MB")
    print(f"{'workload':<42} {'GPUs':>5} {'all-reduce ms':>14} {'exposed ms':>11} {'efficiency':>11}")
    for name, (mb, step_ms, bwd_share) in WORKLOADS.items():
        for gpus in (8, 64, 512):
            total = allreduce_ms(mb, gpus)
            last_bucket = allreduce_ms(min(BUCKET_MB, mb), gpus)
            hidden_window = step_ms * bwd_share
            exposed = max(0.0, total - hidden_window) + last_bucket
            eff = step_ms / (step_ms + exposed)
            print(f"{name:<42} {gpus:>5} {total:>14.2f} {exposed:>11.2f} {100 * eff:>10.1f}%")


if __name__ == "__main__":
    main()
