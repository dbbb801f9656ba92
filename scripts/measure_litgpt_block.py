#!/usr/bin/env python3
"""Measures what one lit-gpt Block saves for backward, per token, to compare lit-gpt's model with the transformers
layer the planner's HF stack counts (scripts/measure_block_saved.py measures that one at the same shape).

lit-gpt is read from a source checkout (--litgpt-src: the directory that holds the `litgpt` package, e.g.
`git archive 43c44323 litgpt | tar -x`); its model code needs only torch, so the `lightning` imports of
`litgpt.utils` are stubbed. The block has the shape of src/test/resources/planner/block-512.json (C 512, 8 heads of
64, 2 key/value groups, F 1792) and is built in bf16 the way Fabric's `init_module()` builds it for `bf16-true`
(default dtype bf16; lit-gpt builds its rotary cache in fp32 either way, a buffer, so not counted). Its forward runs under
torch.autograd.graph.saved_tensors_hooks; the script sums the distinct storages that are not parameters or buffers.

  python3 scripts/measure_litgpt_block.py --litgpt-src DIR [--batch 2] [--seq 192]
Prints one JSON line per case: full fine-tuning, LoRA r 8 on q and v (lit-gpt's default targets) without and with
dropout 0.05.
"""
import argparse
import json
import sys
import unittest.mock


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--litgpt-src", required=True)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=192)
    a = p.parse_args()
    for name in ["lightning", "lightning.fabric", "lightning.fabric.loggers", "lightning.fabric.strategies", "lightning.fabric.utilities",
                 "lightning.fabric.utilities.load", "lightning.pytorch", "lightning.pytorch.loggers"]:
        sys.modules[name] = unittest.mock.MagicMock()
    sys.path.insert(0, a.litgpt_src)
    import torch
    import litgpt.lora as lora
    import litgpt.model as model
    from litgpt.config import Config

    shape = dict(name="block-512", block_size=512, vocab_size=1000, padded_vocab_size=1000, n_layer=1, n_head=8, n_query_groups=2,
                 head_size=64, n_embd=512, rotary_percentage=1.0, parallel_residual=False, bias=False, norm_class_name="RMSNorm",
                 norm_eps=1e-5, mlp_class_name="LLaMAMLP", intermediate_size=1792)
    for case, method, dropout in [("full", "full", 0.0), ("lora-qv", "lora", 0.0), ("lora-qv-dropout", "lora", 0.05)]:
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        if method == "full":
            m = model.GPT(Config(**shape))
        else:
            m = lora.GPT(lora.Config(**shape, lora_r=8, lora_alpha=16, lora_dropout=dropout, lora_query=True, lora_value=True))
            lora.mark_only_lora_as_trainable(m)
        torch.set_default_dtype(torch.float32)
        m.max_seq_length = a.seq
        block = m.transformer.h[0]
        x = torch.randn(a.batch, a.seq, shape["n_embd"], dtype=torch.bfloat16, requires_grad=True)
        cos, sin = m.cos[: a.seq], m.sin[: a.seq]
        owned = {t.untyped_storage().data_ptr() for t in list(m.parameters()) + list(m.buffers()) + [m.cos, m.sin]}
        kept = {}

        def pack(t):
            s = t.untyped_storage()
            if s.data_ptr() not in owned:
                kept[s.data_ptr()] = s.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            block(x, cos, sin)
        print(json.dumps(dict(case=case, method=method, lora_r=0 if method == "full" else 8, lora_dropout=dropout, batch=a.batch, seq=a.seq,
                              saved_bytes_per_token=sum(kept.values()) / (a.batch * a.seq), rope_dtype=str(cos.dtype),
                              torch=torch.__version__)), flush=True)


if __name__ == "__main__":
    main()
