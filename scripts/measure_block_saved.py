#!/usr/bin/env python3
"""Measures what one transformers LlamaDecoderLayer saves for backward, per token, eager and under torch.compile, to
check the planner's per-block activation count (PytorchProfile.blockBytesPerToken), and what a whole small model
saves in its forward with the loss, checkpointed or not (the planner's activations at the end of forward).

The layer is built from a config.json (default: src/test/resources/planner/block-512.json), in bf16 without autocast
(`--precision bf16-pure`), in fp32 under bf16 autocast (`--precision bf16`) or in fp32, with SDPA or eager attention,
as full fine-tuning or with PEFT LoRA adapters (fp32, PEFT's default). Its forward runs under torch.autograd.graph.saved_tensors_hooks, which see every
tensor autograd keeps, compiled graphs included; the script sums the distinct storages that are not parameters (nor,
under autocast, their half copies, which the planner counts as weights.autocast_copies). Compiled cases run once
before they are measured.

Runs on the CPU (no GPU needed): torch.compile's partitioner, which decides what a compiled graph saves, is the same
on every device. One difference is known: on the CPU, dropout keeps an fp32 noise tensor where CUDA's fused kernel
keeps a 1-byte mask, so the dropout cases are printed but not compared.

  python3 scripts/measure_block_saved.py --out block.jsonl [--config F] [--batch 2] [--seq 256]
"""
import argparse
import json
import os

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = [  # name, method, LoRA targets, dropout, compiled, precision, attention
    ("full-eager", "full", [], 0.0, False, "bf16-pure", "sdpa"),
    ("lora-qv-eager", "lora", ["q_proj", "v_proj"], 0.0, False, "bf16-pure", "sdpa"),
    ("lora-all-eager", "lora", ALL, 0.0, False, "bf16-pure", "sdpa"),
    ("lora-qv-dropout-eager", "lora", ["q_proj", "v_proj"], 0.1, False, "bf16-pure", "sdpa"),
    ("full-compiled", "full", [], 0.0, True, "bf16-pure", "sdpa"),
    ("lora-qv-compiled", "lora", ["q_proj", "v_proj"], 0.0, True, "bf16-pure", "sdpa"),
    ("lora-all-compiled", "lora", ALL, 0.0, True, "bf16-pure", "sdpa"),
    ("full-amp-eager", "full", [], 0.0, False, "bf16", "sdpa"),
    ("lora-all-amp-eager", "lora", ALL, 0.0, False, "bf16", "sdpa"),
    ("full-fp32", "full", [], 0.0, False, "fp32", "sdpa"),
    ("lora-qv-fp32", "lora", ["q_proj", "v_proj"], 0.0, False, "fp32", "sdpa"),
    ("full-eager-attention", "full", [], 0.0, False, "bf16-pure", "eager"),
    ("lora-qv-eager-attention-amp", "lora", ["q_proj", "v_proj"], 0.0, False, "bf16", "eager"),
]


class Layer(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, position_embeddings):
        out = self.layer(x, position_embeddings=position_embeddings)
        return out[0] if isinstance(out, tuple) else out


def measure(cfg, method, targets, dropout, compiled, precision, attention, batch, seq):
    torch.manual_seed(0)
    cfg._attn_implementation = attention
    amp = precision == "bf16"
    dtype = torch.float32 if amp or precision == "fp32" else torch.bfloat16
    model = Layer(LlamaDecoderLayer(cfg, 0).to(dtype))
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=targets))
    rotary = LlamaRotaryEmbedding(cfg)
    x = torch.randn(batch, seq, cfg.hidden_size, dtype=dtype, requires_grad=True)
    positions = torch.arange(seq)[None].expand(batch, seq)
    pe = tuple(t.to(dtype) for t in rotary(x, positions))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    # Under autocast the half copies of the weights are saved too (some transposed); they have the weights' shapes (the
    # batch is chosen so that no activation has one) and the planner counts them apart.
    weight_shapes = {s for p in model.parameters() if p.dim() == 2 for s in (tuple(p.shape), tuple(p.shape)[::-1])}
    f = torch.compile(model) if compiled else model
    if compiled:
        f(x, pe).float().sum().backward()
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and not (amp and t.dtype == torch.bfloat16 and tuple(t.shape) in weight_shapes):
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        f(x, pe)
    # cos and sin, saved by the rotary multiplies, are computed once per forward and shared by every layer.
    rotary_bytes = sum(t.untyped_storage().nbytes() for t in pe if t.untyped_storage().data_ptr() in kept)
    return sum(kept.values()) / (batch * seq), rotary_bytes / (batch * seq)


MODEL_CASES = [  # name, method, gradient checkpointing: a whole 4-layer model with its loss
    ("model-full", "full", False),
    ("model-full-ckpt", "full", True),
    ("model-lora-qv", "lora", False),
    ("model-lora-qv-ckpt", "lora", True),
]


def measure_model(cfg_dict, method, ckpt, batch, seq):
    """Everything a LlamaForCausalLM forward with its loss saves, per token (bf16, SDPA): the blocks (or, checkpointed,
    their inputs), the final norm, the LM head's input and the loss's log-softmax and labels."""
    cfg = LlamaConfig(**cfg_dict)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    if method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    model.train()
    if ckpt:
        model.gradient_checkpointing_enable()
        if method == "lora":
            model.enable_input_require_grads()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(kept.values()) / (batch * seq)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "src", "test", "resources", "planner", "block-512.json"))
    p.add_argument("--model-config", default=os.path.join(os.path.dirname(__file__), "..", "src", "test", "resources", "planner", "model-512x4.json"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=192, help="with --batch, no activation may have a weight's shape (2 × 192 = 384 rows)")
    a = p.parse_args()
    with open(a.config) as fh:
        cfg = LlamaConfig(**json.load(fh))
    with open(a.out, "w") as out:
        for name, method, targets, dropout, compiled, precision, attention in CASES:
            per_token, rotary = measure(cfg, method, targets, dropout, compiled, precision, attention, a.batch, a.seq)
            row = dict(case=name, method=method, lora_targets=targets, lora_r=8 if targets else 0, lora_dropout=dropout, compiled=compiled,
                       precision=precision, attention=attention, batch=a.batch, seq=a.seq, saved_bytes_per_token=per_token, rotary_bytes_per_token=rotary,
                       torch=torch.__version__, device="cpu")
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")
        with open(a.model_config) as fh:
            cfg_dict = json.load(fh)
        for name, method, ckpt in MODEL_CASES:
            per_token = measure_model(cfg_dict, method, ckpt, a.batch, a.seq)
            row = dict(case=name, method=method, lora_targets=["q_proj", "v_proj"] if method == "lora" else [], lora_r=8 if method == "lora" else 0,
                       lora_dropout=0.0, compiled=False, precision="bf16-pure", attention="sdpa", gradient_checkpointing=ckpt, model=True,
                       batch=a.batch, seq=a.seq, saved_bytes_per_token=per_token, rotary_bytes_per_token=0, torch=torch.__version__, device="cpu")
            print(json.dumps(row), flush=True)
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
