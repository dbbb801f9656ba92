#!/usr/bin/python3
"""Writes llamafit's golden test fixtures with an independent PyTorch implementation of LLaMA.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_fixtures.py [--shared ../shared]

The forward pass below is written from the published architecture (RMSNorm, rotate-half RoPE with
optional Llama-3 frequency scaling, grouped-query causal attention with optional sliding window,
SwiGLU MLP) in float64, without sharing any code with the Java engine. Outputs, all small (< 1 MB):
  src/test/resources/fixtures/<name>/config.json, model.safetensors   tiny random models
  src/test/resources/fixtures/<name>/expected.json                    input ids
  src/test/resources/fixtures/<name>/expected.safetensors             logits [B, T, V] (F32)
  src/test/resources/fixtures/<name>/expected_grads.safetensors       d(mean loss)/d(parameter), every parameter
  (expected.json also holds "labels" [B, T] with some -100 = ignored, and "loss", the mean cross-entropy)
  src/test/resources/fixtures/tinystories-656k-greedy.json            40 greedy tokens from BOS
"""
import argparse
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "fixtures")

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


# ---------------------------------------------------------------- safetensors, by hand (format spec)
def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().to(torch.float32).contiguous()
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        dt, size = DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=dt).reshape(info["shape"])
        out[name] = t.to(torch.float64)
    return out, meta


# ---------------------------------------------------------------- the reference model (float64)
def inv_frequencies(cfg, d):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    sc = cfg.get("rope_scaling")
    if sc and sc.get("rope_type", sc.get("type")) == "llama3":
        factor, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
        old = sc["original_max_position_embeddings"]
        lo_wavelen, hi_wavelen = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > lo_wavelen, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= hi_wavelen) & (wavelen <= lo_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rope(x, positions, cfg):
    # x: [B, T, heads, D], rotate-half convention
    d = x.shape[-1]
    inv = inv_frequencies(cfg, d)
    pos = positions.to(torch.float64)
    sc = cfg.get("rope_scaling")
    if sc and sc.get("rope_type", sc.get("type")) == "linear":
        pos = pos / sc["factor"]
    freqs = torch.outer(pos, inv)                  # [T, D/2]
    emb = torch.cat([freqs, freqs], dim=-1)         # [T, D]
    cos, sin = emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos + rotated * sin


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def linear(p, name, x):
    y = x @ p[name + ".weight"].T
    if name + ".bias" in p:
        y = y + p[name + ".bias"]
    return y


def forward(p, cfg, ids):
    """ids: LongTensor [B, T] -> logits [B, T, V] (float64)."""
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KvH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    emb = p.get("model.embed_tokens.weight", p.get("lm_head.weight"))
    x = emb[ids]
    positions = torch.arange(T)
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window:
        allowed &= (i - j) < window
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, p[pre + "input_layernorm.weight"], eps)
        q = linear(p, pre + "self_attn.q_proj", h).view(B, T, H, D)
        k = linear(p, pre + "self_attn.k_proj", h).view(B, T, KvH, D)
        v = linear(p, pre + "self_attn.v_proj", h).view(B, T, KvH, D)
        q, k = rope(q, positions, cfg), rope(k, positions, cfg)
        rep = H // KvH
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(D)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores, dim=-1)
        o = torch.einsum("bhts,bshd->bthd", att, v).reshape(B, T, H * D)
        x = x + linear(p, pre + "self_attn.o_proj", o)
        h = rmsnorm(x, p[pre + "post_attention_layernorm.weight"], eps)
        g = linear(p, pre + "mlp.gate_proj", h)
        u = linear(p, pre + "mlp.up_proj", h)
        x = x + linear(p, pre + "mlp.down_proj", torch.nn.functional.silu(g) * u)
    x = rmsnorm(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]
    return x @ head.T


# ---------------------------------------------------------------- tiny random models
def random_model(cfg, gen):
    C, H, F, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    KvH = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim") or C // H
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    o_bias = cfg["model_type"] != "qwen2" and cfg.get("attention_bias", False)

    def w(*shape, std=0.15):
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * std

    p = {"model.embed_tokens.weight": w(V, C, std=0.5)}
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        p[pre + "input_layernorm.weight"] = 1 + w(C, std=0.1)
        p[pre + "post_attention_layernorm.weight"] = 1 + w(C, std=0.1)
        for name, rows in (("q_proj", H * D), ("k_proj", KvH * D), ("v_proj", KvH * D)):
            p[pre + f"self_attn.{name}.weight"] = w(rows, C)
            if qkv_bias:
                p[pre + f"self_attn.{name}.bias"] = w(rows, std=0.1)
        p[pre + "self_attn.o_proj.weight"] = w(C, H * D)
        if o_bias:
            p[pre + "self_attn.o_proj.bias"] = w(C, std=0.1)
        p[pre + "mlp.gate_proj.weight"] = w(F, C)
        p[pre + "mlp.up_proj.weight"] = w(F, C)
        p[pre + "mlp.down_proj.weight"] = w(C, F)
    p["model.norm.weight"] = 1 + w(C, std=0.1)
    if not cfg.get("tie_word_embeddings", False):
        p["lm_head.weight"] = w(V, C, std=0.3)
    return p


def base_config(model_type, **kw):
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[model_type]],
        "model_type": model_type, "hidden_size": 32, "intermediate_size": 80, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32",
    }
    cfg.update(kw)
    return cfg


