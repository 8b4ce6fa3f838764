#!/usr/bin/env bash
# Run HERE, not on the GPU machine: downloads into .whl/ exactly the wheels benchmarks/gpu.sh installs
# there (the lent H200 has torch 2.11, transformers, accelerate, safetensors, huggingface_hub and
# Pillow, but no diffusers and no package registry). Pure-Python wheels, for its Python 3.12.
# .whl/ is git-ignored; the device call carries it: carry [".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS=(
    "diffusers==0.42.1"          # what the stock numbers in issue 10 were measured with
    "importlib_metadata==8.7.0"  # diffusers needs it; not in the machine's image (zipp is)
)
rm -rf .whl
mkdir -p .whl
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
