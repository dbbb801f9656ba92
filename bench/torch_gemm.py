# PyTorch CPU GEMM throughput at llamafit's GEMM benchmark shapes: the reference for `llamafit bench gemm`.
# Usage: /usr/bin/python3 bench/torch_gemm.py [--dtype fp32|bf16] THREADS [SHAPE ...]   (SHAPE: N or MxNxK; default 1024 2048)
# Prints one JSON line per shape and op: {"shape": "MxNxK", "op": ..., "dtype": ..., "threads": T, "gflops": G, "best_seconds": S}.
# Same layout as GemmBenchmark: C[M,N] = A[M,K] @ W[N,K]^T (W stored [n, k], as a Linear weight), best of 5
# after 3 warm-ups. fp32 has two ops, because Debian's python3-torch 1.13 sends torch.matmul to the system
# libblas.so.3 (the netlib reference BLAS unless an optimised one is installed: apt-get install -y
# libopenblas0-pthread selects OpenBLAS through update-alternatives), while its oneDNN (MKL-DNN) build runs fp32
# linear layers on tensors in mkldnn layout:
#   "matmul"        torch.matmul(a, w.t())                 - what plain PyTorch code gets on this install
#   "mkldnn_linear" torch._C._nn.mkldnn_linear(a, w) (oneDNN) - the fastest fp32 GEMM this PyTorch has
# bf16 has one: torch.matmul on bf16 tensors (fp32 accumulation; what CPU autocast's linear layers run).
import json
import sys
import time

import torch


def best_of(fn, warmups=3, runs=5):
    for _ in range(warmups):
        fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def parse_shape(s):
    parts = [int(p) for p in s.split("x")]
    if len(parts) == 1:
        return parts * 3
    if len(parts) != 3:
        sys.exit("shape must be N or MxNxK, got " + s)
    return parts


def main():
    args = sys.argv[1:]
    dtype = "fp32"
    if args[:1] == ["--dtype"]:
        dtype, args = args[1], args[2:]
    if not args or dtype not in ("fp32", "bf16"):
        sys.exit("usage: torch_gemm.py [--dtype fp32|bf16] THREADS [SHAPE ...]")
    threads = int(args[0])
    shapes = [parse_shape(s) for s in args[1:]] or [[1024] * 3, [2048] * 3]
    torch.set_num_threads(threads)
    tdtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    for m, n, k in shapes:
        gen = torch.Generator().manual_seed(0)
        a = (torch.rand(m, k, generator=gen, dtype=torch.float32) - 0.5).to(tdtype)
        w = (torch.rand(n, k, generator=gen, dtype=torch.float32) - 0.5).to(tdtype)
        out = torch.empty(m, n, dtype=tdtype)
        ops = {"matmul": lambda: torch.matmul(a, w.t(), out=out)}
        if dtype == "fp32" and torch.backends.mkldnn.is_available():
            am, wm = a.to_mkldnn(), w.to_mkldnn()
            ops["mkldnn_linear"] = lambda: torch._C._nn.mkldnn_linear(am, wm, None)
        for op, fn in ops.items():
            best = best_of(fn)
            print(json.dumps({"shape": f"{m}x{n}x{k}", "op": op, "dtype": dtype, "threads": threads,
                              "gflops": round(2.0 * m * n * k / best / 1e9, 2), "best_seconds": round(best, 6)}), flush=True)


if __name__ == "__main__":
    main()
