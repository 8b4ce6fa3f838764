#!/usr/bin/env bash
# Run HERE, not on the GPU machine: downloads into .whl/ every wheel benchmarks/gpu.sh installs there.
# The list is not written here: benchmarks/wheels.py derives it from pyproject.toml's dependencies and
# the GPU image's packages (benchmarks/gpu-image-packages.txt), pinned to the versions this machine's
# virtual environment runs (the ones the CPU tests passed with). Wheels for the machine's Python 3.12 on
# x86-64 Linux (pydantic-core is compiled: manylinux). .whl/ is git-ignored; the device call carries it:
# carry [".whl"] (64 MiB at most travel, working tree included; this is about 5 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mapfile -t WHEELS < <("$PYTHON" benchmarks/wheels.py pins)
[ "${#WHEELS[@]}" -gt 0 ] || { echo "benchmarks/wheels.py listed no wheels" >&2; exit 1; }
echo "carrying: ${WHEELS[*]}"
rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_35_x86_64 \
    -d .whl "${WHEELS[@]}"
found=$(ls .whl/*.whl | wc -l)
[ "$found" -eq "${#WHEELS[@]}" ] || { echo "expected ${#WHEELS[@]} wheels, got $found" >&2; ls .whl >&2; exit 1; }
ls -l .whl
du -sh .whl
