#!/usr/bin/env bash
# The GPU section of issue 5, as one script for one run on a lent GPU (device tool: 15 minutes in
# all, start-up included). bf16, 224², vitkit against timm on the same weights: inference and
# training throughput, eager then torch.compile, and the fraction of the card's bf16 matmul rate
# measured in the same rounds (the "% of matmul peak" column: model FLOP utilisation).
# Steps run in order of importance, each under its own time limit, so a slow compile cannot eat
# the rest. Writes $OUT/gpu_<step>.{json,md} ($OUT defaults to benchmarks/results) and nvidia-smi.
#   device run:  bash benchmarks/gpu.sh            (timeout_s ~540; then copy $OUT into the repo)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-benchmarks/results}
BATCH=${BATCH:-64}
ROUNDS=${ROUNDS:-10}
STEP_LIMIT=${STEP_LIMIT:-150}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv > "$OUT/gpu_card.csv" 2>&1
MODELS=vit_base_patch16_224,swin_tiny_patch4_window7_224
bench() { local name=$1; shift; echo "== $name $(date -Is)"
          timeout "$STEP_LIMIT" $PY -m vitkit.cli bench --device cuda --dtype bfloat16 --models "$MODELS" \
              --impls vitkit,timm --batch-size "$BATCH" --rounds "$ROUNDS" --warmup 3 "$@" \
              --json "$OUT/gpu_$name.json" --markdown "$OUT/gpu_$name.md" || echo "!! $name failed or timed out ($?)"; }
bench inference_eager --memory
bench train_eager --mode train --memory
bench inference_compiled --compile
bench train_compiled --mode train --compile
echo "== done $(date -Is)"
