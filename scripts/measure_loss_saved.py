#!/usr/bin/env python3
"""Measures what one chunk of a cross-entropy over the vocabulary saves for backward, eager and under torch.compile, to
check the planner's chunked-loss terms (PytorchProfile, --loss chunked with and without --compile).

The chunk is computed as torchtune's CEWithChunkedOutputLoss computes each of its chunks,
F.cross_entropy(logits.float(), labels, reduction="sum"), on model-dtype (bf16) logits, under
torch.autograd.graph.saved_tensors_hooks. For each case it prints the saved bytes per logit, split into the logits
themselves (the input) and everything else, and the per-row tensors. Runs on the CPU: what a compiled graph saves is
decided by torch.compile's partitioner, the same on every device.

  python3 scripts/measure_loss_saved.py --out loss.jsonl [--rows 512] [--vocab 8000]
"""
import argparse
import json

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--vocab", type=int, default=8000)
    a = p.parse_args()

    def ce(logits, labels):
        return F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")

    rows = []
    for case, f in [("eager", ce), ("compiled", torch.compile(ce))]:
        torch.manual_seed(0)
        labels = torch.randint(0, a.vocab, (a.rows,))
        warm = torch.randn(a.rows, a.vocab, dtype=torch.bfloat16, requires_grad=True)
        f(warm, labels).backward()  # compile (and warm up) before measuring
        x = torch.randn(a.rows, a.vocab, dtype=torch.bfloat16, requires_grad=True)
        kept = {}

        def pack(t):
            s = t.untyped_storage()
            kept[s.data_ptr()] = (s.nbytes(), s.data_ptr() == x.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            f(x, labels)
        logits = a.rows * a.vocab
        row = dict(case=case, rows=a.rows, vocab=a.vocab, dtype="bf16",
                   input_saved_bytes_per_logit=sum(n for n, inp in kept.values() if inp) / logits,
                   other_saved_bytes_per_logit=sum(n for n, inp in kept.values() if not inp and n >= logits) / logits,
                   other_saved_bytes_per_row=sum(n for n, inp in kept.values() if not inp and n < logits) / a.rows,
                   torch=torch.__version__)
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(a.out, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
