#!/usr/bin/python3
"""Writes PEFT-format LoRA adapters for the tiny fixtures and the logits of each model with its adapter applied.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_lora_fixtures.py
Check an adapter llamafit wrote against this reference (manual round trip; CI has no PyTorch):
    /usr/bin/python3 scripts/make_lora_fixtures.py --check ADAPTER_DIR --fixture NAME [--logits FILE]
  FILE (default ADAPTER_DIR/logits.safetensors) holds "logits" [B, T, V] or [B*T, V] from llamafit on the
  fixture's expected.json input_ids; the script prints max |delta| against its own float64 forward.

The adapter is applied UNMERGED, as PEFT's LoRA Linear does in its forward:
    y = x W^T + b + scale * (x A^T) B^T,  scale = lora_alpha / r  (lora_alpha / sqrt(r) with use_rslora)
so the Java side, which merges W + scale*B*A, is checked against a different computation.
Outputs per fixture (a few tens of KB in all):
  src/test/resources/fixtures/<name>/lora/adapter_config.json      as PEFT's save_pretrained writes it
  src/test/resources/fixtures/<name>/lora/adapter_model.safetensors PEFT key names, F32
  src/test/resources/fixtures/<name>/lora/expected_logits.safetensors "logits" [B, T, V], computed in float64, stored F32
"""
import argparse
import json
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the independent float64 LLaMA and the safetensors helpers)

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL = ATTN + MLP

# name -> (target modules, use_rslora); r = 4 and lora_alpha = 8 for all.
ADAPTERS = {
    "tiny-llama-gqa-tied": (ALL, False),
    "tiny-llama3-untied": (("q_proj", "v_proj"), True),
    "tiny-qwen2": (("q_proj", "v_proj"), False),
    "tiny-mistral-window": (ALL, False),
}
R, ALPHA = 4, 8


def module_path(layer, module):
    return f"model.layers.{layer}." + ("self_attn." if module in ATTN else "mlp.") + module


def peft_key(layer, module, ab):
    # PEFT's get_peft_model_state_dict drops the adapter name (".default") when saving.
    return "base_model.model." + module_path(layer, module) + f".lora_{ab}.weight"


def adapter_config(targets, rslora, base):
    """The fields PEFT 0.13's LoraConfig.save_pretrained writes (json, indent 2, sorted keys)."""
    return {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": base, "bias": "none",
        "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
        "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": ALPHA,
        "lora_dropout": 0.05, "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": R, "rank_pattern": {}, "revision": None, "target_modules": sorted(targets),
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": rslora,
    }


def load_fixture(name):
    d = os.path.join(mf.OUT, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "expected.json")) as f:
        ids = torch.tensor(json.load(f)["input_ids"])
    p, _ = mf.read_safetensors(os.path.join(d, "model.safetensors"))
    return cfg, p, ids


def forward_with_lora(p, cfg, ids, adapter, scale):
    """The reference forward with mf.linear swapped for a LoRA linear (the forward looks it up at call time)."""
    plain = mf.linear
    pattern = re.compile(r"^(model\.layers\.\d+\.(?:self_attn|mlp)\.\w+)$")

    def lora_linear(params, name, x):
        y = plain(params, name, x)
        if pattern.match(name):
            a = adapter.get("base_model.model." + name + ".lora_A.weight")
            b = adapter.get("base_model.model." + name + ".lora_B.weight")
            if a is not None:
                y = y + scale * ((x @ a.T) @ b.T)
        return y

    mf.linear = lora_linear
    try:
        return mf.forward(p, cfg, ids)
    finally:
        mf.linear = plain


def scale_of(conf):
    r, alpha = conf["r"], conf["lora_alpha"]
    return alpha / math.sqrt(r) if conf.get("use_rslora", False) else alpha / r


def write_adapter(name, targets, rslora, seed):
    cfg, p, ids = load_fixture(name)
    gen = torch.Generator().manual_seed(seed)
    adapter = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in ALL:
            if m not in targets:
                continue
            w = p[module_path(l, m) + ".weight"]
            out_dim, in_dim = w.shape
            # Non-zero A and B (PEFT initialises B to zero; a trained adapter is not), rounded to float32 first
            # so the reference computes exactly on what the file holds.
            a = torch.randn(R, in_dim, generator=gen, dtype=torch.float64) * 0.2
            b = torch.randn(out_dim, R, generator=gen, dtype=torch.float64) * 0.2
            adapter[peft_key(l, m, "A")] = a.to(torch.float32).to(torch.float64)
            adapter[peft_key(l, m, "B")] = b.to(torch.float32).to(torch.float64)
    conf = adapter_config(targets, rslora, "llamafit-fixtures/" + name)
    logits = forward_with_lora(p, cfg, ids, adapter, scale_of(conf))
    base = mf.forward(p, cfg, ids)
    d = os.path.join(mf.OUT, name, "lora")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(conf, f, indent=2, sort_keys=True)
    mf.write_safetensors(os.path.join(d, "adapter_model.safetensors"), adapter, {"format": "pt"})
    mf.write_safetensors(os.path.join(d, "expected_logits.safetensors"), {"logits": logits})
    print(f"{name}: {len(adapter)} adapter tensors, scale {scale_of(conf):.4f}, "
          f"max |logits - base logits| {(logits - base).abs().max():.3f}")


def read_adapter(d):
    with open(os.path.join(d, "adapter_config.json")) as f:
        conf = json.load(f)
    tensors, _ = mf.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    return conf, tensors


def check(adapter_dir, name, logits_file):
    cfg, p, ids = load_fixture(name)
    conf, adapter = read_adapter(adapter_dir)
    ref = forward_with_lora(p, cfg, ids, adapter, scale_of(conf))
    got, _ = mf.read_safetensors(logits_file)
    got = got["logits"].reshape(ref.shape)
    print(f"{name}: {len(adapter)} adapter tensors from {adapter_dir}, scale {scale_of(conf):.4f}, "
          f"max |delta logits| vs {logits_file}: {(got - ref).abs().max():.3e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", metavar="ADAPTER_DIR")
    ap.add_argument("--fixture")
    ap.add_argument("--logits")
    args = ap.parse_args()
    if args.check:
        if not args.fixture:
            ap.error("--check needs --fixture NAME")
        check(args.check, args.fixture, args.logits or os.path.join(args.check, "logits.safetensors"))
    else:
        for i, (name, (targets, rslora)) in enumerate(ADAPTERS.items()):
            write_adapter(name, targets, rslora, 4321 + i)
