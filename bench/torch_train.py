#!/usr/bin/python3
"""PyTorch reference for `llamafit bench train`: full fp32 AdamW fine-tuning steps of a random LLaMA.

Usage: /usr/bin/python3 bench/torch_train.py --threads 2 --dim 288 --layers 6 --heads 6 --kv-heads 6 \
           --ffn 768 --vocab 32000 --batch 8 --seq 256 --steps 3
Prints one JSON line: tokens_per_s (best step after a warm-up step), step_seconds, peak_rss_bytes.
With --autocast-bf16, forward and loss run under torch.autocast("cpu", dtype=torch.bfloat16): PyTorch's CPU AMP.

The model is the standard eager formulation (nn.Linear layers, RMSNorm, rotate-half RoPE, causal softmax
attention with GQA, SwiGLU, tied embeddings, F.cross_entropy over full logits) with torch.optim.AdamW —
what a plain PyTorch fine-tuning loop does on CPU.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable B·A, written by hand as PEFT does (A Kaiming-uniform a=sqrt(5), B zero)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scale


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        d, h, kvh = a.dim, a.heads, a.kv_heads
        self.h, self.kvh, self.hd = h, kvh, d // h
        self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, h * self.hd, bias=False)
        self.k = nn.Linear(d, kvh * self.hd, bias=False)
        self.v = nn.Linear(d, kvh * self.hd, bias=False)
        self.o = nn.Linear(h * self.hd, d, bias=False)
        self.gate = nn.Linear(d, a.ffn, bias=False)
        self.up = nn.Linear(d, a.ffn, bias=False)
        self.down = nn.Linear(a.ffn, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.kvh, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if self.kvh != self.h:
            k = k.repeat_interleave(self.h // self.kvh, dim=1)
            v = v.repeat_interleave(self.h // self.kvh, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o(y)
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab, a.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList([Block(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.dim)
        hd = a.dim // a.heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(a.seq).float(), inv)
        emb = torch.cat([f, f], dim=-1)
        self.register_buffer("cos", emb.cos()[None, None])
        self.register_buffer("sin", emb.sin()[None, None])
        self.register_buffer("mask", torch.triu(torch.ones(a.seq, a.seq, dtype=torch.bool), 1))

    def forward(self, ids, labels, checkpointing=False):
        x = self.embed(ids)
        for b in self.blocks:
            if checkpointing:
                x = torch.utils.checkpoint.checkpoint(b, x, self.cos, self.sin, self.mask, use_reentrant=False)
            else:
                x = b(x, self.cos, self.sin, self.mask)
        logits = self.norm(x) @ self.embed.weight.T  # tied embeddings
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def main():
    ap = argparse.ArgumentParser()
    for name, default in (("threads", 2), ("dim", 288), ("layers", 6), ("heads", 6), ("kv-heads", 6), ("ffn", 768),
                          ("vocab", 32000), ("batch", 8), ("seq", 256), ("steps", 3)):
        ap.add_argument("--" + name, type=int, default=default)
    ap.add_argument("--lora-r", type=int, default=0, help="0 = full fine-tuning")
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-targets", default="q_proj,v_proj")
    ap.add_argument("--checkpointing", action="store_true", help="torch.utils.checkpoint around every block")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="torch.autocast('cpu', dtype=torch.bfloat16) around forward and loss (the standard CPU AMP loop;"
                         " fp32 master weights and optimizer; torch 1.13's CPU autocast has no fp16)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(a)
    if a.lora_r > 0:
        for p in model.parameters():
            p.requires_grad_(False)
        names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o", "gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
        for b in model.blocks:
            for t in a.lora_targets.split(","):
                setattr(b, names[t], LoRALinear(getattr(b, names[t]), a.lora_r, a.lora_alpha))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    best = float("inf")
    for step in range(a.steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast_bf16):
            loss = model(ids[:, :-1], ids[:, 1:], a.checkpointing)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step > 0:
            best = min(best, dt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tokens_per_s": round(a.batch * a.seq / best, 2), "step_seconds": round(best, 4),
                      "trainable_parameters": sum(p.numel() for p in params),
                      "peak_rss_bytes": rss, "loss": round(loss.item(), 4), "torch": torch.__version__,
                      "autocast": "bf16" if a.autocast_bf16 else "none"}), flush=True)


if __name__ == "__main__":
    main()
