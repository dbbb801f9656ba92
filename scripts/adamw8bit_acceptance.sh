#!/usr/bin/env bash
# 8-bit AdamW acceptance (issue 16): 200 full fine-tuning steps of tinystories-656k on Persuasion with adamw and
# adamw8bit, then the eval loss of each on a 60,000-byte slice of Emma (a novel neither saw). adamw8bit must be
# within 2% of adamw. Usage: scripts/adamw8bit_acceptance.sh [WORKDIR]  (about 3 minutes on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$ROOT/../shared"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
head -c 60000 "$SHARED/datasets/text/austen_emma.txt" > "$WORK/emma_slice.txt"
declare -A loss
for opt in adamw adamw8bit; do
  rm -rf "$WORK/$opt"
  "$ROOT/llamafit" train --model "$SHARED/models/tinystories-656k" --data "$SHARED/datasets/text/austen_persuasion.txt" \
    --output "$WORK/$opt" --steps 200 --batch-size 8 --seq-len 128 --lr 2e-3 --warmup 10 --schedule cosine --seed 1 \
    --optimizer "$opt" > "$WORK/$opt.log" 2>&1
  loss[$opt]=$("$ROOT/llamafit" eval --model "$WORK/$opt/final" --data "$WORK/emma_slice.txt" --seq-len 128 --json \
    | sed -n 's/^ *"loss" : \([0-9.eE+-]*\),*$/\1/p')
  echo "$opt: eval loss ${loss[$opt]}; optimizer bytes: $(grep -E '^  optimizer ' "$WORK/$opt.log")"
done
python3 - "${loss[adamw]}" "${loss[adamw8bit]}" <<'PY'
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
rel = (b - a) / a
print(f"adamw8bit vs adamw: {rel:+.3%} (limit 2%)")
sys.exit(0 if abs(rel) <= 0.02 else 1)
PY
