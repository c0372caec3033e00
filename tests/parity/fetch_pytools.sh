#!/usr/bin/env bash
# Pure-Python test tools from PyPI, fetched once into the build tree:
#   tests/parity/fetch_pytools.sh DIR PYTHON CHECK PACKAGE==VERSION...
# makes the Python statement CHECK run with PYTHONPATH=DIR under PYTHON,
# installing the pinned packages into DIR (without their dependencies: those
# come from the distribution) when it does not yet. Exit 0: ready; 77: it could
# not be done (no pip or no network), for the caller to report skipped.
set -uo pipefail
dir=$1
py=$2
check=$3
shift 3
PYTHONPATH=$dir "$py" -c "$check" 2>/dev/null && exit 0
# The pip beside PYTHON may be missing (Debian's python3 has none); the default
# python3's pip installs the same pure-Python wheels.
for pip in "python3 -m pip" "$py -m pip"; do
  if $pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "$@" \
      2>/dev/null && PYTHONPATH=$dir "$py" -c "$check" 2>/dev/null; then
    exit 0
  fi
done
exit 77
