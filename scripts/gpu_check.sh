#!/usr/bin/env bash
# GPU check of dino-mx (issue 17, requirement 7): one command on a machine with CUDA GPUs.
#
#   scripts/gpu_check.sh                          # from the repository root or anywhere
#   scripts/gpu_check.sh augment.backend=batched  # extra Hydra overrides go to every leg
#
# ViT-S/16 at 224 px, random init (model=vit_small with patch 16 / 224 px; 2 x 224 + local
# 96 px crops), bf16, on the bundled PneumoniaMNIST (28 px, upscaled by the crops), through the
# real trainer (scripts/gpu_check.py). GPU_CHECK_STEPS steps per leg (default 40, the first 8
# untimed). Legs:
#   1. one GPU: adapter full, LoRA r=8 (query+value) and freeze-6: step time and peak memory
#      against full (the paper's Table 10: LoRA -35-40 % time and -35-36 % memory, freeze-6
#      -24-36 % time);
#   2. every GPU present (nvidia-smi -L), DDP (configs/accelerate/ddp.yaml), adapter full;
#   3. every GPU present, FSDP2 (configs/accelerate/fsdp.yaml: dino_mx/engine/fsdp.py shards
#      the student and its EMA teacher per block), adapter full.
#   With one GPU legs 2 and 3 are skipped (one process has nothing to shard).
# Each leg prints images/s, peak CUDA memory (max allocated, largest process) and the share of
# step time spent waiting for the data loader. The table goes to stdout and, with the JSON
# lines, to GPU_CHECK_OUT (default runs/gpu_check/). Expect 2-5 minutes on a recent GPU.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch ($PYTHON); run this on a GPU machine" >&2
    exit 1
fi
GPUS=$(nvidia-smi -L | wc -l)
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
STEPS=${GPU_CHECK_STEPS:-40}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
export HF_HUB_OFFLINE=1  # random init: nothing to download

leg() {  # leg NAME ADAPTER [launcher...] -- extra overrides
    local name=$1 adapter=$2
    shift 2
    local run="$OUT/$name-$adapter"
    rm -rf "$run"
    echo "== $name $adapter" >&2
    timeout 900 "$@" scripts/gpu_check.py --leg "$name" --adapter "$adapter" --steps "$STEPS" \
        --run-dir "$run" --json "$RESULTS" "${EXTRA[@]}"
}
EXTRA=("$@")

for adapter in full lora freeze; do
    leg single "$adapter" "$PYTHON"
done
if [ "$GPUS" -gt 1 ]; then
    launch=("$PYTHON" -m accelerate.commands.launch --num_processes "$GPUS")
    leg "ddp-$GPUS" full "${launch[@]}" --config_file configs/accelerate/ddp.yaml
    leg "fsdp-$GPUS" full "${launch[@]}" --config_file configs/accelerate/fsdp.yaml
else
    echo "gpu_check: one GPU: the DDP / FSDP legs need two or more" >&2
fi
"$PYTHON" scripts/gpu_check.py --table "$RESULTS" | tee "$OUT/table.md"
