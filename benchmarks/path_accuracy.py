"""Accuracy per cost of the path methods: completeness error against model evaluations per rule.

For Integrated Gradients (zero baseline) and Blur IG (its default σ_max = min(H, W)/4, linear and
variance spacing, analytic derivative) prints, for each quadrature rule and number of steps, the
relative completeness error ``|Σ A − (f(x) − f(baseline))| / |f(x) − f(baseline)|`` (median and
maximum over the images) and the forward+backward passes per image it cost, and then per method
the cheapest setting whose *maximum* error over the images is at or below ``--target`` (1 %).

Models (``--models``):

* ``denoiser``: the shipped default denoiser, centre-pixel target, on particle images
  (``sample_data/ribosome70S_noisy.mrcs``, normalised per image);
* ``toy_denoiser`` (centre pixel) and ``toy_classifier`` (class 0):
  :mod:`cryoxplain.testing.toys` models (the toy classifier built for the particle size with the
  toys' seeded initialisation), on the same particle images;
* ``toys``: the toy models on :func:`cryoxplain.testing.toys.toy_images` (16×16), the setting
  of the tests (tests/plugins/test_path_quadrature.py).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/path_accuracy.py [--images 2] [--models denoiser toy_denoiser ...]
        [--steps 8 16 32 64 128 256] [--target 0.01] [--methods integrated_gradients blur_ig]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def completeness_errors(attribution) -> np.ndarray:
    """Relative completeness error per image of an :class:`~cryoxplain.explain.base.Attribution`."""
    ex = attribution.extras
    fx, fb = (np.asarray(ex[k], dtype=np.float64) for k in ("target_value", "baseline_value"))
    total = np.asarray(attribution.maps, dtype=np.float64).sum((1, 2))
    return np.abs(total - (fx - fb)) / np.maximum(np.abs(fx - fb), 1e-12)


def settings(method: str, steps_list, spacings=("linear", "variance")):
    """(label parameters, explainer parameters, fwd+bwd passes per image) of every setting."""
    from cryoxplain.explain.paths import RULES

    out = []
    if method == "integrated_gradients":
        for rule in RULES:
            for s in steps_list:
                out.append((f"{rule}", {"steps": s, "rule": rule}, s))
    else:
        for spacing in spacings:
            for rule in ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"):
                for s in steps_list:
                    out.append((f"{rule}, {spacing}", {"steps": s, "rule": rule, "spacing": spacing},
                                s + 1 if rule == "riemann_trapezoid" else s))
    return out


def particles(n_images: int) -> torch.Tensor:
    from cryoxplain.imaging.normalize import normalize_images
    from cryoxplain.io.mrc import read_mrc

    root = Path(__file__).resolve().parent.parent
    stack, _ = read_mrc(root / "sample_data" / "ribosome70S_noisy.mrcs", stack=True)
    return torch.as_tensor(np.asarray(normalize_images(np.asarray(stack[:n_images], dtype=np.float32))))[:, None]


def cases(kind: str, n_images: int):
    """[(description, model, images, target)] of a ``--models`` entry."""
    from cryoxplain.testing.toys import (
        TinyClassifier,
        _init,
        toy_classifier,
        toy_denoiser,
        toy_images,
    )

    if kind == "toys":
        x = toy_images(3)
        c = x.shape[-1] // 2
        return [("toy_denoiser, toy_images 16x16", toy_denoiser(), x, f"pixel:{c},{c}"),
                ("toy_classifier, toy_images 16x16", toy_classifier(), x, "class:0")]
    x = particles(n_images)
    n = x.shape[-1]
    if kind == "denoiser":
        from cryoxplain.models.registry import load_model

        return [(f"shipped denoiser, {n_images} particles {n}x{n}", load_model("default")[0].eval(), x,
                 f"pixel:{n // 2},{n // 2}")]
    if kind == "toy_denoiser":
        return [(f"toy_denoiser, {n_images} particles {n}x{n}", toy_denoiser(), x, f"pixel:{n // 2},{n // 2}")]
    if kind == "toy_classifier":
        return [(f"toy_classifier ({n}x{n} input), {n_images} particles", _init(TinyClassifier(3, 4, (n, n)), 1), x,
                 "class:0")]
    raise SystemExit(f"unknown model {kind!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["denoiser"],
                    choices=("denoiser", "toy_denoiser", "toy_classifier", "toys"))
    ap.add_argument("--methods", nargs="+", default=["integrated_gradients", "blur_ig"],
                    choices=("integrated_gradients", "blur_ig"))
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--spacings", nargs="+", default=["linear", "variance"], choices=("linear", "variance"),
                    help="Blur IG σ spacings")
    ap.add_argument("--target", type=float, default=0.01, help="completeness error to reach (max over images)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import warnings

    from cryoxplain.explain import create_explainer

    warnings.simplefilter("ignore")  # blur_ig's max_gap warning: the error is what is measured here
    for kind in args.models:
        for desc, net, x, target in cases(kind, args.images):
            print(f"\n#### {desc}, target {target}, float32\n")
            print("| method | rule | steps | fwd+bwd / image | completeness error, median | max |")
            print("|---|---|---:|---:|---:|---:|")
            best = {}
            for method in args.methods:
                for label, params, evals in settings(method, args.steps, args.spacings):
                    err = completeness_errors(create_explainer(method, **params).attribute(net, x, target))
                    print(f"| {method} | {label} | {params['steps']} | {evals} | {np.median(err):.2e} | "
                          f"{err.max():.2e} |", flush=True)
                    if err.max() <= args.target and (method not in best or (evals, err.max()) < best[method][::3]):
                        best[method] = (evals, label, params["steps"], float(err.max()))
            for method in args.methods:
                if method in best:
                    e, label, s, m = best[method]
                    print(f"\ncheapest {method} at ≤ {100 * args.target:g} % (max): {label}, {s} steps, "
                          f"{e} fwd+bwd / image (max error {m:.2e})")
                else:
                    print(f"\n{method}: no setting reaches {100 * args.target:g} % (max) within {max(args.steps)} steps")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
