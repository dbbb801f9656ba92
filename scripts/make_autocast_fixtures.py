#!/usr/bin/python3
"""Writes the mixed-precision references of the tiny fixtures: logits, loss and every parameter gradient in bf16 and
fp16 autocast (what `train --precision bf16|fp16` must reproduce).

Run with Debian's PyTorch (1.13):  /usr/bin/python3 scripts/make_autocast_fixtures.py

For each src/test/resources/fixtures/<name>/ made by scripts/make_fixtures.py (config.json, model.safetensors,
expected.json with input_ids and labels) it writes, all F32:
  autocast_bf16.safetensors, autocast_fp16.safetensors
      "logits" [B, T, V], "loss" [1] (mean cross-entropy over labels != -100),
      and d(mean loss)/d(parameter) under each parameter's own name.

The model is an fp32 LLaMA written again here (RMSNorm, rotate-half RoPE with the fixtures' scalings, grouped-query
causal attention with optional sliding window, SwiGLU), sharing only the file readers and RoPE frequencies with
make_fixtures.py. Its ops are chosen so that the 16-bit tensors are the ones PyTorch's CPU autocast holds in 16 bits
and llamafit's engine rounds:
  - every GEMM (q/k/v/o/gate/up/down/lm_head linears, q·kᵀ and probs·v) takes 16-bit operands, accumulates in fp32 and
    gives a 16-bit output; weights (and biases) enter as their 16-bit rounding, the fp32 master weights stay fp32;
  - RMSNorm, RoPE, softmax and the cross-entropy compute in fp32; the softmax probabilities and the SwiGLU product
    silu(gate)·up are rounded to 16 bits where they are produced (explicit casts; the engine holds them in 16 bits);
  - the residual stream is fp32 (a 16-bit o/down output is added to it in fp32);
  - in backward the gradient of every 16-bit tensor is itself 16-bit (autograd keeps a gradient in its tensor's dtype).
    One known difference from the engine: autograd computes a weight's gradient in 16 bits (the gradient of its 16-bit
    cast) before widening it; the engine keeps weight gradients in fp32. That is one 16-bit rounding per element
    (relative 2^-9 in bf16, 2^-12 in fp16), well inside the test's tolerance.

bf16 runs under the real torch.autocast("cpu", dtype=torch.bfloat16); the script asserts that a linear output came out
bf16 (i.e. autocast really cast), and cross-checks the run against the explicit emulation below.
fp16 cannot use autocast here: torch 1.13's CPU autocast supports only bf16, and CPU fp16 matmul is not implemented. It
is therefore EMULATED: operands are rounded to fp16 (x.half().float()), multiplied in fp32 (fp32 accumulation, as the
16-bit GEMMs do), and outputs rounded, at exactly the places autocast rounds in bf16; a custom autograd function rounds
the gradient at the same places. The emulation run in bf16 must agree with the real bf16 autocast run (checked below,
tolerance 2e-3 norm-wise; on the machine that wrote the committed files they
agreed bit for bit in logits, loss and every gradient), which is the evidence that it puts the roundings where autocast does.

The script also checks that its fp32 model without autocast matches the float64 fixtures (expected.safetensors,
expected_grads.safetensors) within 1e-4.
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import OUT, FIXTURES, inv_frequencies, read_safetensors, write_safetensors  # noqa: E402


class Round(torch.autograd.Function):
    """x rounded to a 16-bit float (kept in fp32 storage); the gradient is rounded the same way."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = dtype
        return x.to(dtype).to(torch.float32)

    @staticmethod
    def backward(ctx, g):
        return g.to(ctx.dtype).to(torch.float32), None


class Ops:
    """Where the model's numerics differ by mode: fp32 (plain), autocast (real torch.autocast), emulate (explicit)."""

    def __init__(self, mode, dtype=None):
        self.mode, self.dtype = mode, dtype

    def r(self, t):
        """A 16-bit rounding that autocast would not insert by itself (softmax output, silu(g)*u)."""
        if self.mode == "fp32":
            return t
        if self.mode == "autocast":
            return t.to(self.dtype)
        return Round.apply(t, self.dtype)

    def f32(self, t):
        return t.float()

    def linear(self, x, w, b):
        if self.mode == "emulate":
            y = self.r(x) @ self.r(w).T
            if b is not None:
                y = y + self.r(b)
            return self.r(y)
        return F.linear(x, w, b)  # under autocast: bf16 operands, bf16 output

    def matmul(self, a, b):
        if self.mode == "emulate":
            return self.r(self.r(a) @ self.r(b))
        return torch.matmul(a, b)