FIXTURES = {
    # Llama with grouped-query attention (4 heads over 2 KV heads) and tied embeddings.
    "tiny-llama-gqa-tied": base_config("llama", tie_word_embeddings=True, rope_scaling=None),
    # Llama 3 style: untied, multi-query (1 KV head), attention biases, rope_theta 5e5 and llama3 rope scaling.
    "tiny-llama3-untied": base_config("llama", num_key_value_heads=1, attention_bias=True, rope_theta=500000.0,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    # Qwen2: q/k/v biases (no o bias), untied.
    "tiny-qwen2": base_config("qwen2", rope_theta=1000000.0, use_sliding_window=False, sliding_window=None),
    # Mistral with a sliding window shorter than the sequence, head_dim given explicitly (not C/H).
    "tiny-mistral-window": base_config("mistral", sliding_window=5, head_dim=12, num_key_value_heads=2),
}


def write_fixture(name, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    p = random_model(cfg, gen)
    # Round weights to float32 first: the reference then computes exactly on what the file holds.
    p = {k: v.to(torch.float32).to(torch.float64) for k, v in p.items()}
    ids = torch.randint(0, cfg["vocab_size"], (2, 9), generator=gen)
    logits = forward(p, cfg, ids)
    # Training reference, drawn after everything above so the older outputs stay bit-identical.
    labels = torch.randint(0, cfg["vocab_size"], (2, 9), generator=gen)
    labels[torch.rand((2, 9), generator=gen) < 0.25] = -100
    labels[0, 0] = -100
    loss, grads = loss_and_grads(p, cfg, ids, labels)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), p, {"format": "pt"})
    write_safetensors(os.path.join(d, "expected.safetensors"), {"logits": logits})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "logits_shape": list(logits.shape),
                   "generator": "scripts/make_fixtures.py (PyTorch %s, float64)" % torch.__version__,
                   "labels": labels.tolist(), "loss": loss}, f, indent=1)
    write_safetensors(os.path.join(d, "expected_grads.safetensors"), grads)
    print(f"{name}: logits {list(logits.shape)}, max |logit| {logits.abs().max():.3f}, loss {loss:.6f}")


def loss_and_grads(p, cfg, ids, labels):
    """Mean cross-entropy over labels != -100 and its gradient for every parameter (float64 autograd).
    With tied embeddings the forward reads the embedding twice (input and head): autograd sums both uses."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    logits = forward(leaves, cfg, ids)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, reduction="mean")
    loss.backward()
    return float(loss), {k: v.grad for k, v in leaves.items()}


TRAIN_RUN = {"steps": 10, "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1, "warmup": 3,
             "schedule": "cosine", "max_grad_norm": 1.0}


def train_run(name):
    """Ten AdamW steps on one fixture's batch with torch.optim.AdamW, a warmup+cosine LambdaLR (transformers'
    formula) and clip_grad_norm_: the loss before every step, the pre-clip norm and the lr. Norms and biases are
    in a no-decay group, as llamafit's trainer does."""
    d = os.path.join(OUT, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "expected.json")) as f:
        exp = json.load(f)
    p, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    ids, labels = torch.tensor(exp["input_ids"]), torch.tensor(exp["labels"])
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    no_decay = [v for k, v in leaves.items() if "norm" in k or k.endswith(".bias")]
    decay = [v for k, v in leaves.items() if not ("norm" in k or k.endswith(".bias"))]
    r = TRAIN_RUN
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": r["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=r["lr"], betas=tuple(r["betas"]), eps=r["eps"])

    def factor(step):
        if step < r["warmup"]:
            return step / max(1, r["warmup"])
        progress = (step - r["warmup"]) / max(1, r["steps"] - r["warmup"])
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    losses, norms, lrs = [], [], []
    for _ in range(r["steps"]):
        opt.zero_grad()
        logits = forward(leaves, cfg, ids)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(leaves.values()), r["max_grad_norm"])))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        losses.append(float(loss))
    out = dict(TRAIN_RUN, fixture=name, losses=losses, grad_norms=norms, lrs=lrs,
               generator="scripts/make_fixtures.py (PyTorch %s, float64, torch.optim.AdamW)" % torch.__version__)
    with open(os.path.join(d, "train_run.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{name} 10 AdamW steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}")


def greedy_tinystories(shared):
    folder = os.path.join(shared, "models", "tinystories-656k")
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    p, meta = read_safetensors(os.path.join(folder, "model.safetensors"))
    ids = [cfg["bos_token_id"]]
    for _ in range(40):
        logits = forward(p, cfg, torch.tensor([ids]))
        ids.append(int(torch.argmax(logits[0, -1])))
    out = {"model": "tinystories-656k", "prompt_ids": ids[:1], "generated_ids": ids[1:],
           "eos_token_id": cfg["eos_token_id"],
           "generator": "scripts/make_fixtures.py (PyTorch %s, float64, greedy, no EOS stop)" % torch.__version__}
    with open(os.path.join(OUT, "tinystories-656k-greedy.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("tinystories-656k greedy:", ids[1:])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for i, (name, cfg) in enumerate(FIXTURES.items()):
        write_fixture(name, cfg, 1234 + i)
        train_run(name)
    greedy_tinystories(args.shared)
