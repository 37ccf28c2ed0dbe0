#!/usr/bin/env bash
# The GPU section of issue 5, as one script for one run on a lent GPU (device tool: 15 minutes in
# all, start-up included). bf16, 224², vitkit against timm on the same weights: inference and
# training throughput, eager then torch.compile, and the fraction of the card's bf16 matmul rate
# measured in the same rounds (the "% of matmul peak" column: model FLOP utilisation).
# Steps run in order of importance, each under its own time limit, so a slow compile cannot eat
# the rest. Writes $OUT/gpu_<step>.json, $OUT/gpu_tables.md (every step's table), the card's
# nvidia-smi line and a preflight log (versions; vitkit vs timm logits on the device); $OUT
# defaults to benchmarks/results.
#
# The device machine has PyTorch, torchvision and timm but not vitkit: the checkout's src/ goes on
# PYTHONPATH (no install, nothing to fetch there).
#   device run:  bash benchmarks/gpu.sh            (timeout_s ~540; then copy $OUT into the repo)
#   dry run of the plumbing on a CPU (minutes):
#     DEVICE=cpu DTYPE=float32 BATCH=1 ROUNDS=1 WARMUP=0 STEPS="inference_eager train_eager" bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$(command -v python3 || command -v python)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
BATCH=${BATCH:-64}
ROUNDS=${ROUNDS:-10}
WARMUP=${WARMUP:-3}
STEP_LIMIT=${STEP_LIMIT:-120}  # 4 steps + preflight stay under the 600 s a device command may run
MODELS=${MODELS:-vit_base_patch16_224,swin_tiny_patch4_window7_224}
STEPS=${STEPS:-"inference_eager train_eager inference_compiled train_compiled"}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv > "$OUT/gpu_card.csv" 2>&1
echo "== preflight $(date -Is)"
timeout 60 "$PY" - "$DEVICE" <<'PYEOF' 2>&1 | tee "$OUT/gpu_preflight.log"
import sys, torch, timm, vitkit
from vitkit.benchmark.peers import build_peer
dev = sys.argv[1]
print("torch", torch.__version__, "timm", timm.__version__, "vitkit", vitkit.__file__,
      "device", torch.cuda.get_device_name() if dev == "cuda" else dev)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
for name in ("vit_base_patch16_224", "swin_tiny_patch4_window7_224"):
    torch.manual_seed(0)
    ours = vitkit.create_model(name).eval().to(dev)
    peer = build_peer("timm", ours).eval().to(dev)
    x = torch.randn(2, 3, 224, 224, device=dev)
    with torch.inference_mode():
        a, b = ours(x), peer(x)
    print(name, "fp32 max |logit difference| vitkit vs timm on", dev, f"{(a - b).abs().max().item():.2e}")
PYEOF
# The device tool brings back at most 8 files: one JSON per step, the tables appended to one file.
TABLES="$OUT/gpu_tables.md"; MD=$(mktemp -d)
bench() { local name=$1; shift; echo "== $name $(date -Is)"
          timeout "$STEP_LIMIT" "$PY" -m vitkit.cli bench --device "$DEVICE" --dtype "$DTYPE" --models "$MODELS" \
              --impls vitkit,timm --batch-size "$BATCH" --rounds "$ROUNDS" --warmup "$WARMUP" "$@" \
              --json "$OUT/gpu_$name.json" --markdown "$MD/$name.md" || echo "!! $name failed or timed out ($?)"
          { echo "## $name"; echo; cat "$MD/$name.md" 2>/dev/null || echo "(no table: failed or timed out)"; echo; } >> "$TABLES"; }
for step in $STEPS; do case $step in
  inference_eager)    bench inference_eager --memory ;;
  train_eager)        bench train_eager --mode train --memory ;;
  inference_compiled) bench inference_compiled --compile ;;
  train_compiled)     bench train_compiled --mode train --compile ;;
  *) echo "unknown step $step" >&2 ;;
esac; done
echo "== done $(date -Is)"
