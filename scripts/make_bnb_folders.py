#!/usr/bin/python3
"""Writes two small model folders in the layout transformers saves for bitsandbytes, independently of the Java, so that
src/test/java/dev/llamafit/io/BitsandbytesFolderTest.java can check that llamafit loads such a folder as it is.

Run with Debian's PyTorch (1.13):  /usr/bin/python3 scripts/make_bnb_folders.py
bitsandbytes is not needed: the quantisers are the independent references of make_nf4_fixtures.py (QLoRA paper and
bitsandbytes' documented algorithm) and make_int8_fixtures.py (LLM.int8() paper and Linear8bitLt's rule). The input is
the tiny test model src/test/resources/fixtures/tiny-llama-gqa-tied (fp32). The outputs, beside it:
  tiny-llama-gqa-tied-bnb-nf4/   every block linear layer as Linear4bit's state dict (NF4, double quantisation)
  tiny-llama-gqa-tied-bnb-int8/  every block linear layer as Linear8bitLt's (weight int8, SCB, weight_format)
Embeddings and norms stay fp32, as transformers leaves them; config.json gains quantization_config as
BitsAndBytesConfig.to_dict() writes it (transformers' key names).
"""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_int8_fixtures as int8  # noqa: E402
import make_nf4_fixtures as nf4  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "src", "test", "resources", "fixtures")
SOURCE = os.path.join(FIXTURES, "tiny-llama-gqa-tied")
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def read_all(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: nf4.read_tensor(path, k) for k in header if k != "__metadata__"}


def bnb_config(four_bit):
    return {"_load_in_4bit": four_bit, "_load_in_8bit": not four_bit, "bnb_4bit_compute_dtype": "float32",
            "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": four_bit,
            "llm_int8_enable_fp32_cpu_offload": False, "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
            "llm_int8_threshold": 6.0, "load_in_4bit": four_bit, "load_in_8bit": not four_bit, "quant_method": "bitsandbytes"}


def write(kind):
    out = SOURCE + "-bnb-" + kind
    os.makedirs(out, exist_ok=True)
    tensors = {}
    for name, t in read_all(os.path.join(SOURCE, "model.safetensors")).items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module is None or module.split(".")[-1] not in LINEAR:
            tensors[name] = t
        elif kind == "nf4":
            state, _ = nf4.quantize(t, True)
            for k, v in state.items():
                tensors[module + "." + k] = v
        else:
            codes, scb = int8.reference_quantize(t)
            tensors[module + ".weight"] = codes
            tensors[module + ".SCB"] = scb
            tensors[module + ".weight_format"] = torch.tensor(0, dtype=torch.uint8)
    nf4.ST_NAMES[torch.int8] = "I8"
    nf4.write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(SOURCE, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = bnb_config(kind == "nf4")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"wrote {out}: {len(tensors)} tensors")


if __name__ == "__main__":
    for k in ("nf4", "int8"):
        write(k)
