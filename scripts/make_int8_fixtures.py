#!/usr/bin/python3
"""Writes llamafit's int8 (LLM.int8()) weight-quantisation fixtures: an independent reference for quant/Int8.java.

Run with Debian's PyTorch (bitsandbytes is not needed):  /usr/bin/python3 scripts/make_int8_fixtures.py

Written from the LLM.int8() paper (Dettmers et al. 2022, vector-wise absmax quantisation) and bitsandbytes' documented
behaviour of Linear8bitLt / Int8Params: the weight is cast to float16, then each output channel (row) is scaled by its
absmax. bitsandbytes' PyTorch (CPU) path computes the scale as `127.0 / row_stats`, which PyTorch evaluates as
`row_stats.reciprocal() * 127` (two float32 roundings); the code is torch.round (ties to even) of the float32 product.
The row absmax itself is stored as the module's `SCB` (float32). Rows of zeros get SCB 0 and codes 0.

Cases: random weights of awkward sizes stored as F32, BF16 and F16 (with rows of zeros, rounding ties, values that
fp16 rounds or flushes to zero, wide row scales), and three real tensors of ../shared/models/tinystories-656k read with
a small safetensors header parser (the Java test reads the same file).

Output under src/test/resources/quant/int8/: manifest.json, and per case <name>.in.bin (the input's raw little-endian
bytes, random cases only), <name>.cb.bin (int8 codes, row-major) and <name>.scb.bin (float32 little-endian).
"""
import json
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "quant", "int8")
MODEL = os.path.join(ROOT, "..", "shared", "models", "tinystories-656k", "model.safetensors")
REAL = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.down_proj.weight"]
TORCH_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def reference_quantize(w):
    """(codes int8 [out, in], scb float32 [out]) of a 2-D float tensor, as described in the module docstring."""
    h = w.to(torch.float16).to(torch.float32)  # bitsandbytes quantises the fp16 cast of the weight
    scb = h.abs().max(dim=1).values
    scale = scb.reciprocal() * 127.0  # what `127.0 / scb` computes in PyTorch
    scale = torch.where(scb == 0, torch.zeros_like(scale), scale)
    codes = torch.round(h * scale.unsqueeze(1)).to(torch.int8)
    return codes, scb


def random_cases():
    g = torch.Generator().manual_seed(16)
    cases = []
    for name, (rows, cols) in {"tiny": (1, 1), "odd": (3, 5), "awkward": (17, 33), "wide": (5, 300), "tall": (70, 9)}.items():
        w = torch.randn(rows, cols, generator=g) * torch.logspace(-3, 2, rows).unsqueeze(1)
        cases.append((name, w))
    # Special rows (F32 input shows the fp16 cast): zeros; exact ties after scaling (absmax 127 makes the scale 1); values fp16 rounds (1 + 2^-12) or
    # flushes to zero (1e-8); negative zero; a single large value among small ones.
    special = torch.zeros(7, 8)
    special[1] = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -126.5])
    special[2] = torch.tensor([1 + 2 ** -12, 1e-8, -3.0, 0.25, 2.0 ** -14, -(2.0 ** -20), 1.0, -1.0])
    special[3] = torch.tensor([-0.0, 0.0, -0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    special[4] = torch.tensor([1000.0, 1e-3, -2e-3, 3.9, -3.94, 0.0, 1.0, 7.0])
    special[5] = torch.randn(8, generator=g) * 1e-5
    # Scale 1 again: the fp16 cast moves these onto ties (2.5, 0.5, -4.5), so skipping it changes their codes.
    special[6] = torch.tensor([127.0, 2.5 + 2 ** -12, 0.5 + 2 ** -13, -4.5 - 2 ** -10, 64.0, -64.25, 3.0, 0.0])
    cases.append(("special", special))
    out = []
    for name, w in cases:
        for dtype in ("F32", "BF16", "F16"):
            out.append((f"{name}_{dtype.lower()}", dtype, w.to(TORCH_DTYPES[dtype])))
    return out


def read_safetensors(path, names):
    """The named F32 tensors of a safetensors file: 8-byte header length, JSON header, then the data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        tensors = {}
        for name in names:
            meta = header[name]
            if meta["dtype"] != "F32":
                raise SystemExit(f"{name} is {meta['dtype']}, expected F32")
            start, end = meta["data_offsets"]
            f.seek(base + start)
            data = f.read(end - start)
            tensors[name] = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(meta["shape"]).clone()
        return tensors


def raw_bytes(t):
    """Little-endian bytes of a tensor (16-bit types through int16, which numpy-free torch can serialise)."""
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes() if t.dtype != torch.int16 else t.contiguous().numpy().astype("<i2").tobytes()


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []

    def emit(name, entry, w):
        codes, scb = reference_quantize(w)
        with open(os.path.join(OUT, name + ".cb.bin"), "wb") as f:
            f.write(codes.contiguous().numpy().tobytes())
        with open(os.path.join(OUT, name + ".scb.bin"), "wb") as f:
            f.write(scb.contiguous().numpy().astype("<f4").tobytes())
        entry.update({"name": name, "shape": list(w.shape), "codes": name + ".cb.bin", "scb": name + ".scb.bin"})
        manifest.append(entry)

    for name, dtype, w in random_cases():
        with open(os.path.join(OUT, name + ".in.bin"), "wb") as f:
            f.write(raw_bytes(w))
        emit(name, {"dtype": dtype, "input": name + ".in.bin"}, w)
    for key, w in read_safetensors(MODEL, REAL).items():
        emit("tinystories_" + key.replace("model.", "").replace(".weight", "").replace(".", "_"),
             {"dtype": "F32", "tensor": key}, w)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/make_int8_fixtures.py", "torch": torch.__version__, "cases": manifest}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(manifest)} cases to {OUT}")


if __name__ == "__main__":
    main()
