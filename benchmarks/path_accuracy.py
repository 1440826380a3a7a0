"""Accuracy per cost of the path methods: completeness error against model evaluations per rule.

For Integrated Gradients (zero baseline) and Blur IG (σ_max = 50, PAIR's and our default) on
particle images (``sample_data/ribosome70S_noisy.mrcs``, normalised per image) explained through
the shipped default denoiser with the centre-pixel target, prints for each quadrature rule and
number of steps the relative completeness error ``|Σ A − (f(x) − f(baseline))| / |f(x) − f(baseline)|``
(median and maximum over the images) and the forward+backward passes per image it cost.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/path_accuracy.py [--images 3] [--steps 8 16 32 64]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cryoxplain.explain import create_explainer
    from cryoxplain.explain.paths import RULES
    from cryoxplain.imaging.normalize import normalize_images
    from cryoxplain.io.mrc import read_mrc
    from cryoxplain.models.registry import load_model

    root = Path(__file__).resolve().parent.parent
    stack, _ = read_mrc(root / "sample_data" / "ribosome70S_noisy.mrcs", stack=True)
    x = torch.as_tensor(np.asarray(normalize_images(np.asarray(stack[:args.images], dtype=np.float32))))[:, None]
    net, _ = load_model("default")
    n = x.shape[-1]
    target = f"pixel:{n // 2},{n // 2}"
    print(f"{args.images} particles {n}x{n} (sample_data), shipped denoiser, target {target}, float32\n")
    print("| method | rule | steps | fwd+bwd / image | completeness error, median | max |")
    print("|---|---|---:|---:|---:|---:|")
    blur_rules = tuple(r for r in RULES if r.startswith("riemann_"))
    for method, rules in (("integrated_gradients", RULES), ("blur_ig", blur_rules)):
        for rule in rules:
            for steps in args.steps:
                a = create_explainer(method, steps=steps, rule=rule).attribute(net, x, target)
                ex = a.extras
                span = np.abs(np.asarray(ex["target_value"], dtype=np.float64) - np.asarray(ex["baseline_value"], dtype=np.float64))
                err = np.abs(np.asarray(a.maps, dtype=np.float64).sum((1, 2)) - (np.asarray(ex["target_value"], dtype=np.float64)
                                                                            - np.asarray(ex["baseline_value"], dtype=np.float64))) / span
                evals = steps + 1 if rule == "riemann_trapezoid" and method == "blur_ig" else steps
                print(f"| {method} | {rule} | {steps} | {evals} | {np.median(err):.2e} | {err.max():.2e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
