"""Benchmark: every installed explainer on the ground-truth designs, with the reference maps' rows.

    python benchmarks/explanation_evaluation.py                  # small default (CPU, minutes)
    python benchmarks/explanation_evaluation.py --d1 --n-test 300 --n-train 1000 --epochs 12   # the spec's D1 run (long)

Writes one methods × metrics table per design to ``docs/benchmarks-explanation-evaluation.md``
(``--out``).  Designs (spec shared/specs/saliency_evaluation.md §6, cryoxplain.sim.groundtruth):

* P1 planted disc with the linear model f = ⟨1_G/|G|, x⟩ (class target) — localisation,
  faithfulness, complexity; E_expl on P1 is the P3 case (a non-isotropic linear model: √2 for
  model-dependent maps);
* P2 the isotropic linear model on the same images — E_expl on the grid (expected 0 for every method);
* D3a the Gaussian-blur denoiser σ_d = 1.5 and target pixel:32,20 on a D1 "A" particle — support
  metrics (out-of-support mass, PSF mass, on-particle enrichment, r90);
* D1 (``--d1``): the conformation pair with a classifier trained on it (slow on CPU).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from cryoxplain.evaluate import evaluate_explanations
from cryoxplain.explain.evaluation import (explanation_equivariance, format_table, psf_support, reference_maps,
                                           square_support, support_metrics)
from cryoxplain.explain.registry import create_explainer, list_plugins
from cryoxplain.imaging.masks import radial_distance
from cryoxplain.sim.groundtruth import LinearModel, conformation_pair, pixel_target_design, planted_disc

#: cheap settings for the default run (the plugins' defaults otherwise)
FAST = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"n_samples": 16}, "blur_ig": {"steps": 16},
        "spectral_ig": {"steps": 16}, "spectral_lens": {}, "ablation_path": {}}
SKIP_DEFAULT = ("ablation_path",)  # optimises deletion/insertion (R1) and takes minutes per image on CPU


def methods(include_slow: bool) -> list[str]:
    names = [p.name for p in list_plugins()]
    return [n for n in names if include_slow or n not in SKIP_DEFAULT]


def _params(names, fast=True):
    return {m: dict(FAST.get(m, {})) for m in names} if fast else {}


def p1_table(names, n_subsets):
    d = planted_disc()
    res = evaluate_explanations(None, d, names, params=_params(names), n_subsets=n_subsets, device="cpu")
    p2 = LinearModel(np.exp(-radial_distance((64, 64)) ** 2 / (2 * 8.0 ** 2)))
    x = np.concatenate([d.inputs, np.random.default_rng(0).random((3, 64, 64), np.float32)])
    for m in names:
        try:
            e = explanation_equivariance(create_explainer(m, **_params([m])[m]), p2, x, "class:0", model_metric=False)
            res["rows"][m]["e_grid_p2"] = e.grid_max
        except Exception as exc:  # a method that cannot run on a (B, 1) toy: record, do not fail the table
            res["rows"][m]["e_grid_p2"] = math.nan
            print(f"  {m}: E_expl(P2) failed: {exc}")
    return res


def p1_curves_figure(p1, path):
    """Normalised deletion/insertion curves on P1 per map (probability σ(f), zero baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryoxplain.explain.base import bind_target, explained_function
    from cryoxplain.explain.evaluation import ProbabilityTarget
    from cryoxplain.explain.faithfulness import deletion_insertion

    d = planted_disc()
    model = LinearModel(d.params["w"])
    x = torch.as_tensor(d.inputs)[:, None]
    f = explained_function(model, ProbabilityTarget(bind_target("class:0", model, x)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for name, m in p1["maps"].items():
        if name in ("ref:oracle", "ref:sobel_clean") or np.ptp(m) == 0:
            continue
        c = deletion_insertion(f, x, m)
        fx, fb = c.f_input[0], c.f_baseline[0]
        style = "--" if name.startswith("ref:") else "-"
        axes[0].plot(c.fractions, (c.deletion_curve[0] - fb) / (fx - fb), style, label=name)
        axes[1].plot(c.fractions, (c.insertion_curve[0] - fb) / (fx - fb), style, label=name)
    axes[0].set_title("Deletion (lower is better)")
    axes[1].set_title("Insertion (higher is better)")
    for ax in axes:
        ax.set_xlabel("fraction of pixels changed")
    axes[0].set_ylabel("(σ(f) − σ(f(b))) / (σ(f(x)) − σ(f(b)))")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def d3a_table(names):
    d = pixel_target_design()
    model = d.params["model"]
    x = torch.as_tensor(d.inputs)[:, None]
    pix = tuple(d.params["pixel"])
    sp = psf_support(model, x, pix)
    sup = square_support((64, 64), pix, d.params["support_radius"])
    rows = {}
    for m in names:
        t0 = time.perf_counter()
        try:
            a = create_explainer(m, **_params([m])[m]).attribute(model, x, d.params["target"]).maps
        except Exception as exc:
            print(f"  {m}: failed on D3a: {exc}")
            continue
        r = support_metrics(a, pix, support=sup, particle=d.particle, psf_support=sp).to_dict()
        r["seconds_per_image"] = time.perf_counter() - t0
        rows[m] = r
    for k, a in reference_maps(d.inputs, kinds=("random", "centre", "sobel", "intensity")).items():
        rows[f"ref:{k}"] = support_metrics(a, pix, support=sup, particle=d.particle, psf_support=sp).to_dict()
    return rows


def d1_table(names, n_test, n_train, epochs, n_subsets):
    from cryoxplain.classify.train import train_classifier

    d = conformation_pair(n_test=n_test, n_train=n_train, n_val=0)
    res_model = train_classifier([d.train["A"], d.train["B"]], class_names=["A", "B"], epochs=epochs, seed=0,
                                 augment="d4")
    res = evaluate_explanations(res_model.model, d, names, params=_params(names), n_subsets=n_subsets, device="cpu",
                                sanity=True)
    res["info"]["classifier"] = {k: v for k, v in vars(res_model).items() if isinstance(v, (int, float, str))}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/benchmarks-explanation-evaluation.md")
    ap.add_argument("--n-subsets", type=int, default=100)
    ap.add_argument("--slow-methods", action="store_true", help="also ablation_path")
    ap.add_argument("--d1", action="store_true", help="train a D1 classifier and evaluate on D1 (slow on CPU)")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=12)
    a = ap.parse_args(argv)
    names = methods(a.slow_methods)
    t0 = time.perf_counter()
    parts = ["# Benchmark: evaluating explanations against ground truth", "",
             "Generated by `python benchmarks/explanation_evaluation.py` (CPU; metric definitions in "
             "`cryoxplain.explain.evaluation` and `cryoxplain.explain.faithfulness`, designs in "
             "`cryoxplain.sim.groundtruth`; see docs/explanation-evaluation.md for how to read it).",
             f"Explainer settings: plugin defaults except {FAST} (default run).", ""]
    print("P1 …")
    p1 = p1_table(names, a.n_subsets)
    fx = float((planted_disc().params['w'] * planted_disc().inputs[0]).sum())
    parts += ["## P1 planted disc, linear model f = ⟨1_G/|G|, x⟩ (target class:0)", "",
              f"Explained: the logit f (f(x) = {fx:.4f}); Deletion/Insertion/MuFidelity score the probability "
              f"σ(f) (σ(f(x)) = {1 / (1 + math.exp(-fx)):.4f}, σ(0) = 0.5), zero baseline; `_norm` columns are "
              "(D − f(b))/(f(x) − f(b)).", "",
              "`e_grid` = E_expl on the grid for this non-isotropic model (P3: √2 = 1.414 for a map that does not "
              "rotate); `e_grid_p2` = E_expl on the isotropic model P2 (expected 0).", "",
              format_table(p1["rows"], columns=("pg0", "pg4", "energy", "rank", "auc", "deletion_zero", "insertion_zero",
                                                "deletion_zero_norm", "insertion_zero_norm",
                                                "mufidelity", "global", "gini", "hf", "zlib", "e_grid", "e_grid_p2",
                                                "seconds_per_image"), markdown=True), ""]
    fig = Path(a.out).parent / "figures" / "explanation-evaluation" / "p1_deletion_insertion.png"
    p1_curves_figure(p1, fig)
    parts += [f"![P1 deletion and insertion curves](figures/explanation-evaluation/{fig.name})", ""]
    print("D3a …")
    d3 = d3a_table(names)
    cols = ("out_of_support", "psf_mass", "on_particle", "area_fraction", "enrichment", "r90", "seconds_per_image")
    parts += ["## D3a analytic denoiser (Gaussian σ_d = 1.5), target pixel:32,20 on a D1 'A' particle (noisy)", "",
              "Support = the 13×13 kernel square (radius 6); PSF support S_p from the gradient (≥ 1e-3 of its max).", "",
              format_table(d3, columns=cols, markdown=True), ""]
    if a.d1:
        print("D1 …")
        d1 = d1_table(names, a.n_test, a.n_train, a.epochs, a.n_subsets)
        parts += [f"## D1 conformation pair (n_test = {d1['info']['n']}, Diff = {d1['info']['diff_count']})", "",
                  format_table(d1["rows"], markdown=True), ""]
    parts.append(f"Total run time: {time.perf_counter() - t0:.0f} s.")
    Path(a.out).write_text("\n".join(parts) + "\n")
    print(f"wrote {a.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
