#!/usr/bin/env python3
"""Measures the peak CUDA memory of Hugging Face Trainer runs, to check `llamafit plan --runtime pytorch --stack hf`.

Each case builds a randomly initialised model from one of llamafit's model presets (the preset JSON is a
config.json), optionally wraps it in a PEFT LoRA adapter, and trains it for a few steps with transformers'
Trainer on random tokens of a fixed length (labels = inputs). It records, per case:
  max_memory_allocated / max_memory_reserved over the run (torch.cuda counters, reset before the case),
  the allocated peak of each phase (forward, backward, optimizer step) over the steps,
  nvidia-smi's "used" at the end of the case (NVML; reserved + the CUDA context and kernel images).
The cases carry the `llamafit plan` flags that express them, so the planner can be compared row by row
(src/test/resources/planner/measured_hf_h200.csv, MeasuredTest).

Run on a CUDA machine with torch, transformers and peft:
  python3 scripts/measure_hf_memory.py --out results.csv [--set a] [--set b] [--only r01,r02] [--steps 3] [--snapshots F]
--dry-run runs every case on the CPU with a tiny shape (checks the script, measures nothing).
"""
import argparse
import contextlib
import csv
import gc
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = os.path.join(ROOT, "src", "main", "resources", "dev", "llamafit", "presets", "models")

