"""Compares `cohort eval` with Cityscapes' official pixel-level evaluator.

    PYTHONPATH=<cityscapesscripts> /usr/bin/python3 tests/parity/cityscapes_official_eval.py \
        <root> <predictions dir> <cohort eval --json file>

The official evaluator (cityscapesscripts, evalPixelLevelSemanticLabeling) reads
the prediction PNGs cohort wrote (label ids, full size, one per val frame) against
the tree's gtFine labelIds; its per-class IoU and class average must equal the
scores cohort computed on its own from its confusion matrix. Exit 0 when they do.
"""
import glob
import json
import math
import os
import sys

from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official


def main():
    root, predictions, cohort_json = sys.argv[1:4]
    truth = sorted(glob.glob(os.path.join(root, "gtFine", "val", "*", "*_gtFine_labelIds.png")))
    assert truth, f"no ground truth under {root}"
    stems = [os.path.basename(t)[: -len("_gtFine_labelIds.png")] for t in truth]
    predicted = [os.path.join(predictions, f"{s}_pred_labelIds.png") for s in stems]
    missing = [p for p in predicted if not os.path.exists(p)]
    assert not missing, f"cohort wrote no prediction for {missing}"
    extra = sorted(set(os.listdir(predictions)) - {os.path.basename(p) for p in predicted})
    assert not extra, f"unexpected files among the predictions: {extra}"

    args = official.args
    args.evalInstLevelScore = False  # needs instanceIds files; not a pixel-level score
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    result = official.evaluateImgLists(predicted, truth, args)

    with open(cohort_json) as f:
        ours = json.load(f)
    failures = []
    print(f"{'class':<16} {'official':>10} {'cohort':>10}")
    for name, score in ours["class_iou"].items():
        theirs = result["classScores"][name]
        mine = float("nan") if score is None else score
        print(f"{name:<16} {theirs:>10.6f} {mine:>10.6f}")
        same = (math.isnan(theirs) and math.isnan(mine)) or abs(theirs - mine) <= 1e-12
        if not same:
            failures.append(f"{name}: official {theirs!r}, cohort {mine!r}")
    average = result["averageScoreClasses"]
    print(f"{'mIoU':<16} {average:>10.6f} {ours['miou']:>10.6f}")
    if abs(average - ours["miou"]) > 1e-12:
        failures.append(f"mIoU: official {average!r}, cohort {ours['miou']!r}")
    # The comparison must mean something: several classes scored, not all perfectly.
    scored = [v for v in ours["class_iou"].values() if v is not None]
    if len(scored) < 3 or not 0 < ours["miou"] < 1:
        failures.append(f"degenerate scores (mIoU {ours['miou']}, {len(scored)} classes scored)")
    if failures:
        print("MISMATCH:\n  " + "\n  ".join(failures))
        return 1
    print(f"official evaluator and cohort agree on {len(truth)} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
