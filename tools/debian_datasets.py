"""Shared by tools/*_digits_to_imagefolder.py: real data files shipped inside Debian
packages, found or fetched without installing the packages, and written as image
folders (<out>/<split>/<class>/<name>.png) for `cohort convert imagefolder`.

A data file is taken, in this order, from the installed package, from
<cache>/<package>/<file name>, from a <package>_*.deb in that folder (only the one
file is extracted, with dpkg-deb), or -- when fetching is allowed -- from a .deb that
`apt-get download <package>` puts there (deleted once the file is out: the file is
all that is kept). No package is installed and nothing but the distribution's own
archive is contacted. <cache> defaults to $COHORT_DATA_CACHE or ~/.cache/cohort.
"""
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

MISSING = 3  # exit status: the data is not on this machine


def default_cache():
    if os.environ.get("COHORT_DATA_CACHE"):
        return os.environ["COHORT_DATA_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cohort")


def _extract(deb, member_suffix, target):
    data = None
    # dpkg-deb's stderr is kept aside: it complains of the broken pipe when the
    # stream is closed early (after the member), which is no error here.
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE,
                              stderr=errors) as proc:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:  # streamed
                for member in tar:
                    if member.name.endswith(member_suffix):
                        data = tar.extractfile(member).read()
                        break
            proc.stdout.close()
            proc.wait()
        if data is None:
            errors.seek(0)
            sys.exit(f"{deb} holds no {member_suffix} "
                     f"{errors.read().decode(errors='replace').strip()}")
    partial = f"{target}.partial-{os.getpid()}"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, target)  # a concurrent reader never sees half a file


def find_data_file(package, member_suffix, installed, cache, fetch):
    """The path of `member_suffix` (a path inside `package`); exits with MISSING if absent.

    installed: paths where an installed package keeps the file.
    """
    for path in installed:
        if os.path.isfile(path):
            return path
    folder = os.path.join(cache, package)
    cached = os.path.join(folder, os.path.basename(member_suffix))
    if os.path.isfile(cached):
        return cached
    debs = sorted(glob.glob(os.path.join(folder, f"{package}_*.deb")))
    fetched = False
    if not debs and fetch:
        os.makedirs(folder, exist_ok=True)
        print(f"apt-get download {package} (into {folder})", file=sys.stderr)
        # apt-get's progress goes to stderr: stdout carries only the file's path.
        subprocess.run(["apt-get", "download", package], cwd=folder, check=True,
                       stdout=sys.stderr)
        debs = sorted(glob.glob(os.path.join(folder, f"{package}_*.deb")))
        fetched = True
    if debs:
        _extract(debs[-1], member_suffix, cached)
        if fetched:
            for deb in debs:
                os.remove(deb)
        return cached
    print(f"{member_suffix} of Debian's {package} is not on this machine (not installed at "
          f"{', '.join(installed)}; no {os.path.basename(member_suffix)} or {package}_*.deb in "
          f"{folder}); run with --fetch, or tools/install-deps.sh", file=sys.stderr)
    sys.exit(MISSING)


def stratified_split(labels, classes, test_fraction, seed):
    """{"train": rows, "test": rows}, each sorted. Deterministic: within each class a
    permutation from numpy's legacy RandomState(seed) (stable across numpy versions)
    sends the first round(n_class * test_fraction) rows to test."""
    import numpy as np
    rng = np.random.RandomState(seed)
    split = {"train": [], "test": []}
    for k in range(classes):
        rows = np.flatnonzero(labels == k)
        rows = rows[rng.permutation(len(rows))]
        n_test = int(round(len(rows) * test_fraction))
        split["test"] += rows[:n_test].tolist()
        split["train"] += rows[n_test:].tolist()
    return {name: sorted(rows) for name, rows in split.items() if rows}


def prepare_out(out, overwrite):
    for name in ("train", "test"):
        d = os.path.join(out, name)
        if os.path.exists(d):
            if not overwrite:
                sys.exit(f"{d} exists (use --overwrite to replace it)")
            import shutil
            shutil.rmtree(d)


def write_image_folder(images, labels, rows_of, out):
    """images: [N, H, W] uint8 grey; writes <out>/<split>/<label>/<row>.png."""
    from PIL import Image
    for name, rows in rows_of.items():
        for k in sorted(set(int(labels[r]) for r in rows)):
            os.makedirs(os.path.join(out, name, str(k)), exist_ok=True)
        for row in rows:
            Image.fromarray(images[row], mode="L").save(
                os.path.join(out, name, str(int(labels[row])), f"{row:04d}.png"))


def image_folder_main(doc, name, package, member, installed, read_images, default_fraction,
                      zero_fraction_ok, shape_text):
    """The command line both digits tools share: finds (or with --fetch fetches) the
    data file; without --out prints its path; else reads it with read_images(path) ->
    (images, labels) and writes a stratified train/test image folder."""
    import argparse
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", help="image folder root (train/ and test/ are written under it)")
    p.add_argument("--cache", default=default_cache(),
                   help="where fetched data is kept (default: %(default)s)")
    p.add_argument("--fetch", action="store_true",
                   help=f"apt-get download {package} into the cache if the data is not here")
    p.add_argument("--test-fraction", type=float, default=default_fraction)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing train/ and test/")
    a = p.parse_args()
    low_ok = zero_fraction_ok and a.test_fraction == 0
    if not (low_ok or 0 < a.test_fraction < 1):
        bounds = "[0, 1)" if zero_fraction_ok else "(0, 1)"
        sys.exit(f"{name}: --test-fraction must be in {bounds}, got {a.test_fraction}")

    path = find_data_file(package, member, installed, a.cache, a.fetch)
    if a.out is None:
        print(path)
        return
    prepare_out(a.out, a.overwrite)
    images, labels = read_images(path)
    rows_of = stratified_split(labels, 10, a.test_fraction, a.seed)
    write_image_folder(images, labels, rows_of, a.out)
    print(f"{name}: {path} -> {a.out}: {len(rows_of['train'])} train, "
          f"{len(rows_of.get('test', []))} test images ({shape_text})")
