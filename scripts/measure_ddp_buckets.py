#!/usr/bin/env python3
"""Measures full fine-tuning with and without DistributedDataParallel on one GPU, to check the planner's DDP
gradient buckets (`llamafit plan --sharding ddp --workers N`).

A randomly initialised model of a llamafit preset trains three steps in fp32 with fused AdamW, once as a plain module
and once wrapped in torch DistributedDataParallel (default bucket settings, gradient_as_bucket_view=False) over
workers emulated in one process by PyTorch's fake process group (the all-reduce does nothing; every buffer is
allocated as on a real rank). Each case runs in a process of its own.

  python3 scripts/measure_ddp_buckets.py --out results.jsonl [--preset llama-3.2-1b] [--batch 2] [--seq 1024]
"""
import argparse
import gc
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure_hf_memory import PRESETS, each_in_own_process  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="llama-3.2-1b")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--case", choices=["plain", "ddp", "both"], default="both")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shape: checks the script, measures nothing")
    a = p.parse_args()
    if a.case == "both":
        each_in_own_process(__file__, a.out, "--case", ["plain", "ddp"],
                            ["--preset", a.preset, "--workers", str(a.workers), "--batch", str(a.batch), "--seq", str(a.seq),
                             "--steps", str(a.steps)] + (["--dry-run"] if a.dry_run else []))
        return

    from transformers import AutoConfig, AutoModelForCausalLM
    cuda = torch.cuda.is_available() and not a.dry_run
    device = torch.device("cuda" if cuda else "cpu")
    with open(os.path.join(PRESETS, a.preset + ".json")) as fh:
        cfg = json.load(fh)
    if a.dry_run:
        cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   vocab_size=512, head_dim=16)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    seq = 32 if a.dry_run else a.seq
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    if a.case == "ddp":
        import torch.distributed as dist
        from torch.testing._internal.distributed.fake_pg import FakeStore
        dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=a.workers)
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0] if cuda else None)

        def local_hook(state, bucket):
            # The fake group's all-reduce yields no tensor; a real one reduces the bucket in place. Either way the
            # Reducer's bucket buffers are what this measures, so hand the bucket back unchanged.
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut

        model.register_comm_hook(None, local_hook)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True) if cuda else torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, config.vocab_size, (a.steps, a.batch, seq), generator=torch.Generator().manual_seed(0))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.time()
    for s in range(a.steps):
        x = ids[s].to(device)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        del loss
    row = dict(case=f"{a.preset}-full-fp32-{a.case}", workers=a.workers if a.case == "ddp" else 1, batch=a.batch, seq=seq,
               seconds=round(time.time() - start, 2),
               plan_flags=" ".join(["--model", a.preset, "--device", "h200", "--runtime", "pytorch", "--stack", "hf", "--method", "full",
                                    "--precision", "fp32", "--attention", "flash", "--batch-size", str(a.batch), "--seq-len", str(a.seq)]
                                   + (["--sharding", "ddp", "--workers", str(a.workers)] if a.case == "ddp" else [])))
    if cuda:
        torch.cuda.synchronize()
        row.update(max_allocated_bytes=torch.cuda.max_memory_allocated(), max_reserved_bytes=torch.cuda.max_memory_reserved())
    print(json.dumps(row), flush=True)
    with open(a.out, "w") as fh:
        fh.write(json.dumps(row) + "\n")
    del model, opt
    gc.collect()


if __name__ == "__main__":
    main()
