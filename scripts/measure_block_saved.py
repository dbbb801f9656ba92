#!/usr/bin/env python3
"""Measures what one transformers LlamaDecoderLayer saves for backward, per token, eager and under torch.compile, to
check the planner's per-block activation count (PytorchProfile.blockBytesPerToken).

The layer is built from a config.json (default: src/test/resources/planner/block-512.json), in bf16 without autocast
(`--precision bf16-pure`), as full fine-tuning or with PEFT LoRA adapters (fp32, PEFT's default). Its forward runs
under torch.autograd.graph.saved_tensors_hooks, which see every tensor autograd keeps, compiled graphs included; the
script sums the distinct storages that are not parameters. Compiled cases run once before they are measured.

Runs on the CPU (no GPU needed): torch.compile's partitioner, which decides what a compiled graph saves, is the same
on every device. One difference is known: on the CPU, dropout keeps an fp32 noise tensor where CUDA's fused kernel
keeps a 1-byte mask, so the dropout cases are printed but not compared.

  python3 scripts/measure_block_saved.py --out block.jsonl [--config F] [--batch 2] [--seq 256]
"""
import argparse
import json
import os

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

CASES = [  # name, method, LoRA targets, dropout, compiled
    ("full-eager", "full", [], 0.0, False),
    ("lora-qv-eager", "lora", ["q_proj", "v_proj"], 0.0, False),
    ("lora-all-eager", "lora", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 0.0, False),
    ("lora-qv-dropout-eager", "lora", ["q_proj", "v_proj"], 0.1, False),
    ("full-compiled", "full", [], 0.0, True),
    ("lora-qv-compiled", "lora", ["q_proj", "v_proj"], 0.0, True),
    ("lora-all-compiled", "lora", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 0.0, True),
]


class Layer(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, position_embeddings):
        out = self.layer(x, position_embeddings=position_embeddings)
        return out[0] if isinstance(out, tuple) else out


def measure(cfg, method, targets, dropout, compiled, batch, seq):
    torch.manual_seed(0)
    model = Layer(LlamaDecoderLayer(cfg, 0).to(torch.bfloat16))
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=targets))
    rotary = LlamaRotaryEmbedding(cfg)
    x = torch.randn(batch, seq, cfg.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(seq)[None].expand(batch, seq)
    pe = tuple(t.to(torch.bfloat16) for t in rotary(x, positions))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    f = torch.compile(model) if compiled else model
    if compiled:
        f(x, pe).float().sum().backward()
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(x, pe)
    # cos and sin, saved by the rotary multiplies, are computed once per forward and shared by every layer.
    rotary_bytes = sum(t.untyped_storage().nbytes() for t in pe if t.untyped_storage().data_ptr() in kept)
    return sum(kept.values()) / (batch * seq), rotary_bytes / (batch * seq)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "src", "test", "resources", "planner", "block-512.json"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    a = p.parse_args()
    with open(a.config) as fh:
        cfg = LlamaConfig(**json.load(fh))
    cfg._attn_implementation = "sdpa"
    with open(a.out, "w") as out:
        for name, method, targets, dropout, compiled in CASES:
            per_token, rotary = measure(cfg, method, targets, dropout, compiled, a.batch, a.seq)
            row = dict(case=name, method=method, lora_targets=targets, lora_r=8 if targets else 0, lora_dropout=dropout, compiled=compiled,
                       batch=a.batch, seq=a.seq, saved_bytes_per_token=per_token, rotary_bytes_per_token=rotary,
                       torch=torch.__version__, device="cpu", precision="bf16-pure")
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
