#!/usr/bin/env bash
# The tables of benchmarks/RESULTS.md (issue 5). Long: ~1-2 hours on a 2-core CPU shared with other
# jobs. Run it in the background and poll:
#   nohup benchmarks/run_all.sh > benchmarks/results/run_all.log 2>&1 &
# Each step writes benchmarks/results/<name>.json (every timing) and <name>.md (the table).
# THREADS (default 2) and ROUNDS (default 10) can be set in the environment; STEPS picks steps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-10}
STEPS=${STEPS:-"inference train latency threads checkpointing ablation compile"}
OUT=benchmarks/results
mkdir -p "$OUT"
bench() { local name=$1; shift; echo "== $name $(date -Is) load $(cut -d' ' -f1-3 /proc/loadavg)";
          $PY -m vitkit.cli bench "$@" --json "$OUT/$name.json" --markdown "$OUT/$name.md"; }

for step in $STEPS; do case $step in
inference)  # targets: Swin-T ≥ 1.3× timm, ViT-B/16 ≥ 1.1× timm, ahead of torchvision and transformers
  bench inference_b8 --models vit_base_patch16_224,swin_tiny_patch4_window7_224 --batch-size 8 \
        --threads "$THREADS" --rounds "$ROUNDS" --memory ;;
train)      # targets: ViT-S/16 and Swin-T training step ≥ 1.1× timm
  bench train_b16 --mode train --models vit_small_patch16_224,swin_tiny_patch4_window7_224 --batch-size 16 \
        --threads "$THREADS" --rounds "$ROUNDS" ;;
latency)
  bench latency_b1 --models vit_base_patch16_224,swin_tiny_patch4_window7_224 --batch-size 1 \
        --threads "$THREADS" --rounds $((ROUNDS * 3)) ;;
threads)    # the thread setting on a small shared CPU
  for t in 1 2; do
    bench threads_$t --models vit_base_patch16_224,swin_tiny_patch4_window7_224 --impls vitkit,timm \
          --batch-size 8 --threads $t --rounds "$ROUNDS"
  done
  bench threads_${THREADS}_malloc --models vit_base_patch16_224,swin_tiny_patch4_window7_224 --impls vitkit,timm \
        --batch-size 8 --threads "$THREADS" --rounds "$ROUNDS" --malloc-tune ;;
checkpointing)  # activation memory saved by per-block recomputation, batch 32
  for ck in "" "--grad-checkpointing"; do
    bench "ckpt_b32${ck:+_on}" --mode train --models vit_base_patch16_224,swin_tiny_patch4_window7_224 \
          --impls vitkit,timm --batch-size 32 --threads "$THREADS" --rounds 2 --warmup 0 --memory --no-peak $ck
  done ;;
ablation)   # each speed change before/after (see benchmarks/ablation.py): 54b13ae = core models before
            # any speed work, 772fc98 = before the class-token tail and chunked window attention
  $PY benchmarks/ablation.py --model swin_tiny_patch4_window7_224 --threads "$THREADS" --rounds "$ROUNDS" \
      --json "$OUT/ablation_swin.json" timm rev:54b13ae rev:772fc98 head | tee "$OUT/ablation_swin.md"
  $PY benchmarks/ablation.py --model vit_base_patch16_224 --threads "$THREADS" --rounds "$ROUNDS" \
      --json "$OUT/ablation_vit.json" timm rev:54b13ae rev:772fc98 head | tee "$OUT/ablation_vit.md"
  $PY benchmarks/ablation.py --model vit_small_patch16_224 --mode train --batch-size 16 --threads "$THREADS" \
      --rounds "$ROUNDS" --json "$OUT/ablation_vit_train.json" timm rev:772fc98 head | tee "$OUT/ablation_vit_train.md" ;;
compile)    # torch.compile (inductor) for vitkit and timm
  bench compile_b8 --models vit_base_patch16_224,swin_tiny_patch4_window7_224 --impls vitkit,timm \
        --batch-size 8 --threads "$THREADS" --rounds "$ROUNDS" --compile --no-peak ;;
*) echo "unknown step $step" >&2; exit 2 ;;
esac; done
echo "== done $(date -Is)"
