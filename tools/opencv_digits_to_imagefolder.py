#!/usr/bin/python3
"""OpenCV's digits (5000 real 20x20 handwritten digits, 10 classes) as an image folder.

    /usr/bin/python3 tools/opencv_digits_to_imagefolder.py --out data/opencv-digits \
        [--cache DIR] [--fetch] [--test-fraction 0] [--seed 0] [--overwrite]
    /usr/bin/python3 tools/opencv_digits_to_imagefolder.py --fetch   # only provide the data

writes <out>/train/<class>/<index>.png (and <out>/test/... with --test-fraction > 0;
stratified and deterministic, see tools/debian_datasets.py), ready for `cohort
convert imagefolder --root <out>/train --channels 1 --resize-shorter 28 ...`.

The source is examples/data/digits.png of Debian's opencv-doc: 2000x1000 grey, cells
of 20x20, 100 per row; digit k fills rows 5k..5k+4. <index> = row * 100 + column.
The file comes from an installed opencv-doc or else is extracted from its .deb
(--fetch: `apt-get download opencv-doc` into <cache>/opencv-doc; the ~95 MB .deb is
deleted once the 0.7 MB image is out). Needs python3-numpy and python3-pil. Exit
status: 0 done, 3 the data is not on this machine (run with --fetch, or
tools/install-deps.sh), 1 any other error.
"""
import sys

import debian_datasets as dd

PACKAGE = "opencv-doc"
MEMBER = "usr/share/doc/opencv-doc/examples/data/digits.png"
INSTALLED = ["/" + MEMBER]
CELL, COLUMNS, ROWS_PER_CLASS = 20, 100, 5


def read_digits(path):
    """[5000, 20, 20] uint8 images and [5000] labels, in row-major cell order."""
    import numpy as np
    from PIL import Image
    sheet = np.asarray(Image.open(path).convert("L"))
    expected = (10 * ROWS_PER_CLASS * CELL, COLUMNS * CELL)
    if sheet.shape != expected:
        sys.exit(f"opencv digits: {path} is {sheet.shape[1]}x{sheet.shape[0]}; expected "
                 f"{expected[1]}x{expected[0]}")
    rows = sheet.shape[0] // CELL
    cells = sheet.reshape(rows, CELL, COLUMNS, CELL).transpose(0, 2, 1, 3)
    images = np.ascontiguousarray(cells.reshape(rows * COLUMNS, CELL, CELL))
    labels = np.arange(rows * COLUMNS) // (ROWS_PER_CLASS * COLUMNS)
    return images, labels


def main():
    dd.image_folder_main(__doc__, "opencv digits", PACKAGE, MEMBER, INSTALLED, read_digits, 0.0,
                         True, "20x20 grey, 10 classes")


if __name__ == "__main__":
    main()
