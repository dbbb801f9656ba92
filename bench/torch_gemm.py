# PyTorch CPU fp32 GEMM throughput at llamafit's GEMM benchmark shapes: the reference for `llamafit bench gemm`.
# Usage: /usr/bin/python3 bench/torch_gemm.py THREADS [SIZE ...]   (default sizes 1024 2048)
# Prints one JSON line per size and op: {"size": N, "op": ..., "threads": T, "gflops": G, "best_seconds": S}.
# Same shape as GemmBenchmark: C[N,N] = A[N,N] @ W[N,N]^T (W stored [n, k], as a Linear weight), best of 5
# after 3 warm-ups. Two ops, because Debian's python3-torch 1.13 sends torch.matmul to the system libblas.so.3
# (BLAS_INFO=generic; the netlib reference BLAS unless an optimised one is selected with update-alternatives),
# while its oneDNN (MKL-DNN) build runs fp32 linear layers on tensors in mkldnn layout:
#   "matmul"        torch.matmul(a, w.t())                 - what plain PyTorch code gets on this install
#   "mkldnn_linear" torch._C._nn.mkldnn_linear(a, w) (oneDNN) - the fastest fp32 GEMM this PyTorch has
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


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: torch_gemm.py THREADS [SIZE ...]")
    threads = int(sys.argv[1])
    sizes = [int(s) for s in sys.argv[2:]] or [1024, 2048]
    torch.set_num_threads(threads)
    for n in sizes:
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(n, n, generator=gen, dtype=torch.float32) - 0.5
        w = torch.rand(n, n, generator=gen, dtype=torch.float32) - 0.5
        out = torch.empty(n, n, dtype=torch.float32)
        ops = {"matmul": lambda: torch.matmul(a, w.t(), out=out)}
        if torch.backends.mkldnn.is_available():
            am, wm = a.to_mkldnn(), w.to_mkldnn()
            ops["mkldnn_linear"] = lambda: torch._C._nn.mkldnn_linear(am, wm, None)
        for op, fn in ops.items():
            best = best_of(fn)
            print(json.dumps({"size": n, "op": op, "threads": threads,
                              "gflops": round(2.0 * n ** 3 / best / 1e9, 2), "best_seconds": round(best, 6)}), flush=True)


if __name__ == "__main__":
    main()
