"""Blur IG against PAIR ``saliency``'s BlurIG side by side in one process: time and max |difference|.

The shipped default denoiser with the centre-pixel target and the default ParticleClassifier
(untrained, class 0) on one 64×64 image; PAIR at its defaults (σ_max = 50, 100 steps) with
``batch_size`` 1 (its default) and 64, ours with PAIR's discretisation (``max_sigma=50``,
``riemann_left``, ``finite_difference``) and at our defaults (σ_max = min(H, W)/4: a shorter
path, so a different map).  ``benchmarks/explainers.py`` makes the same comparison with the
spread over the rounds.  Repetitions are interleaved; medians are printed.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/blur_ig_vs_pair.py [--reps 3] [--size 64]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--models", nargs="+", default=["denoiser", "classifier"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from saliency.core import BlurIG as PairBlurIG
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    from cryoxplain.explain import create_explainer
    from cryoxplain.explain.base import bind_target, explained_function
    from cryoxplain.models.classifier import build_classifier
    from cryoxplain.models.registry import load_model

    n = args.size
    g = torch.Generator().manual_seed(0)
    yy, xx = np.mgrid[:n, :n]
    blob = torch.as_tensor(np.exp(-((yy - n // 2) ** 2 + (xx - n // 2) ** 2) / (2 * (n / 6) ** 2)), dtype=torch.float32)
    x = blob + 0.5 * torch.randn(1, 1, n, n, generator=g)
    for kind in args.models:
        if kind == "denoiser":
            net, spec = load_model("default")[0].eval(), f"pixel:{n // 2},{n // 2}"
        else:
            torch.manual_seed(0)
            net, spec = build_classifier(image_shape=(n, n)).eval(), "class:0"
        f = explained_function(net, bind_target(spec, net, x))
        zero = torch.zeros(1, dtype=torch.long)

        def cmf(xb, call_model_args=None, expected_keys=None):
            z = torch.as_tensor(np.asarray(xb)).permute(0, 3, 1, 2).detach().requires_grad_(True)
            (gr,) = torch.autograd.grad(f(z, zero.expand(z.shape[0])).sum(), z)
            return {INPUT_OUTPUT_GRADIENTS: gr.permute(0, 2, 3, 1).numpy()}

        runs = {
            "PAIR, batch_size=1": lambda: PairBlurIG().GetMask(x[0].permute(1, 2, 0).numpy(), cmf, batch_size=1)[..., 0],
            "PAIR, batch_size=64": lambda: PairBlurIG().GetMask(x[0].permute(1, 2, 0).numpy(), cmf, batch_size=64)[..., 0],
            "ours, PAIR's discretisation": lambda: create_explainer(
                "blur_ig", max_sigma=50.0, rule="riemann_left", derivative="finite_difference").attribute(net, x, spec).maps[0],
            "ours, defaults": lambda: create_explainer("blur_ig").attribute(net, x, spec).maps[0],
        }
        times = {k: [] for k in runs}
        maps = {}
        for _ in range(args.reps):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                maps[k] = fn()
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) for k, v in times.items()}
        ref = maps["PAIR, batch_size=1"]
        print(f"\n{kind} ({spec}), {n}x{n}, 1 thread, {args.reps} interleaved repetitions (medians)\n")
        print("| run | s / image | × PAIR (batch_size=1) | × PAIR (batch_size=64) | max abs diff to PAIR (batch_size=1) |")
        print("|---|---:|---:|---:|---:|")
        for k in runs:
            d = "–" if k == "ours, defaults" else f"{np.abs(maps[k] - ref).max():.1e}"
            print(f"| {k} | {med[k]:.3f} | {med[k] / med['PAIR, batch_size=1']:.2f} | "
                  f"{med[k] / med['PAIR, batch_size=64']:.2f} | {d} |")
        print(f"\n(max |PAIR map| {np.abs(ref).max():.3g})")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
