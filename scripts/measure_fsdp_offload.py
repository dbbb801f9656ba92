#!/usr/bin/env python3
"""Measures FSDP1 (FULL_SHARD) LoRA training with and without CPU parameter offload on one GPU, to check
`llamafit plan --sharding fsdp --zero 3 --offload cpu`.

The run follows the PEFT FSDP guide's QLoRA recipe (accelerate + Trainer, calibration rows peft-13/peft-14) except
for the 4-bit base, which needs bitsandbytes: a bf16 base of Llama-2-70B's layer shape with fewer layers, LoRA r 8 on
all linear layers with dropout 0.1 and PEFT's FSDP wrap policy (adapters as units of their own), reentrant activation
checkpointing, bf16 autocast with FSDP MixedPrecision(bf16), BACKWARD_PRE prefetch, limit_all_gathers,
use_orig_params=False, the model materialised unit by unit from the meta device, torch.optim.AdamW, three steps.
Several workers are emulated in one process by PyTorch's fake process group (collectives do nothing; every buffer
is allocated as with real ranks), so the numbers are rank 0's.

  python3 scripts/measure_fsdp_offload.py --out results.jsonl [--layers 12] [--workers 2] [--snapshots F]
Each line: case, allocated and reserved peaks, and the `llamafit plan` flags (with --model pointing at the config
it writes next to --out).
"""
import argparse
import contextlib
import gc
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure_hf_memory import PRESETS, each_in_own_process, peak_breakdown  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--snapshots")
    p.add_argument("--offload", choices=["none", "cpu", "both"], default="both",
                   help="both runs each case in a process of its own, so that one case's memory cannot leak into the next")
    a = p.parse_args()
    if a.offload == "both":
        each_in_own_process(__file__, a.out, "--offload", ["none", "cpu"],
                            ["--layers", str(a.layers), "--workers", str(a.workers), "--batch", str(a.batch), "--seq", str(a.seq),
                             "--steps", str(a.steps)] + (["--snapshots", a.snapshots] if a.snapshots else []))
        return

    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=a.workers)
    torch.cuda.set_device(0)
    from torch.distributed.fsdp import (BackwardPrefetch, CPUOffload, FullyShardedDataParallel as FSDP, MixedPrecision,
                                        ShardingStrategy)
    from transformers import AutoConfig, AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model
    from peft.utils.other import fsdp_auto_wrap_policy

    with open(os.path.join(PRESETS, "llama-2-70b.json")) as fh:
        cfg = json.load(fh)
    cfg["num_hidden_layers"] = a.layers
    config_path = os.path.join(os.path.dirname(os.path.abspath(a.out)), f"llama-2-70b-{a.layers}layers.json")
    with open(config_path, "w") as fh:
        json.dump(cfg, fh, indent=2)

    results = []
    for offload in ([a.offload == "cpu"]):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        trace = a.snapshots is not None
        if trace:
            torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")
        c = dict(cfg)
        config = AutoConfig.for_model(c.pop("model_type"), **c)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="sdpa")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.1, task_type="CAUSAL_LM"))

        def materialise(m):
            m.to_empty(device=torch.device("cuda"), recurse=False)
            with torch.no_grad():
                for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                    if t.is_floating_point():
                        t.normal_(0, 0.02)

        model = FSDP(model, auto_wrap_policy=fsdp_auto_wrap_policy(model), sharding_strategy=ShardingStrategy.FULL_SHARD,
                     cpu_offload=CPUOffload(offload_params=offload),
                     mixed_precision=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16, buffer_dtype=torch.bfloat16),
                     backward_prefetch=BackwardPrefetch.BACKWARD_PRE, forward_prefetch=False, limit_all_gathers=True,
                     use_orig_params=False, device_id=torch.cuda.current_device(), param_init_fn=materialise, sync_module_states=False)
        after_wrap = dict(allocated=torch.cuda.memory_allocated(), reserved=torch.cuda.memory_reserved())
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        ids = torch.randint(0, config.vocab_size, (a.steps, a.batch, a.seq), generator=torch.Generator().manual_seed(0))
        torch.cuda.reset_peak_memory_stats()
        start = time.time()
        for s in range(a.steps):
            x = ids[s].cuda()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=x, labels=x).loss  # the Trainer keeps only the loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            del loss
        torch.cuda.synchronize()
        row = dict(case=f"fsdp1-lora-{'offload' if offload else 'nooffload'}", layers=a.layers, workers=a.workers, batch=a.batch,
                   seq=a.seq, after_wrap=after_wrap, max_allocated_bytes=torch.cuda.max_memory_allocated(),
                   max_reserved_bytes=torch.cuda.max_memory_reserved(), seconds=round(time.time() - start, 2),
                   phase_note="peaks are over the training steps only (reset after wrapping)",
                   plan_flags=" ".join(["--model", os.path.basename(config_path), "--device", "h200", "--runtime", "pytorch", "--stack", "hf",
                                        "--method", "lora", "--lora-r", "8", "--lora-targets", "all-linear", "--lora-dropout", "0.1",
                                        "--precision", "bf16", "--gradient-checkpointing", "--batch-size", str(a.batch), "--seq-len", str(a.seq),
                                        "--zero", "3", "--workers", str(a.workers), "--sharding", "fsdp", "--offload", "cpu" if offload else "none",
                                        "--optimizer-impl", "foreach"]))
        print(json.dumps(row), flush=True)
        results.append(row)
        if trace:
            text = peak_breakdown(torch.cuda.memory._snapshot(), top=20)
            torch.cuda.memory._record_memory_history(enabled=None)
            with open(a.snapshots, "a") as sf:
                sf.write(f"== {row['case']}\n{text}\n")
        del model, opt
        gc.collect()
        torch.cuda.empty_cache()
    with open(a.out, "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
