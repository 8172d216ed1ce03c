#!/usr/bin/env bash
# Create .venv and install dino-mx into it (offline-safe: only package registries are used).
#   scripts/setup.sh        runtime install
#   scripts/setup.sh dev    plus pytest and ruff
# torch/torchvision are pinned to the releases the project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
extra=""
if [ "${1:-}" = "dev" ]; then extra="[dev]"; fi
.venv/bin/python -m pip install --quiet -e ".${extra}"
echo "dino-mx installed in $(pwd)/.venv"
