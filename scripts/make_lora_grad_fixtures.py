#!/usr/bin/python3
"""Writes LoRA gradient fixtures: a hand-written LoRA (Hu et al. 2021, PEFT conventions) on the tiny fixture models.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_lora_grad_fixtures.py

For each src/test/resources/fixtures/<name>/ (made by make_fixtures.py) this adds lora_grads/ with
  adapter.safetensors          lora_A [r, in] and lora_B [out, r] under PEFT keys
                               (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight, ...)
  expected.json                r, alpha, targets, the mean cross-entropy "loss" of the adapted model
  expected_grads.safetensors   d(loss)/d(every adapter matrix), same keys
r = 4, alpha = 8 (scale 2), targets q_proj, v_proj, o_proj, down_proj, dropout 0. B is drawn NON-zero (PEFT
initialises it to zero) so that the gradients of A are not trivially zero. The input ids and labels are the fixture's
own (expected.json). Everything is float64 autograd on float32-rounded values; no code is shared with the Java engine.
"""
import json
import math
import os

import torch

import make_fixtures as mf

R, ALPHA = 4, 8.0
TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]
NAMES = ["tiny-llama-gqa-tied", "tiny-llama3-untied", "tiny-qwen2", "tiny-mistral-window"]


def module_path(m):
    return ("mlp." if m in ("gate_proj", "up_proj", "down_proj") else "self_attn.") + m


def key(layer, m, which):
    return f"base_model.model.model.layers.{layer}.{module_path(m)}.lora_{which}.weight"


def lin(p, lora, layer, m, x):
    """Base linear plus scale·(x·Aᵀ)·Bᵀ when m is targeted (dropout 0)."""
    y = mf.linear(p, f"model.layers.{layer}.{module_path(m)}", x)
    if m in TARGETS:
        y = y + (ALPHA / R) * ((x @ lora[key(layer, m, "A")].T) @ lora[key(layer, m, "B")].T)
    return y


def forward(p, lora, cfg, ids):
    """make_fixtures.forward with LoRA on the targeted projections; ids [B, T] -> logits [B, T, V]."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KvH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    x = p["model.embed_tokens.weight"][ids]
    positions = torch.arange(T)
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = j <= i
    if window:
        allowed &= (i - j) < window
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = mf.rmsnorm(x, p[pre + "input_layernorm.weight"], eps)
        q = lin(p, lora, l, "q_proj", h).view(B, T, H, D)
        k = lin(p, lora, l, "k_proj", h).view(B, T, KvH, D)
        v = lin(p, lora, l, "v_proj", h).view(B, T, KvH, D)
        q, k = mf.rope(q, positions, cfg), mf.rope(k, positions, cfg)
        rep = H // KvH
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(D)
        att = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        o = torch.einsum("bhts,bshd->bthd", att, v).reshape(B, T, H * D)
        x = x + lin(p, lora, l, "o_proj", o)
        h = mf.rmsnorm(x, p[pre + "post_attention_layernorm.weight"], eps)
        g, u = lin(p, lora, l, "gate_proj", h), lin(p, lora, l, "up_proj", h)
        x = x + lin(p, lora, l, "down_proj", torch.nn.functional.silu(g) * u)
    x = mf.rmsnorm(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]
    return x @ head.T


def make(name, seed):
    d = os.path.join(mf.OUT, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    expected = json.load(open(os.path.join(d, "expected.json")))
    p, _ = mf.read_safetensors(os.path.join(d, "model.safetensors"))
    C, H, F = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"]
    KvH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    dims = {"q_proj": (C, H * D), "k_proj": (C, KvH * D), "v_proj": (C, KvH * D), "o_proj": (H * D, C),
            "gate_proj": (C, F), "up_proj": (C, F), "down_proj": (F, C)}  # (in, out)
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in TARGETS:
            fan_in, out = dims[m]
            bound = 1 / math.sqrt(fan_in)  # PEFT: kaiming_uniform_(a=√5) over fan_in
            lora[key(l, m, "A")] = (torch.rand(R, fan_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            lora[key(l, m, "B")] = torch.randn(out, R, generator=gen, dtype=torch.float64) * 0.1
    lora = {k: v.to(torch.float32).to(torch.float64).requires_grad_(True) for k, v in lora.items()}
    ids, labels = torch.tensor(expected["input_ids"]), torch.tensor(expected["labels"])
    logits = forward(p, lora, cfg, ids)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, reduction="mean")
    loss.backward()
    out = os.path.join(d, "lora_grads")
    os.makedirs(out, exist_ok=True)
    mf.write_safetensors(os.path.join(out, "adapter.safetensors"), lora, {"format": "pt"})
    mf.write_safetensors(os.path.join(out, "expected_grads.safetensors"), {k: v.grad for k, v in lora.items()})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"r": R, "lora_alpha": ALPHA, "target_modules": TARGETS, "lora_dropout": 0.0, "loss": float(loss),
                   "generator": "scripts/make_lora_grad_fixtures.py (PyTorch %s, float64)" % torch.__version__}, f, indent=1)
    print(f"{name}: loss {float(loss):.6f} (base {expected['loss']:.6f}), {len(lora)} adapter tensors")


if __name__ == "__main__":
    for i, n in enumerate(NAMES):
        make(n, 1000 + i)
