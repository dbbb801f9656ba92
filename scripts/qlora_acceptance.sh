#!/usr/bin/env bash
# QLoRA acceptance (issue 16): LoRA r 8 with gradient checkpointing on identity.json, once on a bf16 base (bf16 mixed
# precision) and once on an NF4 base (--method qlora, double-quantised, bf16 compute). Each run's eval loss is taken on
# the same held-out 10% before training (one step at lr 1e-12) and after 100 steps; QLoRA's drop must be within 10% of
# the bf16 run's. Usage: scripts/qlora_acceptance.sh [WORKDIR]  (about 1 minute on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$ROOT/../shared"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
run() { # NAME STEPS LR FLAGS... -> prints the final eval loss
  local name=$1 steps=$2 lr=$3; shift 3
  rm -rf "$WORK/$name"
  "$ROOT/llamafit" train --model "$SHARED/models/tinystories-656k" --data "$SHARED/datasets/instruct/identity.json" \
    --output "$WORK/$name" --steps "$steps" --lr "$lr" --eval-split 0.1 --seed 7 --lora-r 8 --gradient-checkpointing \
    --precision bf16 "$@" > "$WORK/$name.log" 2>&1
  sed -n 's/.*eval loss \([0-9.]*\)$/\1/p' "$WORK/$name.log"
}
bf16_before=$(run bf16-base 1 1e-12)
bf16_after=$(run bf16 100 1e-3)
nf4_before=$(run qlora-base 1 1e-12 --method qlora)
nf4_after=$(run qlora 100 1e-3 --method qlora)
python3 - "$bf16_before" "$bf16_after" "$nf4_before" "$nf4_after" <<'PY'
import sys
b0, b1, q0, q1 = map(float, sys.argv[1:])
drop_b, drop_q = b0 - b1, q0 - q1
print(f"bf16 LoRA: eval loss {b0:.4f} -> {b1:.4f} (drop {drop_b:.4f})")
print(f"QLoRA:     eval loss {q0:.4f} -> {q1:.4f} (drop {drop_q:.4f})")
print(f"QLoRA's drop / bf16 LoRA's: {drop_q / drop_b:.3f} (at least 0.9 asked)")
sys.exit(0 if drop_q >= 0.9 * drop_b else 1)
PY
