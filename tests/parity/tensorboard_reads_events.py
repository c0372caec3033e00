"""TensorBoard's EventAccumulator against a `cohort train` run directory:

    PYTHONPATH=<tensorboard> /usr/bin/python3 tensorboard_reads_events.py RUN_DIR STEPS

Every number of metrics.jsonl must be a TensorBoard scalar ("train/<name>", or
"eval/<name>" for eval_<name>) at its step, equal to float32 precision (the file
has 6 significant digits); each training tag must hold steps 1..STEPS exactly
once, i.e. the events a crashed run logged after its last checkpoint were purged
by the resumed run's SessionLog START; and no tag may be there that
metrics.jsonl does not have. Exit 0 when all hold, 1 otherwise.
"""
import json
import math
import sys

from tensorboard.backend.event_processing import event_accumulator


def main():
    run_dir, steps = sys.argv[1], int(sys.argv[2])
    expected = {}  # tag -> {step: value}
    with open(f"{run_dir}/metrics.jsonl") as f:
        for line in f:
            record = json.loads(line)
            step = record.pop("step")
            record.pop("epoch", None)
            for name, value in record.items():
                tag = "eval/" + name[5:] if name.startswith("eval_") else "train/" + name
                assert step not in expected.setdefault(tag, {}), f"{tag} twice at step {step}"
                expected[tag][step] = value

    acc = event_accumulator.EventAccumulator(
        run_dir, size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=True)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    failures = []
    if tags != set(expected):
        failures.append(f"tags: TensorBoard has {sorted(tags)}, metrics.jsonl {sorted(expected)}")
    for tag in sorted(tags & set(expected)):
        events = acc.Scalars(tag)
        seen = [e.step for e in events]
        if len(seen) != len(set(seen)):
            failures.append(f"{tag}: a step shows more than once: {seen}")
        if tag.startswith("train/") and sorted(set(seen)) != list(range(1, steps + 1)):
            failures.append(f"{tag}: steps {seen}, expected 1..{steps} once each")
        for e in events:
            want = expected[tag].get(e.step)
            if want is None or not math.isclose(e.value, want, rel_tol=2e-5, abs_tol=1e-12):
                failures.append(f"{tag} at step {e.step}: TensorBoard {e.value}, "
                                f"metrics.jsonl {want}")
    print(f"TensorBoard read {len(tags)} tags: {', '.join(sorted(tags))}; "
          f"train/loss at steps {[e.step for e in acc.Scalars('train/loss')]}"
          if "train/loss" in tags else f"TensorBoard read tags {sorted(tags)}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