# id, preset, method, model dtype as loaded, Trainer bf16 (autocast), checkpointing, batch, seq, attention,
# LoRA rank, LoRA targets, LoRA dropout, Trainer optim
QV = ["q_proj", "v_proj"]
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = [
    dict(id="r01", preset="llama-3.2-1b", method="full", load="fp32", amp=False, ckpt=False, b=4, t=1024, attn="sdpa"),
    dict(id="r02", preset="llama-3.2-1b", method="full", load="fp32", amp=True, ckpt=False, b=4, t=1024, attn="sdpa"),
    dict(id="r03", preset="llama-3.2-1b", method="full", load="fp32", amp=True, ckpt=True, b=8, t=2048, attn="sdpa"),
    dict(id="r04", preset="llama-3.2-1b", method="full", load="bf16", amp=True, ckpt=False, b=4, t=1024, attn="sdpa"),
    dict(id="r05", preset="llama-3.2-1b", method="full", load="fp32", amp=True, ckpt=False, b=2, t=2048, attn="eager"),
    dict(id="r06", preset="llama-3.2-1b", method="lora", load="bf16", amp=True, ckpt=False, b=8, t=1024, attn="sdpa", r=16, targets=QV),
    dict(id="r07", preset="llama-3.2-1b", method="lora", load="bf16", amp=True, ckpt=True, b=8, t=2048, attn="sdpa", r=16, targets=ALL),
    dict(id="r08", preset="llama-3.2-1b", method="lora", load="bf16", amp=True, ckpt=False, b=4, t=2048, attn="sdpa", r=16, targets=ALL, dropout=0.05),
    dict(id="r09", preset="llama-3.2-1b", method="lora", load="fp32", amp=False, ckpt=False, b=4, t=1024, attn="sdpa", r=8, targets=QV),
    dict(id="r10", preset="llama-3.2-1b", method="lora", load="fp32", amp=True, ckpt=False, b=4, t=1024, attn="sdpa", r=16, targets=QV),
    dict(id="r11", preset="llama-3.2-1b", method="full", load="fp32", amp=False, ckpt=False, b=4, t=1024, attn="sdpa", optim="adamw_torch"),
    dict(id="r12", preset="llama-3.1-8b", method="lora", load="bf16", amp=True, ckpt=True, b=4, t=2048, attn="sdpa", r=16, targets=QV),
    dict(id="r13", preset="llama-3.1-8b", method="full", load="bf16", amp=True, ckpt=True, b=2, t=2048, attn="sdpa"),
    dict(id="r14", preset="llama-3.1-8b", method="lora", load="bf16", amp=True, ckpt=False, b=2, t=2048, attn="sdpa", r=16, targets=ALL),
    dict(id="r15", preset="smollm-360m", method="full", load="fp32", amp=False, ckpt=False, b=8, t=2048, attn="sdpa"),
    dict(id="r16", preset="smollm-360m", method="full", load="fp32", amp=True, ckpt=False, b=4, t=1024, attn="eager"),
    dict(id="r17", preset="qwen2.5-0.5b", method="full", load="fp32", amp=True, ckpt=True, b=8, t=2048, attn="sdpa"),
    dict(id="r18", preset="qwen2.5-0.5b", method="lora", load="bf16", amp=True, ckpt=False, b=8, t=1024, attn="sdpa", r=16, targets=ALL),
    dict(id="r19", preset="llama-3.2-3b", method="full", load="bf16", amp=True, ckpt=True, b=4, t=2048, attn="sdpa"),
    dict(id="r20", preset="llama-3.2-3b", method="lora", load="bf16", amp=True, ckpt=True, b=16, t=2048, attn="sdpa", r=32, targets=ALL),
    # generation (model.generate, greedy, exactly `new` tokens after a `t`-token prompt)
    dict(id="i01", preset="llama-3.1-8b", method="generate", load="bf16", b=8, t=1024, new=128, attn="sdpa"),
    dict(id="i02", preset="llama-3.2-1b", method="generate", load="bf16", b=32, t=1024, new=128, attn="sdpa"),
    dict(id="i03", preset="qwen2.5-0.5b", method="generate", load="bf16", b=16, t=2048, new=64, attn="sdpa"),
    dict(id="i04", preset="llama-3.2-1b", method="generate", load="fp32", b=8, t=512, new=256, attn="eager"),
    dict(id="i05", preset="llama-3.2-3b", method="generate", load="bf16", b=4, t=4096, new=256, attn="sdpa"),
]
# Set B: measured after the profile was corrected against set A, on shapes and settings set A does not have. loop="manual"
# is a hand-written loop that keeps the model output through backward (out = model(...); out.loss.backward()).
CASES_B = [
    dict(id="s01", preset="mistral-7b", method="lora", load="bf16", amp=True, ckpt=False, b=4, t=2048, attn="sdpa", r=8, targets=QV),
    dict(id="s02", preset="mistral-7b", method="full", load="bf16", amp=True, ckpt=True, b=4, t=1024, attn="sdpa"),
    dict(id="s03", preset="smollm-1.7b", method="full", load="fp32", amp=False, ckpt=False, b=4, t=1024, attn="sdpa"),
    dict(id="s04", preset="smollm-1.7b", method="full", load="fp32", amp=True, ckpt=False, b=2, t=2048, attn="eager"),
    dict(id="s05", preset="tinyllama-1.1b", method="full", load="fp32", amp=True, ckpt=True, b=16, t=2048, attn="sdpa"),
    dict(id="s06", preset="tinyllama-1.1b", method="lora", load="fp32", amp=False, ckpt=False, b=8, t=1024, attn="sdpa", r=16, targets=ALL, dropout=0.1),
    dict(id="s07", preset="qwen2.5-7b", method="lora", load="bf16", amp=True, ckpt=True, b=4, t=4096, attn="sdpa", r=16, targets=ALL),
    dict(id="s08", preset="llama-2-7b", method="lora", load="fp32", amp=True, ckpt=False, b=4, t=2048, attn="sdpa", r=8, targets=QV),
    dict(id="s09", preset="smollm-360m", method="full", load="fp32", amp=False, ckpt=False, b=1, t=256, attn="sdpa", optim="adamw_torch"),
    dict(id="s10", preset="smollm-135m", method="full", load="bf16", amp=True, ckpt=False, b=4, t=2048, attn="eager"),
    dict(id="s11", preset="llama-3.2-1b", method="lora", load="bf16", amp=True, ckpt=True, b=8, t=2048, attn="sdpa", r=16, targets=ALL, loop="manual"),
    dict(id="s12", preset="qwen2.5-0.5b", method="full", load="bf16", amp=False, ckpt=False, b=4, t=2048, attn="sdpa", loop="manual", optim="adamw_torch"),
    dict(id="s13", preset="llama-3.2-3b", method="full", load="fp32", amp=True, ckpt=True, b=4, t=4096, attn="sdpa"),
    dict(id="j01", preset="mistral-7b", method="generate", load="bf16", b=16, t=2048, new=128, attn="sdpa"),
    dict(id="j02", preset="llama-2-7b", method="generate", load="fp32", b=4, t=1024, new=64, attn="sdpa"),
    dict(id="j03", preset="tinyllama-1.1b", method="generate", load="fp32", b=8, t=2048, new=32, attn="sdpa"),
]
SETS = {"a": CASES, "b": CASES_B}


