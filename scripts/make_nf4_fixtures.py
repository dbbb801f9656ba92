#!/usr/bin/python3
"""Writes the independent NF4 references (4-bit NormalFloat with and without double quantisation) that
src/test/java/dev/llamafit/quant/Nf4Test.java compares quant/Nf4.java with, bit for bit.

Run with Debian's PyTorch (1.13):  /usr/bin/python3 scripts/make_nf4_fixtures.py
bitsandbytes is not needed: the algorithm is written here from the QLoRA paper (Dettmers et al. 2023, section 3 and
appendix E: NormalFloat levels, block-wise absmax quantisation, double quantisation) and bitsandbytes' documented
algorithm (functional.quantize_4bit / quantize_blockwise / create_dynamic_map / QuantState.as_dict and the pure-PyTorch
"default" backend kernels), not from the Java.

The algorithm:
  - the weight is flattened row-major and cut into blocks of 64 (the last block may be short);
  - absmax[b] = max |x| over block b (fp32; a bf16/fp16 weight is widened exactly first);
  - scaled = clamp(x * (1/absmax[b]), -1, 1) in fp32 (a reciprocal, then a product, as bitsandbytes computes it); a block
    whose absmax is 0 scales to 0 (bitsandbytes would compute 0 * inf = NaN there);
  - code = the index of the nearest of the 16 NF4 levels: argmin over |scaled - level| computed in fp32, the lower index
    on a tie (torch.argmin returns the first minimum);
  - two codes per byte, the FIRST element in the HIGH nibble (packed = code[2i] << 4 | code[2i+1]); an odd count is padded
    with one scaled 0.0 (code 7); the packed tensor is uint8 [ceil(n/2), 1];
  - double quantisation: offset = mean(absmax) (computed here in float64 and rounded to fp32: bitsandbytes takes a
    float32 torch mean whose summation order depends on the device); the centred absmax - offset (fp32) is quantised
    block-wise in blocks of 256 with the signed 8-bit dynamic map (create_dynamic_map(signed=True)), by the same
    absmax / reciprocal / clamp / nearest-code rule: uint8 codes (the stored "absmax") and fp32 nested_absmax;
  - dequantisation: absmax' = dynamic[code2] * nested_absmax[b // 256] + offset (fp32), w' = nf4[code] * absmax'[b].

Each case is one safetensors file under src/test/resources/quant/, named nf4_<case>.safetensors, holding the tensors
exactly as transformers/bitsandbytes serialise a Linear4bit module (QuantState.as_dict(packed=True)) under two module
prefixes, "plain" (no double quantisation) and "dq" (double quantisation):
  P.weight U8 [ceil(n/2), 1], P.weight.absmax (F32 [blocks], or U8 [blocks] with dq), P.weight.quant_map F32 [16],
  dq only: P.weight.nested_absmax F32 [ceil(blocks/256)], P.weight.nested_quant_map F32 [256],
  P.weight.quant_state.bitsandbytes__nf4 U8: json.dumps of {quant_type, blocksize, dtype, shape
  (+ nested_blocksize, nested_dtype, nested_offset)};
random cases also hold "input" (the weight, in its dtype), the bf16 and fp16 ones "P.dequantized" (F32, the weight's shape).
The real cases (tinystories-656k tensors) hold no input: the test reads it from ../shared/models/tinystories-656k.
"""
import json
import math
import os
import struct

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "quant")
MODEL = os.path.join(ROOT, "..", "shared", "models", "tinystories-656k", "model.safetensors")

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
TORCH_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}

BLOCK = 64
NESTED_BLOCK = 256

# QLoRA appendix E: the NF4 levels (as bitsandbytes' get_4bit_type("nf4") lists them).
NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)


def normal_map(offset=0.9677083):
    """QLoRA section 3: 8 positive and 7 negative quantiles of N(0, 1) plus an exact zero, normalised to [-1, 1]."""
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())   # fp32 probabilities, as bitsandbytes
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    v = torch.sort(torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg])).values
    return v / v.abs().max()


def linspace32(start, end, steps):
    """torch.linspace in float32 by its scalar formula: step = (end - start) / (steps - 1), the first half counted from
    start (start + step * i), the second back from end (end - step * (steps - 1 - i)). PyTorch's vectorised CPU kernel
    computes runs as base + i * step instead and can differ in the last bit (it does on this machine), so a map built
    with torch.linspace would depend on the CPU; the scalar formula is the definition both sides can reproduce."""
    start, end = np.float32(start), np.float32(end)
    step = np.float32((end - start) / np.float32(steps - 1))
    half = steps // 2
    return torch.tensor([start + step * np.float32(i) if i < half else end - step * np.float32(steps - 1 - i)
                         for i in range(steps)], dtype=torch.float32)


def dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """The dynamic 8-bit map (Dettmers 2015, bitsandbytes create_dynamic_map), in fp32 as the library builds it
    (linspace by its scalar formula, see linspace32)."""
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed \
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        bounds = linspace32(0.1, 1, items)
        means = (bounds[:-1] + bounds[1:]) / 2.0
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        data += (scale * means).tolist()
        if signed:
            data += (-scale * means).tolist()
    assert 2 ** (non_sign_bits - max_exponent_bits) - 1 == 0  # no extra items for the 8-bit map
    data += [0.0, 1.0]
    assert len(data) == 2 ** total_bits
    return torch.tensor(sorted(data), dtype=torch.float32)


DYNAMIC = dynamic_map()


def blockwise(x, code, block):
    """Block-wise absmax quantisation of fp32 x (1-D) to the nearest entry of code: (codes int64, absmax fp32)."""
    n = x.numel()
    blocks = -(-n // block)
    padded = torch.zeros(blocks * block, dtype=torch.float32)
    padded[:n] = x
    padded = padded.view(blocks, block)
    absmax = padded.abs().amax(dim=1)
    inv = 1.0 / absmax                      # fp32 reciprocal
    scaled = torch.clamp(padded * inv.view(-1, 1), -1.0, 1.0)
    scaled[absmax == 0] = 0.0               # 0 * inf: a zero block is all zeros
    scaled = scaled.reshape(-1)[:n]
    return nearest(scaled, code), absmax


def nearest(scaled, code):
    dist = torch.abs(scaled.view(-1, 1) - code.view(1, -1))   # fp32
    return torch.argmin(dist, dim=1)                           # first minimum on a tie


def quantize(w, double_quant):
    """The bitsandbytes state dict of one module (keys after 'weight'), plus the dequantised weight."""
    x = w.reshape(-1).to(torch.float32)
    n = x.numel()
    codes, absmax = blockwise(x, NF4, BLOCK)
    if n % 2:
        codes = torch.cat([codes, nearest(torch.zeros(1), NF4)])
    packed = ((codes[0::2] << 4) | codes[1::2]).to(torch.uint8).view(-1, 1)
    state = {"quant_type": "nf4", "blocksize": BLOCK, "dtype": TORCH_NAMES[w.dtype], "shape": list(w.shape)}
    out = {"weight": packed}
    if double_quant:
        offset = absmax.to(torch.float64).mean().to(torch.float32)
        centred = absmax - offset
        codes2, absmax2 = blockwise(centred, DYNAMIC, NESTED_BLOCK)
        out["weight.absmax"] = codes2.to(torch.uint8)
        out["weight.quant_map"] = NF4.clone()
        out["weight.nested_absmax"] = absmax2
        out["weight.nested_quant_map"] = DYNAMIC.clone()
        state.update({"nested_blocksize": NESTED_BLOCK, "nested_dtype": "float32", "nested_offset": offset.item()})
        blk = torch.arange(absmax.numel()) // NESTED_BLOCK
        scales = DYNAMIC[codes2] * absmax2[blk] + offset
    else:
        out["weight.absmax"] = absmax
        out["weight.quant_map"] = NF4.clone()
        scales = absmax
    out["weight.quant_state.bitsandbytes__nf4"] = torch.tensor(list(json.dumps(state).encode("utf-8")), dtype=torch.uint8)
    deq = NF4[codes[:n]] * scales[torch.arange(n) // BLOCK]
    return out, deq.view(w.shape)


# ---------------------------------------------------------------- safetensors, by hand (format spec)
def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().astype("<i2").tobytes() if t.dtype == torch.bfloat16 \
            else t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)


def read_tensor(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header[name]
        b, e = info["data_offsets"]
        f.seek(8 + n + b)
        raw = bytearray(f.read(e - b))
    return torch.frombuffer(raw, dtype=ST_DTYPES[info["dtype"]]).reshape(info["shape"]).clone()


def write_case(name, w, with_input, metadata, with_dequantized=False):
    tensors = {}
    if with_input:
        tensors["input"] = w
    for prefix, dq in (("plain", False), ("dq", True)):
        state, deq = quantize(w, dq)
        for k, v in state.items():
            tensors[prefix + "." + k] = v
        if with_dequantized:
            tensors[prefix + ".dequantized"] = deq
        err = (deq - w.float()).abs().max().item()
        print(f"  {name} {prefix}: {w.numel()} elements, {math.ceil(w.numel() / BLOCK)} blocks, max |w - w'| {err:.3g}")
    write_safetensors(os.path.join(OUT, f"nf4_{name}.safetensors"), tensors, metadata)


def ulps_around(x, count):
    """x and its `count` float32 neighbours on each side."""
    out, lo, hi = [x], x, x
    for _ in range(count):
        lo, hi = np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))
        out += [lo, hi]
    return out


