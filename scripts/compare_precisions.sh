#!/usr/bin/env bash
# Issue 15's training comparison: fine-tune tinystories-656k on Persuasion for 200 steps in each precision and
# evaluate on a slice of another novel (Northanger Abbey, never trained on), then print the eval losses against fp32's.
#
#   scripts/compare_precisions.sh [OUT_DIR] [PRECISIONS...]     (default: /tmp/llamafit-precisions fp32 bf16 fp16)
#
# Every run uses the same seed, data order, batch (8 × 128 tokens), learning rate and schedule; only --precision differs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${LLAMAFIT_SHARED:-$ROOT/../shared}"
OUT="${1:-/tmp/llamafit-precisions}"
shift || true
if [ $# -gt 0 ]; then PRECISIONS=("$@"); else PRECISIONS=(fp32 bf16 fp16); fi
mkdir -p "$OUT"
# The held-out slice: 64 KiB from the middle of Northanger Abbey (a different novel by the same author).
EVAL="$OUT/northanger_slice.txt"
head -c 265536 "$SHARED/datasets/text/austen_northangerabbey.txt" | tail -c 65536 > "$EVAL"
for p in "${PRECISIONS[@]}"; do
  rm -rf "$OUT/$p"
  "$ROOT/llamafit" train --model "$SHARED/models/tinystories-656k" --data "$SHARED/datasets/text/austen_persuasion.txt" \
    --eval-data "$EVAL" --output "$OUT/$p" --steps 200 --batch-size 8 --seq-len 128 --lr 1e-3 --warmup 20 \
    --eval-every 50 --seed 7 --precision "$p" > "$OUT/$p.log" 2>&1
done
python3 - "$OUT" "${PRECISIONS[@]}" <<'PY'
import json, sys
out, precisions = sys.argv[1], sys.argv[2:]
def evals(p):
    rows = [json.loads(l) for l in open(f"{out}/{p}/metrics.jsonl") if '"step"' in l]
    return [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r], rows[-1]["loss"]
ref = evals("fp32")[0][-1][1] if "fp32" in precisions else None
print(f"{'precision':10s} {'eval@50':>8s} {'eval@100':>8s} {'eval@150':>8s} {'eval@200':>8s} {'train loss':>10s} {'vs fp32':>8s}")
for p in precisions:
    e, last = evals(p)
    rel = f"{(e[-1][1] / ref - 1) * 100:+.3f}%" if ref else ""
    print(f"{p:10s} " + " ".join(f"{v:8.4f}" for _, v in e) + f" {last:10.4f} {rel:>8s}")
PY
