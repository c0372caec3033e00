#!/usr/bin/python3
"""scikit-learn's digits (1797 real 8x8 handwritten digits, 10 classes) as an image folder.

    /usr/bin/python3 tools/sklearn_digits_to_imagefolder.py --out data/digits \
        [--cache DIR] [--fetch] [--test-fraction 0.2] [--seed 0] [--overwrite]
    /usr/bin/python3 tools/sklearn_digits_to_imagefolder.py --fetch   # only provide the data

writes <out>/train/<class>/<row>.png and <out>/test/<class>/<row>.png (grey, the
values 0-16 scaled to 0-255; <row> is the sample's row in digits.csv.gz), ready for
`cohort convert imagefolder --root <out>/train --channels 1 --resize-shorter 28 ...`.
The split is stratified and deterministic (tools/debian_datasets.py): 1438 train and
359 test images with the defaults.

The data is sklearn/datasets/data/digits.csv.gz of Debian's python3-sklearn, from an
installed python3-sklearn or else extracted from its .deb (--fetch: `apt-get
download python3-sklearn` into <cache>/python3-sklearn), which avoids installing
sklearn's heavy dependencies. Needs python3-numpy and python3-pil. Exit status: 0
done, 3 the data is not on this machine (run with --fetch, or tools/install-deps.sh),
1 any other error.
"""
import glob
import gzip
import sys

import debian_datasets as dd

PACKAGE = "python3-sklearn"
MEMBER = "sklearn/datasets/data/digits.csv.gz"
INSTALLED = [f"{root}/{MEMBER}" for root in ["/usr/lib/python3/dist-packages"] +
             sorted(glob.glob("/usr/local/lib/python3*/dist-packages"))]
SAMPLES = 1797


def read_digits(path):
    """[N, 8, 8] uint8 images (0..16 scaled to 0..255) and [N] labels."""
    import numpy as np
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    if table.ndim != 2 or table.shape != (SAMPLES, 65):
        sys.exit(f"digits: {path} has shape {table.shape}; expected {SAMPLES} rows of "
                 "64 pixels + label")
    pixels = table[:, :64].reshape(-1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        sys.exit(f"digits: {path} has pixels outside 0-16 or labels outside 0-9")
    # 16 * 255 / 16 = 255 exactly; rounding keeps the levels evenly spread.
    return np.rint(pixels * (255.0 / 16.0)).astype(np.uint8), labels


def main():
    dd.image_folder_main(__doc__, "sklearn digits", PACKAGE, MEMBER, INSTALLED, read_digits, 0.2,
                         False, "8x8 grey, 10 classes")


if __name__ == "__main__":
    main()