def plan_flags(c):
    """The `llamafit plan` flags that describe case c (HF Trainer conventions: --stack hf)."""
    f = ["--model", c["preset"], "--device", "h200", "--runtime", "pytorch",
         "--batch-size", str(c["b"]), "--seq-len", str(c["t"]),
         "--attention", "eager" if c["attn"] == "eager" else "flash"]
    if c["method"] == "generate":
        return f + ["--inference", "--max-new-tokens", str(c["new"]), "--precision", "fp32" if c["load"] == "fp32" else "bf16"]
    f += ["--stack", "hf", "--optimizer", "adamw"]
    if c["amp"]:
        # Trainer bf16=True over an fp32 model is autocast (mixed); over a bf16 model every tensor stays bf16.
        precision = "bf16" if c["load"] == "fp32" or c["method"] == "lora" else "bf16-pure"
    else:
        precision = "fp32" if c["load"] == "fp32" else "bf16-pure"
    f += ["--precision", precision]
    if c["method"] == "lora":
        f += ["--method", "lora", "--lora-r", str(c["r"]), "--lora-targets", ",".join(c["targets"])]
        if c.get("dropout", 0) > 0:
            f += ["--lora-dropout", str(c["dropout"])]
        if precision == "bf16" and c["load"] == "fp32":
            f += ["--base-dtype", "fp32"]
    else:
        f += ["--method", "full"]
    if c["ckpt"]:
        f += ["--gradient-checkpointing"]
    if c.get("optim") == "adamw_torch":
        f += ["--optimizer-impl", "foreach"]
    if c.get("loop") == "manual":
        f += ["--keep-outputs"]
    return f


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, t, vocab, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, t), generator=g)

    def __len__(self):
        return self.ids.shape[0]

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Phases:
    """Allocated peak per phase: forward (to the model's return), backward (to the optimizer), step."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.peak = {"forward": 0, "backward": 0, "step": 0}

    def _take(self, phase):
        if self.cuda:
            self.peak[phase] = max(self.peak[phase], torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()

    def forward_start(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def forward_end(self):
        self._take("forward")

    def backward_end(self):
        self._take("backward")

    def step_end(self):
        self._take("step")


def each_in_own_process(script, out, flag, values, argv):
    """Reruns `script` once per value of `flag` (a case), each in a process of its own so that no case's memory leaks
    into the next, with `argv` (this run's arguments minus --out and `flag`); concatenates their JSON lines into `out`."""
    import subprocess
    rows = []
    for v in values:
        part = f"{out}.{v}"
        subprocess.run([sys.executable, os.path.abspath(script), "--out", part, flag, v] + argv, check=True)
        with open(part) as fh:
            rows += fh.readlines()
        os.remove(part)
    with open(out, "w") as fh:
        fh.writelines(rows)


def cuda_peaks(phases):
    """The run's counters. The phase hooks reset the allocated peak; the run's is the largest phase peak (or what came since)."""
    torch.cuda.synchronize()
    return dict(max_allocated_bytes=max(max(phases.peak.values()), torch.cuda.max_memory_allocated()),
                forward_peak_bytes=phases.peak["forward"], backward_peak_bytes=phases.peak["backward"],
                step_peak_bytes=phases.peak["step"], max_reserved_bytes=torch.cuda.max_memory_reserved(),
                reserved_end_bytes=torch.cuda.memory_reserved(), nvml_used_end_bytes=nvml_used())


def nvml_used():
    try:
        import pynvml
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0))
        return pynvml.nvmlDeviceGetMemoryInfo(h).used
    except Exception:
        return -1