def edge_weight():
    """Blocks whose elements sit next to the midpoints between NF4 levels, where only the exact fp32 steps decide the
    code: block 0 has absmax 1 and the floats around each midpoint (ties included: the lower code wins); blocks 1-4
    have a random absmax (element 0) and values for which x * (1/absmax) and x / absmax round to different codes, so a
    division in place of bitsandbytes' reciprocal-and-multiply changes the result."""
    levels = NF4.numpy()
    blocks = [[np.float32(1.0)]]
    for k in range(15):
        blocks[0] += ulps_around(np.float32((np.float64(levels[k]) + np.float64(levels[k + 1])) / 2), 1)
    rng = np.random.default_rng(16)
    while len(blocks) < 5:
        a = np.float32(rng.uniform(0.01, 1.0))
        inv = np.float32(np.float32(1.0) / a)
        picked = []
        for k in range(15):
            mid = np.float32((np.float64(levels[k]) + np.float64(levels[k + 1])) / 2 * np.float64(a))
            for x in ulps_around(mid, 4):
                by_reciprocal = nearest(torch.tensor([np.float32(x * inv)]), NF4).item()
                by_division = nearest(torch.tensor([np.float32(x / a)]), NF4).item()
                if by_reciprocal != by_division and len(picked) < BLOCK - 1:
                    picked.append(x)
        if len(picked) >= 4:
            blocks.append([a] + picked)
    for blk in blocks:
        blk += [np.float32(0.0)] * (BLOCK - len(blk))
    return torch.tensor(np.array(blocks, dtype=np.float32))


def self_checks():
    # The hard-coded levels are the paper's construction (they were printed from fp32 arithmetic: agree to 1e-7).
    assert (normal_map() - NF4.double()).abs().max() < 1e-7, (normal_map(), NF4)
    assert DYNAMIC.numel() == 256 and torch.all(DYNAMIC[1:] > DYNAMIC[:-1]) and DYNAMIC[-1] == 1.0
    # Nibble order and padding, by hand: levels -1 and 1 are codes 0 and 15; the pad of an odd count is 0.0 (code 7).
    packed = quantize(torch.tensor([-1.0, 1.0, 0.5]), False)[0]["weight"]
    assert packed.view(-1).tolist() == [0x0F, (12 << 4) | 7], packed   # 0.5 is nearest 0.4407 (code 12)
    # A tie between two levels goes to the lower code.
    mid = (NF4[8] + NF4[9]) / 2
    if torch.abs(mid - NF4[8]) == torch.abs(mid - NF4[9]):
        assert nearest(mid.view(1), NF4).item() == 8


def main():
    os.makedirs(OUT, exist_ok=True)
    self_checks()
    g = torch.Generator().manual_seed(1616)
    # fp32, odd element count (17353: 272 blocks, the last short; 2 nested blocks, the last short), a zero block,
    # a few outliers and a block of tiny values.
    w = torch.randn(259, 67, generator=g) * 0.02
    w.view(-1)[:64] = 0.0
    w.view(-1)[5000:5003] = torch.tensor([0.9, -1.3, 0.4])
    w.view(-1)[64 * 200: 64 * 201] *= 1e-4
    write_case("random_f32", w, True, {"case": "torch.randn(259, 67) * 0.02, block 0 zero, outliers, a tiny block"})
    # Values next to the midpoints between levels (ties; reciprocal-and-multiply against division).
    write_case("edges_f32", edge_weight(), True, {"case": "values around the midpoints between NF4 levels"})
    # bf16 and fp16 weights (quantised from their exact fp32 widening), odd sizes, with the dequantised weights.
    w = (torch.randn(45, 29, generator=g) * 0.05).to(torch.bfloat16)
    write_case("random_bf16", w, True, {"case": "torch.randn(45, 29) * 0.05 in bf16"}, True)
    w = (torch.randn(17, 40, generator=g) * 0.1).to(torch.float16)
    write_case("random_f16", w, True, {"case": "torch.randn(17, 40) * 0.1 in fp16"}, True)
    # Real weights: 128 blocks (one short nested block), 256 blocks (exactly one), 768 blocks (three).
    for name in ("model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                 "model.layers.1.mlp.gate_proj.weight"):
        w = read_tensor(MODEL, name)
        short = name.replace("model.layers.", "l").replace(".weight", "").replace("self_attn.", "").replace("mlp.", "")
        write_case("tinystories_" + short.replace(".", "_"), w, False, {"source": "tinystories-656k/model.safetensors", "tensor": name})


if __name__ == "__main__":
    main()
