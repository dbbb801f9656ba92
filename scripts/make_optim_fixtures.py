#!/usr/bin/python3
"""Writes llamafit's optimizer golden fixture with PyTorch's own optimizers, schedule and clipping.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_optim_fixtures.py

Three small float32 parameters and ten sets of raw gradients (fixed seed). Each run replays the usual
training step of a transformers Trainer:
    clip_grad_norm_(params, max_norm)   (records the pre-clip total norm)
    optimizer.step()                    (records the parameters after the step)
    scheduler.step()                    (LambdaLR; records the lr the step used)
Runs: AdamW (param "norm" in a no-decay group) with a cosine warmup schedule and clipping; SGD with
momentum and coupled weight decay under the same schedule and clipping; SGD with Nesterov momentum and
SGD with dampening at a constant lr without clipping. Everything stays float32, as the Java side does.
The schedule lambdas are transformers' get_*_schedule_with_warmup formulas, written out here because
transformers is not installed next to Debian's torch.

Output: src/test/resources/fixtures/optim/optim_golden.json (a few tens of KB).
"""
import json
import math
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "src", "test", "resources", "fixtures", "optim", "optim_golden.json")

STEPS = 10
SHAPES = {"w1": [7, 5], "norm": [5], "w2": [3, 4]}
# Varying gradient scales, so that some steps are clipped (norm > 1) and some are not.
GRAD_SCALES = [2.0, 0.05, 1.0, 0.1, 0.5, 0.02, 3.0, 0.08, 0.3, 0.01]


def constant_lambda(warmup):
    # transformers.get_constant_schedule_with_warmup
    def f(step):
        if step < warmup:
            return float(step) / float(max(1.0, warmup))
        return 1.0
    return f


def cosine_lambda(warmup, total, num_cycles=0.5):
    # transformers.get_cosine_schedule_with_warmup
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
    return f


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def run(init, grads, make_optimizer, lr_lambda, max_norm):
    params = {n: torch.nn.Parameter(init[n].clone()) for n in SHAPES}
    opt = make_optimizer(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    lrs, norms, after = [], [], []
    for s in range(STEPS):
        for n in SHAPES:
            params[n].grad = grads[s][n].clone()
        if max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm)
            norms.append(float(norm))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        after.append({n: flat(params[n]) for n in SHAPES})
    return {"lr": lrs, "pre_clip_norm": norms, "params": after}


def main():
    torch.manual_seed(1234)
    init = {n: torch.randn(shape, dtype=torch.float32) for n, shape in SHAPES.items()}
    grads = [{n: torch.randn(shape, dtype=torch.float32) * GRAD_SCALES[s] for n, shape in SHAPES.items()}
             for s in range(STEPS)]

    def adamw(p):
        return torch.optim.AdamW([{"params": [p["w1"], p["w2"]]}, {"params": [p["norm"]], "weight_decay": 0.0}],
                                 lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    def sgd(p):
        return torch.optim.SGD([p["w1"], p["norm"], p["w2"]], lr=0.05, momentum=0.9, weight_decay=0.01)

    def sgd_nesterov(p):
        return torch.optim.SGD([p["w1"], p["norm"], p["w2"]], lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True)

    def sgd_dampening(p):
        return torch.optim.SGD([p["w1"], p["norm"], p["w2"]], lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.0)

    runs = {
        "adamw": dict(run(init, grads, adamw, cosine_lambda(3, STEPS), 1.0),
                      optimizer="adamw", peak_lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
                      no_decay=["norm"], schedule="cosine", warmup=3, total=STEPS, max_norm=1.0),
        "sgd": dict(run(init, grads, sgd, cosine_lambda(3, STEPS), 1.0),
                    optimizer="sgd", peak_lr=0.05, momentum=0.9, dampening=0.0, nesterov=False, weight_decay=0.01,
                    no_decay=[], schedule="cosine", warmup=3, total=STEPS, max_norm=1.0),
        "sgd_nesterov": dict(run(init, grads, sgd_nesterov, constant_lambda(0), None),
                             optimizer="sgd", peak_lr=0.05, momentum=0.9, dampening=0.0, nesterov=True,
                             weight_decay=0.01, no_decay=[], schedule="constant", warmup=0, total=STEPS, max_norm=0.0),
        "sgd_dampening": dict(run(init, grads, sgd_dampening, constant_lambda(0), None),
                              optimizer="sgd", peak_lr=0.05, momentum=0.8, dampening=0.3, nesterov=False,
                              weight_decay=0.0, no_decay=[], schedule="constant", warmup=0, total=STEPS, max_norm=0.0),
    }
    doc = {
        "generator": "scripts/make_optim_fixtures.py, torch " + torch.__version__,
        "shapes": SHAPES,
        "init": {n: flat(t) for n, t in init.items()},
        "grads": [{n: flat(g[n]) for n in SHAPES} for g in grads],
        "runs": runs,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