def run_case(c, steps, dry, tmp):
    from transformers import AutoConfig, AutoModelForCausalLM, Trainer, TrainingArguments, TrainerCallback

    cuda = torch.cuda.is_available() and not dry
    with open(os.path.join(PRESETS, c["preset"] + ".json")) as fh:
        cfg = json.load(fh)
    if dry:
        cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, head_dim=16)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    dtype = torch.bfloat16 if c["load"] == "bf16" else torch.float32
    t = 64 if dry else c["t"]
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    device = torch.device("cuda" if cuda else "cpu")
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=c["attn"])
    if c["method"] == "generate":
        return generate_case(c, model, config, cuda, dry)
    if c["method"] == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=c["r"], lora_alpha=2 * c["r"], target_modules=c["targets"],
                                                 lora_dropout=c.get("dropout", 0.0), task_type="CAUSAL_LM"))
    loaded = torch.cuda.memory_allocated() if cuda else 0
    phases = Phases(cuda)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.register_forward_pre_hook(lambda m, a: phases.forward_start())
    inner.register_forward_hook(lambda m, a, o: phases.forward_end())

    class PhaseCallback(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            phases.backward_end()

        def on_step_end(self, args, state, control, **kw):
            phases.step_end()

    if c.get("loop") == "manual":
        return manual_case(c, model, config, cuda, dry, steps, t, loaded, phases)
    args = TrainingArguments(
        output_dir=tmp, per_device_train_batch_size=c["b"], max_steps=steps, learning_rate=1e-5,
        bf16=c["amp"] and not dry, gradient_checkpointing=c["ckpt"], optim=c.get("optim", "adamw_torch_fused"),
        report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        remove_unused_columns=False, use_cpu=not cuda, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(c["b"] * steps, t, config.vocab_size, 0),
                      callbacks=[PhaseCallback()])
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    row = dict(id=c["id"], preset=c["preset"], load=c["load"], amp=c["amp"], method=c["method"], ckpt=c["ckpt"],
               batch=c["b"], seq=t, attn=c["attn"], optim=args.optim.value if hasattr(args.optim, "value") else str(args.optim),
               loaded_bytes=loaded, seconds=round(seconds, 2))
    if cuda:
        row.update(cuda_peaks(phases))
    row["plan_flags"] = " ".join(plan_flags(c))
    del trainer, model, inner
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def manual_case(c, model, config, cuda, dry, steps, t, loaded, phases):
    """A hand-written loop: out = model(...); out.loss.backward() with `out` alive; torch.optim.AdamW, fused or foreach."""
    if c["ckpt"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    fused = c.get("optim", "adamw_torch_fused") == "adamw_torch_fused"
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True) if fused and cuda else torch.optim.AdamW(params, lr=1e-5, foreach=True)
    data = Tokens(c["b"] * steps, t, config.vocab_size, 0).ids.to(model.device if hasattr(model, "device") else "cpu")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if c["amp"] and cuda else contextlib.nullcontext()
    start = time.time()
    for i in range(steps):
        ids = data[i * c["b"]:(i + 1) * c["b"]]
        with amp:
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        phases.backward_end()
        opt.step()
        opt.zero_grad(set_to_none=True)
        phases.step_end()
        del out
    seconds = time.time() - start
    row = dict(id=c["id"], preset=c["preset"], load=c["load"], amp=c["amp"], method=c["method"], ckpt=c["ckpt"], batch=c["b"], seq=t,
               attn=c["attn"], optim=("adamw_torch_fused" if fused else "adamw_torch") + " (manual loop)", loaded_bytes=loaded,
               seconds=round(seconds, 2), plan_flags=" ".join(plan_flags(c)))
    if cuda:
        row.update(cuda_peaks(phases))
    del opt, params, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


def sdpa_backends():
    """Which SDPA kernel PyTorch picks for causal training shapes, per dtype, with grouped or plain heads."""
    if not torch.cuda.is_available():
        return {}
    from torch.nn.attention import SDPBackend
    names = {int(getattr(SDPBackend, n)): n for n in ("ERROR", "MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION",
                                                      "OVERRIDEABLE") if hasattr(SDPBackend, n)}
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        for kv in (32, 8):
            q = torch.randn(2, 32, 512, 64, device="cuda", dtype=dtype, requires_grad=True)
            k = torch.randn(2, kv, 512, 64, device="cuda", dtype=dtype, requires_grad=True)
            choice = torch._fused_sdp_choice(q, k, k, None, 0.0, True, enable_gqa=kv != 32)
            out[f"{str(dtype).split('.')[-1]} heads 32 kv {kv}"] = names.get(int(choice), str(choice))
    return out


def generate_case(c, model, config, cuda, dry):
    """Greedy generation of exactly c["new"] tokens for c["b"] random prompts of c["t"] tokens."""
    t, new = (32, 8) if dry else (c["t"], c["new"])
    loaded = torch.cuda.memory_allocated() if cuda else 0
    prompts = torch.randint(0, config.vocab_size, (c["b"], t), generator=torch.Generator().manual_seed(0)).to(model.device)
    model.eval()
    start = time.time()
    out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    seconds = time.time() - start
    row = dict(id=c["id"], preset=c["preset"], load=c["load"], amp=False, method="generate", ckpt=False, batch=c["b"], seq=t,
               attn=c["attn"], optim="", loaded_bytes=loaded, seconds=round(seconds, 2), plan_flags=" ".join(plan_flags(c)))
    assert out.shape == (c["b"], t + new), out.shape
    if cuda:
        torch.cuda.synchronize()
        row["max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        row["max_reserved_bytes"] = torch.cuda.max_memory_reserved()
        row["reserved_end_bytes"] = torch.cuda.memory_reserved()
        row["nvml_used_end_bytes"] = nvml_used()
    del out, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row


LIBS = ("transformers/", "peft/", "accelerate/", "torch/optim/", "torch/utils/checkpoint", "scripts/measure_hf_memory")


def where(frames):
    """A short name for an allocation: its innermost frame in model, adapter or optimizer code, and the innermost frame."""
    if not frames:
        return "(no Python frame: autograd engine or C++)"
    inner = frames[0]
    lib = next((f for f in frames if any(k in f["filename"] for k in LIBS)), None)
    tail = lambda f: "/".join(f["filename"].split("/")[-2:]) + ":" + str(f["line"]) + " " + f["name"]
    return tail(lib) + (" <- " + tail(inner) if lib is not None and lib is not inner else "") if lib else tail(inner)


def peak_breakdown(snapshot, top=14):
    """Replays the allocator trace: the blocks alive at the allocated peak, grouped by where they were allocated."""
    events = [e for e in snapshot["device_traces"][0] if e["action"] in ("alloc", "free_completed")]
    total = best = best_at = 0
    for i, e in enumerate(events):
        total += e["size"] if e["action"] == "alloc" else -e["size"]
        if total > best:
            best, best_at = total, i
    live = {}
    for e in events[:best_at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = e
        else:
            live.pop(e["addr"], None)
    groups = {}
    for e in live.values():
        k = where(e.get("frames", []))
        n, b = groups.get(k, (0, 0))
        groups[k] = (n + 1, b + e["size"])
    # blocks allocated before the trace began (none: recording starts before the model) are not in the trace
    lines = [f"trace peak {best / 2**30:.3f} GiB over {len(events)} events, {len(live)} live blocks"]
    for k, (n, b) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {b / 2**30:8.3f} GiB {n:6d} x  {k}")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--only", default="")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--set", choices=sorted(SETS), action="append", help="case set(s) to run (default: a)")
    p.add_argument("--reflag", action="store_true",
                   help="rewrite the plan_flags column of the existing --out file from the case definitions, and exit")
    p.add_argument("--snapshots", help="also write, per case, what is alive at the allocated peak (allocator trace) to this file")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))
    if a.reflag:
        by_id = {c["id"]: c for cases in SETS.values() for c in cases}
        with open(a.out, newline="") as fh:
            lines = fh.read().splitlines(keepends=True)
        comments = [l for l in lines if l.startswith("#")]
        rows = list(csv.DictReader(l for l in lines if not l.startswith("#")))
        with open(a.out, "w", newline="") as fh:
            fh.writelines(comments)
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            for r in rows:
                r["plan_flags"] = " ".join(plan_flags(by_id[r["id"]]))
                w.writerow(r)
        return
    import transformers
    import peft
    env = dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available() and not a.dry_run:
        torch.zeros(1, device="cuda")
        torch.ones(8, 8, device="cuda") @ torch.ones(8, 8, device="cuda")  # cuBLAS handle and workspace
        torch.cuda.synchronize()
        env["context_bytes"] = nvml_used() - torch.cuda.memory_reserved()
        try:
            env["sdpa"] = sdpa_backends()
        except Exception as e:
            env["sdpa"] = f"{type(e).__name__}: {e}"[:200]
    print(json.dumps(env), flush=True)
    fields = None
    with open(a.out, "w", newline="") as fh, tempfile.TemporaryDirectory() as tmp:
        fh.write("# " + json.dumps(env) + "\n")
        for c in [c for name in (a.set or ["a"]) for c in SETS[name]]:
            if only and c["id"] not in only:
                continue
            trace = a.snapshots and torch.cuda.is_available() and not a.dry_run
            try:
                if trace:
                    torch.cuda.memory._record_memory_history(max_entries=1_000_000, stacks="python")
                row = run_case(c, a.steps, a.dry_run, tmp)
                if trace:
                    text = peak_breakdown(torch.cuda.memory._snapshot())
                    torch.cuda.memory._record_memory_history(enabled=None)
                    with open(a.snapshots, "a") as sf:
                        sf.write(f"== {c['id']} {' '.join(plan_flags(c))}\n{text}\n")
            except Exception as e:  # one failed case must not lose the others
                row = dict(id=c["id"], error=f"{type(e).__name__}: {e}"[:300], plan_flags=" ".join(plan_flags(c)))
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)
            if fields is None:
                fields = ["id", "preset", "load", "amp", "method", "ckpt", "batch", "seq", "attn", "optim", "loaded_bytes",
                          "max_allocated_bytes", "max_reserved_bytes", "forward_peak_bytes", "backward_peak_bytes",
                          "step_peak_bytes", "reserved_end_bytes", "nvml_used_end_bytes", "seconds", "error", "plan_flags"]
                w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
            w.writerow(row)
            fh.flush()


if __name__ == "__main__":
    main()