def rope32(x, cfg):
    # x: [B, T, heads, D] fp32, rotate-half convention, positions 0..T-1 (as make_fixtures.rope, in fp32)
    d, T = x.shape[-1], x.shape[1]
    inv = inv_frequencies(cfg, d)
    pos = torch.arange(T, dtype=torch.float64)
    sc = cfg.get("rope_scaling")
    if sc and sc.get("rope_type", sc.get("type")) == "linear":
        pos = pos / sc["factor"]
    emb = torch.outer(pos, inv)
    emb = torch.cat([emb, emb], dim=-1)
    cos, sin = emb.cos().float()[None, :, None, :], emb.sin().float()[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def rmsnorm32(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(p, cfg, ids, ops, seen):
    """fp32 parameters p, ids [B, T] -> logits [B, T, V] (16-bit under autocast/emulation, as the engine holds them)."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KvH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    x = p["model.embed_tokens.weight"][ids]                          # fp32 residual stream
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    allowed = j <= i
    if window:
        allowed &= (i - j) < window

    def lin(name, h):
        return ops.linear(h, p[name + ".weight"], p.get(name + ".bias"))

    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm32(x, p[pre + "input_layernorm.weight"], eps)      # fp32; the linears cast it
        q = lin(pre + "self_attn.q_proj", h)
        seen.append(q.dtype)
        k = lin(pre + "self_attn.k_proj", h)
        # v is widened before the head repeat so that backward sums the repeated heads' gradients in fp32 and
        # rounds once (autograd would otherwise sum them in bf16, one rounding per head: a torch detail, not autocast's)
        v = ops.f32(lin(pre + "self_attn.v_proj", h)).view(B, T, KvH, D)
        q = rope32(ops.f32(q).view(B, T, H, D), cfg)                  # RoPE in fp32; the GEMM rounds its result
        k = rope32(ops.f32(k).view(B, T, KvH, D), cfg)
        rep = H // KvH
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        scores = ops.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1))  # [B, H, T, T], 16-bit
        s = ops.f32(scores) / math.sqrt(D)
        s = s.masked_fill(~allowed, float("-inf"))
        probs = ops.r(torch.softmax(s, dim=-1))                       # softmax in fp32, rounded
        o = ops.matmul(probs, v.transpose(1, 2))                       # [B, H, T, D], 16-bit
        o = o.transpose(1, 2).reshape(B, T, H * D)
        x = x + ops.f32(lin(pre + "self_attn.o_proj", o))
        h = rmsnorm32(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = lin(pre + "mlp.gate_proj", h)
        u = lin(pre + "mlp.up_proj", h)
        act = ops.r(F.silu(ops.f32(g)) * ops.f32(u))                  # SwiGLU in fp32, rounded
        x = x + ops.f32(lin(pre + "mlp.down_proj", act))
    x = rmsnorm32(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]
    return ops.linear(x, head, None)


def run(p64, cfg, ids, labels, ops):
    """Logits (fp32), mean loss and fp32 gradients of every parameter."""
    leaves = {k: v.to(torch.float32).clone().requires_grad_(True) for k, v in p64.items()}
    seen = []
    if ops.mode == "autocast":
        with torch.autocast("cpu", dtype=ops.dtype):
            logits = forward(leaves, cfg, ids, ops, seen)
        assert all(d == ops.dtype for d in seen), f"autocast did not produce {ops.dtype} linear outputs: {seen}"
        assert logits.dtype == ops.dtype, logits.dtype
    else:
        logits = forward(leaves, cfg, ids, ops, seen)
    logits = logits.float()                                            # the loss in fp32
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    loss.backward()
    grads = {k: v.grad.float() for k, v in leaves.items()}
    assert all(v.grad.dtype == torch.float32 for v in leaves.values())
    return logits.detach(), loss.detach(), grads


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def worst(g, ref):
    return max((rel(g[k], ref[k]), k) for k in ref)


def make(name):
    d = os.path.join(OUT, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    p, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    ids, labels = torch.tensor(exp["input_ids"]), torch.tensor(exp["labels"])
    logits64, _ = read_safetensors(os.path.join(d, "expected.safetensors"))
    grads64, _ = read_safetensors(os.path.join(d, "expected_grads.safetensors"))

    # 1. The fp32 model without autocast is the float64 reference's model.
    lg, loss, gr = run(p, cfg, ids, labels, Ops("fp32"))
    dl = float((lg.double() - logits64["logits"]).abs().max())
    dg = max(float((gr[k].double() - grads64[k]).abs().max()) for k in grads64)
    assert dl < 1e-4 and dg < 1e-4 and abs(float(loss) - exp["loss"]) < 1e-5, (name, dl, dg, float(loss), exp["loss"])
    print(f"{name}: fp32 vs float64: max |dlogit| {dl:.2e}, max |dgrad| {dg:.2e}")

    # 2. Real bf16 autocast, and the emulation in bf16 as its cross-check.
    lb, lossb, gb = run(p, cfg, ids, labels, Ops("autocast", torch.bfloat16))
    le, losse, ge = run(p, cfg, ids, labels, Ops("emulate", torch.bfloat16))
    cross = max(rel(le, lb), worst(ge, gb)[0])
    assert cross < 2e-3, (name, "bf16 emulation vs autocast", rel(le, lb), worst(ge, gb))
    print(f"  bf16 emulation vs autocast: logits {rel(le, lb):.1e}, worst grad {worst(ge, gb)[0]:.1e}, "
          f"loss {float(losse):.6f} vs {float(lossb):.6f}")

    # 3. fp16, emulated.
    lh, lossh, gh = run(p, cfg, ids, labels, Ops("emulate", torch.float16))
    for tag, lgt, ls, g in (("bf16", lb, lossb, gb), ("fp16", lh, lossh, gh)):
        wr, wk = worst(g, grads64)
        print(f"  {tag} vs float64: loss {float(ls):.6f} vs {exp['loss']:.6f}, logits {rel(lgt, logits64['logits']):.1e} "
              f"(norm-wise), worst grad {wr:.1e} ({wk})")
        out = {"logits": lgt, "loss": ls.reshape(1)}
        out.update(g)
        write_safetensors(os.path.join(d, f"autocast_{tag}.safetensors"), out,
                          {"generator": "scripts/make_autocast_fixtures.py (PyTorch %s, %s)" %
                           (torch.__version__, "torch.autocast cpu bfloat16" if tag == "bf16" else "fp16 emulated")})


if __name__ == "__main__":
    torch.manual_seed(0)
    for fixture in FIXTURES:
        make(fixture)
