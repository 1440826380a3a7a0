"""Benchmark: every installed explainer on the ground-truth designs, with the reference maps' rows.

    python benchmarks/explanation_evaluation.py                  # small default (CPU, minutes)
    python benchmarks/explanation_evaluation.py --d1 --n-test 300 --n-train 1000 --epochs 12   # the spec's D1 run (long)
    # the D1/D2 tables in docs/ (CPU; each 25–30 min incl. simulation and training on 2 loaded cores):
    python benchmarks/explanation_evaluation.py --trained-only --d2 --cheap --n-test 24 --n-train 300 --epochs 8 --n-subsets 50
    python benchmarks/explanation_evaluation.py --trained-only --d1 --cheap --n-test 12 --n-train 500 --epochs 24 --n-subsets 30
    # D1 at the spec's full size (1000 per class, 300 test particles) with E_expl and sanity, as two processes over
    # disjoint method lists (≈ 35 min on 2 cores), then one merge (a later file's method rows replace an earlier one's):
    python benchmarks/explanation_evaluation.py --trained-only --d1 --cheap --n-test 300 --n-train 1000 --epochs 12 \
        --n-subsets 100 --sanity-final --save-models models/ --reuse-models \
        --methods spectral_lens,smoothgrad,integrated_gradients --save-result d1_A.pkl
    python benchmarks/explanation_evaluation.py ... --methods gradient,lowpass_gradient,spectral_ig,blur_ig,ablation_path,sift_ablation \
        --save-result d1_B.pkl
    python benchmarks/explanation_evaluation.py --merge d1_A.pkl,d1_B.pkl
    # stability over classifier training seeds (spec §8 R5): one --save-result run per --train-seed, then
    python benchmarks/explanation_evaluation.py --stability d1_seed0.pkl,d1_seed1.pkl,d1_seed2.pkl
    # E_expl on a C4-invariant classifier (classifier symmetry=c4) beside the ordinary one (D2):
    python benchmarks/explanation_evaluation.py --c4 --c4-design d2 --c4-n-test 3 --c4-n-train 300 --c4-epochs 40 \
        --n-offgrid 4 --cheap --save-models models/ --reuse-models

Writes one methods × metrics table per design to ``docs/benchmarks-explanation-evaluation.md``
(``--out``).  Designs (spec shared/specs/saliency_evaluation.md §6, cryoxplain.sim.groundtruth):

* P1 planted disc with the linear model f = ⟨1_G/|G|, x⟩ (class target) — localisation,
  faithfulness, complexity; E_expl on P1 is the P3 case (a non-isotropic linear model: √2 for
  model-dependent maps);
* P2 the isotropic linear model on the same images — E_expl on the grid (expected 0 for every method);
* D3a the Gaussian-blur denoiser σ_d = 1.5 and target pixel:32,20 on a D1 "A" particle — support
  metrics (out-of-support mass, PSF mass, on-particle enrichment, r90);
* D1 (``--d1``): the conformation pair with a classifier trained on it (slow on CPU);
* D2 (``--d2``): the planted shortcut (a marker spot at pixel (10, 10) in class B only) with a
  classifier trained on it (no augmentation, so the marker stays where it is).

``--trained-only`` runs only D1/D2 and replaces each one's block in ``--out`` (between the
``<!-- trained design d1/d2 -->`` markers), leaving the P1/D3a tables of the default run as they are.
``--cheap`` uses :data:`CHEAP` for every installed explainer (ablation paths included) on D1/D2.
``--c4`` trains (or with ``--reuse-models`` loads) the ordinary and the C4-invariant classifier
(``symmetry="c4"``: group averaging over the four quarter turns) on ``--c4-design`` and writes E_expl
at 90/180/270° and at ``--n-offgrid`` stratified off-grid angles of every installed explainer for both,
with each model's own invariance, into the ``c4`` block of ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
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
#: cheap settings of every installed explainer for the trained-classifier designs (``--cheap``)
CHEAP = {**FAST, "spectral_lens": {"n_samples": 32, "levels": 6},
         "ablation_path": {"max_iters": 12, "n_t": 8}, "sift_ablation": {"max_iters": 12, "n_t": 8}}
#: bootstrap 95 % intervals (spec §8) reported for these columns on D1/D2
CI_COLUMNS = ("pg4", "pg4_diff", "energy", "auc", "deletion_zero", "insertion_zero", "mufidelity")
MARK = "<!-- trained design {}: {} -->"  # one block per design, so D1 and D2 can be (re)run separately
SKIP_DEFAULT = ("ablation_path",)  # optimises deletion/insertion (R1) and takes minutes per image on CPU


def methods(include_slow: bool) -> list[str]:
    names = [p.name for p in list_plugins()]
    return [n for n in names if include_slow or n not in SKIP_DEFAULT]


def _params(names, fast=True, table=None):
    return {m: dict((table or FAST).get(m, {})) for m in names} if fast else {}


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


def trained_table(design, names, n_test, n_train, epochs, n_subsets, *, settings=None, sanity=True,
                  equivariance=True, seed=0, save_dir=None, reuse=False,
                  light_methods=(), train_seed=None):
    """D1 or D2 with a classifier trained on the design's own training particles
    (:func:`cryoxplain.classify.train_classifier`, 20 % stratified validation, seed ``train_seed``,
    default ``seed``): the evaluation of every method in ``names`` and the reference maps, plus
    bootstrap CIs of :data:`CI_COLUMNS`."""
    from cryoxplain.classify.train import train_classifier
    from cryoxplain.sim.groundtruth import shortcut_pair

    t0 = time.perf_counter()
    train_seed = seed if train_seed is None else int(train_seed)
    tag = "classifier" if train_seed == 0 else f"classifier_seed{train_seed}"
    out = None if not save_dir else Path(save_dir) / f"{design}_{tag}.safetensors"
    reuse = reuse and out is not None and out.exists()
    d = (conformation_pair if design == "d1" else shortcut_pair)(n_test=n_test, n_train=0 if reuse else n_train)
    t_sim = time.perf_counter() - t0
    # D1: particles appear in every in-plane orientation (d4); D2: the marker is at a fixed pixel (no augmentation)
    aug = "d4" if design == "d1" else "none"
    if reuse:  # the classifier a previous run saved (its training numbers are in the file's metadata)
        from types import SimpleNamespace

        from cryoxplain.models.registry import load_model

        net, info = load_model(out)
        tr = dict(getattr(info, "training", None) or {})
        cls = SimpleNamespace(model=net, val_accuracy=tr.get("val_accuracy", math.nan),
                              train_accuracy=tr.get("train_accuracy", math.nan),
                              confusion=np.asarray(tr.get("confusion", [[0]])))
    else:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
        cls = train_classifier([d.train["A"], d.train["B"]], class_names=["A", "B"], epochs=epochs, seed=train_seed,
                               augment=aug, out=out, force=True)
    t_train = time.perf_counter() - t0 - t_sim
    params = settings if settings is not None else _params(names)
    light = [m for m in names if m in light_methods]
    full = [m for m in names if m not in light_methods]
    res = evaluate_explanations(cls.model, d, full, params=params, n_subsets=n_subsets, device="cpu", sanity=sanity,
                                equivariance=equivariance, seed=seed)
    if light:  # one attribution per image: no E_expl and no randomisation cascade (each would re-run the path)
        r2 = evaluate_explanations(cls.model, d, light, params=params, n_subsets=n_subsets, device="cpu",
                                   sanity=False, equivariance=False, seed=seed, references=False)
        for key in ("rows", "per_image", "maps"):
            refs = {k: v for k, v in res[key].items() if k.startswith("ref:")}
            res[key] = {**{k: v for k, v in res[key].items() if not k.startswith("ref:")}, **r2[key], **refs}
    ci = _cis(res["per_image"], seed)
    # accuracy of the trained model on the paired test particles of both classes (D1) / the test B particles
    from cryoxplain.classify.train import ClassifyTask

    task = ClassifyTask(None, None, None, None)
    xb = np.asarray(d.inputs, np.float32)
    _, acc_b, _ = task.predict(cls.model, xb, np.ones(len(xb), np.int64), "cpu")
    res["info"]["classifier"] = {"n_train_per_class": n_train, "epochs": epochs, "augment": aug, "train_seed": train_seed,
                                 "val_accuracy": cls.val_accuracy, "train_accuracy": cls.train_accuracy,
                                 "n_val": int(cls.confusion.sum()), "confusion": cls.confusion.tolist(),
                                 "test_accuracy_B": acc_b, "seconds_simulate": t_sim, "seconds_train": t_train,
                                 "seconds_evaluate": time.perf_counter() - t0 - t_sim - t_train}
    res["ci"] = ci
    res["maps_inputs"], res["maps_gt"] = np.asarray(d.inputs[:4]), np.asarray(d.gt[:4])
    return res


def _cis(per_image, seed=0):
    from cryoxplain.explain.evaluation import bootstrap_ci

    return {m: {c: bootstrap_ci(v[c], seed=seed) for c in CI_COLUMNS if c in v} for m, v in per_image.items()}


#: the comparisons of the paired table: column → does higher mean better
PAIRED = {"pg4_diff": True, "energy": True, "auc": True, "mufidelity": True, "deletion_zero": False,
          "insertion_zero": True}
MODEL_FREE = ("ref:sobel", "ref:intensity", "ref:centre", "ref:random")


def paired_rows(per_image, seed=0, n_resamples=1000):
    """Spec §8's paired comparison of every method with the best model-free reference map on each column of
    :data:`PAIRED` (best = the highest mean, or lowest for Deletion, among :data:`MODEL_FREE`): the mean
    per-particle difference method − reference (sign flipped for Deletion, so > 0 is better), its
    percentile-bootstrap 95 % interval (:func:`~cryoxplain.explain.evaluation.bootstrap_ci` of the
    difference: both members of a pair are resampled together) and whether it excludes 0."""
    from cryoxplain.explain.evaluation import bootstrap_ci

    out = {}
    for col, higher in PAIRED.items():
        refs = [r for r in MODEL_FREE if r in per_image and col in per_image[r]
                and np.isfinite(per_image[r][col]).any()]
        if not refs:
            continue
        sign = 1.0 if higher else -1.0
        best = max(refs, key=lambda r: sign * np.nanmean(per_image[r][col]))
        for m, cols in per_image.items():
            if m.startswith("ref:") or col not in cols:
                continue
            dv = sign * (np.asarray(cols[col], np.float64) - np.asarray(per_image[best][col], np.float64))
            lo, hi = bootstrap_ci(dv, n_resamples=n_resamples, seed=seed)
            out.setdefault(m, {})[col] = {"ref": best, "diff": float(np.nanmean(dv)), "ci": (lo, hi),
                                          "better": bool(lo > 0), "worse": bool(hi < 0)}
    return out


def _paired_table(paired) -> str:
    cols = list(PAIRED)
    refs = {c: next((r[c]["ref"] for r in paired.values() if c in r), "—") for c in cols}
    lines = ["| method | " + " | ".join(f"{c} − {refs[c]}" for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, r in paired.items():
        cells = []
        for c in cols:
            if c not in r or not np.isfinite(r[c]["diff"]):
                cells.append("—")
                continue
            v = r[c]
            mark = " **better**" if v["better"] else (" worse" if v["worse"] else "")
            cells.append(f"{v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]{mark}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def maps_figure(name, inputs, gt, maps, path, n=4):
    """The first ``n`` test particles ``inputs`` (noisy, ground truth ``gt`` outlined) and each method's map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in maps if not k.startswith("ref:")] + [k for k in ("ref:sobel", "ref:oracle") if k in maps]
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(1.5 * (len(names) + 1), 1.55 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(inputs[i], cmap="gray")
        axes[i, 0].contour(gt[i].astype(float), levels=[0.5], colors="lime", linewidths=0.6)
        for j, k in enumerate(names, 1):
            a = np.asarray(maps[k][i], np.float64)
            v = np.abs(a).max() or 1.0
            axes[i, j].imshow(a, cmap="RdBu_r", vmin=-v, vmax=v)
            axes[i, j].contour(gt[i].astype(float), levels=[0.5], colors="k", linewidths=0.5)
    for j, k in enumerate(["input + GT"] + names):
        axes[0, j].set_title(k.replace("ref:", "ref: ").replace("_", " "), fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name}: signed maps (red +, blue −), ground truth outlined", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_result(res, path, n_maps=4):
    """A trained-design result for :func:`merge_results` (maps of the first ``n_maps`` particles only)."""
    import pickle

    keep = {k: v for k, v in res.items() if k != "maps"}
    keep["maps"] = {k: np.asarray(v[:n_maps]) for k, v in res["maps"].items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(keep, fh)


def load_results(paths) -> list:
    """The pickles of ``paths`` (:func:`save_result`, ``--sweep --save-result``), in order."""
    import pickle

    out = []
    for p in paths:
        with open(p, "rb") as fh:
            out.append(pickle.load(fh))
    return out


def merge_results(parts):
    """One result from runs (:func:`load_results`) of the same design and particles over disjoint method
    lists (each run's reference rows are identical; the first run's are kept; a later run's method rows
    replace an earlier one's); ``info["runs"]`` lists every run's command."""
    base = parts[0]
    base["info"]["runs"] = list(base["info"].get("runs", []))
    for r in parts[1:]:
        if r["info"]["n"] != base["info"]["n"] or r["info"]["design"] != base["info"]["design"]:
            raise SystemExit(f"cannot merge: {r['info']['design']} n={r['info']['n']} vs "
                             f"{base['info']['design']} n={base['info']['n']}")
        for key in ("rows", "per_image", "maps", "ci", "equivariance", "sanity"):
            mine = {k: v for k, v in r.get(key, {}).items() if not k.startswith("ref:")}
            refs = {k: v for k, v in base.get(key, {}).items() if k.startswith("ref:")}
            meth = {k: v for k, v in base.get(key, {}).items() if not k.startswith("ref:")}
            base[key] = {**meth, **mine, **refs}
        c0, c1 = base["info"]["classifier"], r["info"]["classifier"]
        c0["seconds_evaluate"] = c0["seconds_evaluate"] + c1["seconds_evaluate"]
        base["info"]["runs"] += r["info"].get("runs", [])
    return base


#: the columns of the stability table (spec §8 R5: three classifier training seeds)
STABILITY_COLUMNS = ("pg4", "pg4_diff", "energy", "auc", "mufidelity", "insertion_noise")


def stability_section(runs) -> list[str]:
    """Spec §8 (R5) stability over classifier training seeds: each method's mean per seed (same test
    particles, same evaluation seed; ``runs`` from :func:`load_results`, one per seed) and the range and
    standard deviation across seeds."""
    seeds = [r["info"]["classifier"].get("train_seed", 0) for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--stability: the runs must have different training seeds, got {seeds}")
    names = [m for m in runs[0]["rows"] if all(m in r["rows"] for r in runs)]
    accs = ", ".join(f"seed {s}: {r['info']['classifier']['val_accuracy']:.3f}" for s, r in zip(seeds, runs))
    n = runs[0]["info"]["n"]
    lines = [f"### {runs[0]['info']['design']} stability over classifier training seeds (spec §8, R5)", "",
             f"The same {n} test particles and evaluation seed; classifiers trained with seeds {seeds} on the same "
             f"training particles (validation accuracy {accs}). Each cell: the mean per seed, then range "
             "(max − min) and standard deviation across seeds.", ""]
    head = ["map"] + [f"{c} (seeds {'/'.join(map(str, seeds))}; range; sd)" for c in STABILITY_COLUMNS]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for m in names:
        cells = []
        for c in STABILITY_COLUMNS:
            v = np.array([r["rows"][m].get(c, math.nan) for r in runs], float)
            cells.append("—" if not np.isfinite(v).all() else
                         f"{' / '.join(f'{x:.3f}' for x in v)}; {np.ptp(v):.3f}; {np.std(v, ddof=1):.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + [""]


#: spec §8 (R5) stability of the explanations themselves on D1: explanation seeds of the stochastic
#: explainers and each one's main hyper-parameter over its range — (label, plugin, params, n particles)
SWEEP = (
    [(f"smoothgrad seed {k}", "smoothgrad", {"n_samples": 16, "seed": k}, 300) for k in (0, 1, 2)]
    + [(f"smoothgrad noise_level {v}", "smoothgrad", {"n_samples": 16, "noise_level": v}, 300) for v in (0.05, 0.3)]
    + [(f"integrated_gradients steps {v}", "integrated_gradients", {"steps": v}, 300) for v in (8, 50)]
    + [(f"blur_ig max_sigma {v}", "blur_ig", {"steps": 16, "max_sigma": v}, 300) for v in (8.0, 32.0)]
    + [(f"spectral_lens seed {k} (cheap)", "spectral_lens", {"n_samples": 32, "levels": 6, "seed": k}, 300)
       for k in (1, 2)]
    + [("spectral_lens defaults (256 samples × 11 levels)", "spectral_lens", {}, 60)]
)
SWEEP_COLUMNS = ("pg4", "pg4_diff", "energy", "auc", "mufidelity")


def sweep_table(design, entries, save_dir, seed=0):
    """Evaluate each ``(label, plugin, params, n)`` of ``entries`` on the first n test particles of
    ``design`` with the saved classifier (no E_expl/sanity): ``{label: {column: mean, column_ci: (lo, hi),
    "seconds_per_image": …}}``."""
    from cryoxplain.explain.evaluation import bootstrap_ci
    from cryoxplain.models.registry import load_model
    from cryoxplain.sim.groundtruth import shortcut_pair

    path = Path(save_dir) / f"{design}_classifier.safetensors"
    if not path.exists():
        raise SystemExit(f"--sweep needs the classifier of a previous run: {path} (use --save-models there)")
    net, _ = load_model(path)
    n_max = max(e[3] for e in entries)
    d = (conformation_pair if design == "d1" else shortcut_pair)(n_test=n_max, n_train=0)
    rows = {}
    for label, plugin, prm, n in entries:
        t0 = time.perf_counter()
        r = evaluate_explanations(net, d, [plugin], params={plugin: prm}, n_images=n, n_subsets=100, device="cpu",
                                  equivariance=False, sanity=False, references=False, seed=seed)
        per = r["per_image"][plugin]
        rows[label] = {**{c: r["rows"][plugin][c] for c in SWEEP_COLUMNS},
                       **{f"{c}_ci": bootstrap_ci(per[c], seed=seed) for c in ("pg4", "pg4_diff")},
                       "n": n, "seconds_per_image": r["rows"][plugin]["seconds_per_image"]}
        print(f"  {label}: pg4_diff {rows[label]['pg4_diff']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def sweep_section(design, rows) -> list[str]:
    lines = [f"### {design.upper()} stability of the explanations: explanation seeds and main hyper-parameters (spec §8, R5)",
             "", "The full-size D1 classifier (seed 0); the first n test particles; `pg4`, `pg4_diff` with bootstrap 95 % "
             "intervals. The settings of the main table are `smoothgrad seed 0`, `integrated_gradients steps 16`, "
             "`blur_ig max_sigma 0` (= 16 px) and `spectral_lens` cheap seed 0 (rows of the D1 table).", "",
             "| setting | n | pg4 | pg4_diff | energy | auc | mufidelity | seconds_per_image |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['n']} | {r['pg4']:.3f} [{r['pg4_ci'][0]:.3f}, {r['pg4_ci'][1]:.3f}] | "
                     f"{r['pg4_diff']:.3f} [{r['pg4_diff_ci'][0]:.3f}, {r['pg4_diff_ci'][1]:.3f}] | {r['energy']:.3f} | "
                     f"{r['auc']:.3f} | {r['mufidelity']:.3f} | {r['seconds_per_image']:.3f} |")
    return lines + [""]


def _classifier(design, d, tag, n_train, epochs, save_dir, reuse, seed, **arch):
    """Train (or, with ``reuse``, load) the ``design`` classifier ``tag`` on ``d.train``; returns
    ``(model, info)`` with the validation numbers."""
    from cryoxplain.classify.train import train_classifier
    from cryoxplain.models.registry import load_model

    out = None if not save_dir else Path(save_dir) / f"{design}_{tag}.safetensors"
    aug = "d4" if design == "d1" else "none"
    if reuse and out is not None and out.exists():
        net, info = load_model(out)
        tr = dict(getattr(info, "training", None) or {})
        return net.eval(), {"val_accuracy": tr.get("val_accuracy", math.nan), "n_val": tr.get("n_val"),
                            "confusion": tr.get("confusion"), "epochs": tr.get("epochs"), "augment": tr.get("augment"),
                            "n_per_class": tr.get("n_per_class"), "file": str(out), "trained_s": 0.0}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cls = train_classifier([d.train["A"], d.train["B"]], class_names=["A", "B"], epochs=epochs, seed=seed,
                           augment=aug, out=out, force=True, arch_config=arch or None)
    return cls.model.eval(), {"val_accuracy": cls.val_accuracy, "n_val": int(cls.confusion.sum()),
                              "confusion": cls.confusion.tolist(), "epochs": epochs, "augment": aug,
                              "n_per_class": [n_train, n_train], "file": str(out), "trained_s": time.perf_counter() - t0}


def _logit_e(net, x, angles):
    """The classifier's own E on the logits: ‖z(R_θx) − z(x)‖ / ‖z(x)‖ pooled over images, per angle."""
    from cryoxplain.geometry.rotate import rotate

    with torch.no_grad():
        z0 = net(x).double()
        return {float(t): float(torch.linalg.norm(net(rotate(x, math.radians(t))).double() - z0) / torch.linalg.norm(z0))
                for t in angles}


def c4_table(design, names, settings, n_test, n_train, epochs, n_offgrid, *, save_dir=None, reuse=False, seed=0,
             ordinary_epochs=None):
    """E_expl (grid angles and ``n_offgrid`` stratified off-grid angles) of every explainer in ``names``
    on two classifiers trained on ``design``: the ordinary ``ParticleClassifier`` and the C4-invariant
    one (``symmetry="c4"``, group averaging over the four quarter turns), with each model's own
    invariance (agreement, KL, logit E) on the same particles and angles."""
    from cryoxplain.explain.base import bind_target
    from cryoxplain.imaging.normalize import normalize
    from cryoxplain.metrics.equivariance import GRID_ANGLES_DEG, classifier_invariance, offgrid_angles
    from cryoxplain.sim.groundtruth import shortcut_pair

    t0 = time.perf_counter()
    d = (conformation_pair if design == "d1" else shortcut_pair)(n_test=n_test, n_train=n_train)
    x = normalize(torch.as_tensor(np.asarray(d.inputs, np.float32))[:, None])[0]
    off = offgrid_angles(n_offgrid, seed)
    angles = list(GRID_ANGLES_DEG) + off
    res = {"design": design, "n_test": n_test, "offgrid": off, "models": {}, "seconds_simulate": time.perf_counter() - t0}
    for tag, arch in (("classifier", {}), ("c4_classifier", {"symmetry": "c4"})):
        ep = epochs if tag == "c4_classifier" or ordinary_epochs is None else ordinary_epochs
        net, info = _classifier(design, d, tag, n_train, ep, save_dir, reuse, seed, **arch)
        tgt = bind_target("class:1", net, x)
        own = classifier_invariance(net, x, angles)
        le = _logit_e(net, x, angles)
        with torch.no_grad():
            acc_b = float((net(x).argmax(1) == 1).double().mean())
        rows = {}
        runs = [(m, m, settings.get(m, {})) for m in names]
        if "blur_ig" in names:  # the periodic blur border commutes with rot90 about N//2 (plugins/blur_ig.py)
            runs.append(("blur_ig[border=periodic]", "blur_ig", {**settings.get("blur_ig", {}), "border": "periodic"}))
        if "ablation_path" in names:  # periodic baseline blur and regulariser, window centred on N//2
            runs.append(("ablation_path[border=periodic]", "ablation_path",
                         {**settings.get("ablation_path", {}), "border": "periodic"}))
        if "sift_ablation" in names:  # likewise its Gaussian scale space (plugins/sift_ablation)
            runs.append(("sift_ablation[border=periodic]", "sift_ablation",
                         {**settings.get("sift_ablation", {}), "border": "periodic"}))
        for m, plugin, prm in runs:
            t1 = time.perf_counter()
            try:
                e = explanation_equivariance(create_explainer(plugin, **prm), net, x, tgt, angles=n_offgrid,
                                             seed=seed, model_metric=False)
            except Exception as exc:  # record and go on: one method must not sink the table
                print(f"  {tag} {m}: E_expl failed: {exc}", flush=True)
                continue
            rows[m] = {**{f"e{int(g)}": e.grid.get(float(g), math.nan) for g in GRID_ANGLES_DEG},
                       "e_off_mean": e.offgrid_mean, "e_off_max": max(e.offgrid.values()) if e.offgrid else math.nan,
                       "floor": float(np.mean(list(e.floor.values()))) if e.floor else math.nan,
                       "seed_floor": math.nan if e.seed_floor is None else e.seed_floor,
                       "seconds": time.perf_counter() - t1}
            print(f"  {tag} {m}: grid {[round(v, 6) for v in e.grid.values()]} off {e.offgrid_mean:.3f} "
                  f"({time.perf_counter() - t1:.0f} s)", flush=True)
        res["models"][tag] = {"info": info, "rows": rows, "own": own, "logit_e": le, "test_accuracy_B": acc_b}
    return res


def c4_section(res, settings) -> list[str]:
    off = res["offgrid"]
    lines = [f"### E_expl on a C4-invariant classifier ({res['design'].upper()})", "",
             f"Off-grid angles (stratified, seed 0): {', '.join(f'{a:.1f}°' for a in off)}; "
             f"{res['n_test']} test particles (class B), target class:1, explainer settings {settings}.", ""]
    names = {"classifier": "ordinary `classifier`", "c4_classifier": "`classifier` with `symmetry: c4`"}
    for tag, r in res["models"].items():
        i = r["info"]
        own, le = r["own"], r["logit_e"]
        og = [t for t in own if t not in off]
        lines += [f"**{names[tag]}**: validation accuracy **{i['val_accuracy']:.3f}** on {i['n_val']} particles "
                  f"(confusion {i['confusion']}; {i['n_per_class']} training particles per class, {i['epochs']} "
                  f"epochs, augment `{i['augment']}`), accuracy on the test B particles {r['test_accuracy_B']:.3f}. "
                  f"Model's own invariance — logit E on the grid {max(le[t] for t in og):.2e} (max), off the grid "
                  f"{np.mean([le[t] for t in off]):.3f} (mean); agreement grid {min(own[t]['agreement'] for t in og):.3f} "
                  f"(min), off-grid {np.mean([own[t]['agreement'] for t in off]):.3f}; KL grid "
                  f"{max(own[t]['kl'] for t in og):.2e}, off-grid {np.mean([own[t]['kl'] for t in off]):.2e} nats.", "",
                  _sci_table(r["rows"], ("e90", "e180", "e270", "e_off_mean", "e_off_max", "floor", "seed_floor",
                                         "seconds")), ""]
    return lines


def _sci_table(rows, cols) -> str:
    """Markdown table; values below 10⁻³ in scientific notation (E_expl on the grid of an invariant model)."""
    def fmt(v):
        return "—" if not np.isfinite(v) else f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"
    lines = ["| map | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(fmt(r.get(c, math.nan)) for c in cols) + " |" for m, r in rows.items()]
    return "\n".join(lines)


def d1_table(names, n_test, n_train, epochs, n_subsets):  # the former entry point
    return trained_table("d1", names, n_test, n_train, epochs, n_subsets)


def _ci_table(ci) -> str:
    cols = [c for c in CI_COLUMNS if any(c in r for r in ci.values())]
    lines = ["| map | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, r in ci.items():
        cells = [("—" if c not in r or not np.all(np.isfinite(r[c])) else f"[{r[c][0]:.3f}, {r[c][1]:.3f}]")
                 for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trained_section(design, res, settings) -> list[str]:
    c = res["info"]["classifier"]
    title = {"d1": "D1 conformation pair (B = A + one domain; GT = the domain's projection)",
             "d2": "D2 planted shortcut (class B = particle + marker spot at pixel (10, 10); GT = disc r = 3 about it)"}
    return [f"### {title[design]}", "",
            f"Classifier: `train_classifier` (ParticleClassifier, seed 0), {c['n_train_per_class']} training "
            f"particles per class, {c['epochs']} epochs, augment `{c['augment']}`; validation accuracy "
            f"**{c['val_accuracy']:.3f}** on {c['n_val']} held-out particles (confusion {c['confusion']}), training "
            f"accuracy {c['train_accuracy']:.3f}, accuracy on the {res['info']['n']} test B particles "
            f"{c['test_accuracy_B']:.3f}. Target {res['info']['target']}; n_test = {res['info']['n']}, "
            f"Diff = {res['info']['diff_count']}. Times: simulate {c['seconds_simulate']:.0f} s, train "
            f"{c['seconds_train']:.0f} s, evaluate {c['seconds_evaluate']:.0f} s.", "",
            format_table(res["rows"], markdown=True), "",
            "Bootstrap 95 % intervals of the mean (1000 resamples of the test particles):", "",
            _ci_table(res["ci"]), "",
            "Paired comparison with the best model-free reference map of each column (spec §8: the mean "
            "per-particle difference, > 0 = better, Deletion's sign flipped; its bootstrap 95 % interval over the "
            "same resampled particles; **better** when the interval lies above 0):", "",
            _paired_table(paired_rows(res["per_image"])), ""]


def _extras_note(a) -> str:
    """What the footer of a D1/D2 block says about the E_expl and sanity columns."""
    parts = [] if a.no_equivariance else ["`e_grid` = E_expl on the grid"]
    if not a.no_sanity:
        parts.append("`sanity_rho` = Spearman ρ after the full model-parameter randomisation cascade (lower = the "
                     "map depends on the weights)")
    skipped = [w for w, off in (("E_expl", a.no_equivariance), ("the randomisation cascade", a.no_sanity)) if off]
    note = "; ".join(parts)
    if parts:
        note += f"; not computed (cost) for {a.light or 'none'}"
    if skipped:
        note += ("; " if note else "") + " and ".join(skipped) + " not computed in this run (--no-equivariance/--no-sanity)"
    return note + "."


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/benchmarks-explanation-evaluation.md")
    ap.add_argument("--n-subsets", type=int, default=100)
    ap.add_argument("--slow-methods", action="store_true", help="also ablation_path")
    ap.add_argument("--d1", action="store_true", help="train a D1 classifier and evaluate on D1 (slow on CPU)")
    ap.add_argument("--d2", action="store_true", help="train a D2 (shortcut) classifier and evaluate on D2")
    ap.add_argument("--trained-only", action="store_true",
                    help="skip P1/D3a; replace only the D1/D2 block of --out")
    ap.add_argument("--cheap", action="store_true",
                    help="D1/D2: every installed explainer (ablation paths included) at the CHEAP settings")
    ap.add_argument("--methods", default="", help="comma-separated explainers for D1/D2 (default: see --cheap)")
    ap.add_argument("--no-sanity", action="store_true", help="D1/D2: skip the randomisation cascade")
    ap.add_argument("--sanity-final", action="store_true",
                    help="D1/D2: only the cascade's last step (every layer re-initialised; same sanity_rho, 2 "
                         "attributions per method instead of one per layer)")
    ap.add_argument("--save-result", default="", help="D1/D2: also pickle the result here (for --merge)")
    ap.add_argument("--train-seed", type=int, default=None,
                    help="D1/D2: the classifier's training seed (default 0; the evaluation seed stays 0); saved as "
                         "<design>_classifier_seed<N>.safetensors")
    ap.add_argument("--sweep", default="", help="D1: evaluate the SWEEP settings with the saved classifier "
                    "(--save-models DIR); 'all' or a comma-separated list of SWEEP indices (to split over processes); "
                    "with --save-result, pickle the rows; --merge-sweep FILES writes the block")
    ap.add_argument("--merge-sweep", default="", help="comma-separated --sweep --save-result files: write the sweep block")
    ap.add_argument("--stability", default="",
                    help="comma-separated --save-result files of one design and method list, one per --train-seed: "
                         "write the stability block (spec §8 R5) without computing anything")
    ap.add_argument("--merge", default="",
                    help="comma-separated --save-result files of one design over disjoint --methods: write their "
                         "block (and the maps figure) without computing anything")
    ap.add_argument("--no-equivariance", action="store_true", help="D1/D2: skip E_expl (e_grid)")
    ap.add_argument("--c4", action="store_true",
                    help="E_expl of every explainer on a C4-invariant classifier (symmetry='c4') and on the "
                         "ordinary one, trained on --c4-design; replaces the c4 block of --out")
    ap.add_argument("--c4-design", default="d2", choices=("d1", "d2"))
    ap.add_argument("--c4-n-test", type=int, default=4, help="--c4: particles E_expl is pooled over")
    ap.add_argument("--c4-n-train", type=int, default=300, help="--c4: training particles per class")
    ap.add_argument("--c4-epochs", type=int, default=40,
                    help="--c4: epochs of the C4 classifier (group averaging learns slower: 0.63 validation at 8, 0.96 at 40)")
    ap.add_argument("--c4-ordinary-epochs", type=int, default=8, help="--c4: epochs of the ordinary classifier")
    ap.add_argument("--n-offgrid", type=int, default=4, help="--c4: stratified off-grid angles")
    ap.add_argument("--save-models", default="", help="D1/D2: also write the trained classifiers to this folder "
                    "(scripts/make_sift_figures.py --model DIR/d1_classifier.safetensors)")
    ap.add_argument("--reuse-models", action="store_true", help="load DIR/<design>_classifier.safetensors of "
                    "--save-models when it exists instead of training")
    ap.add_argument("--light", default="ablation_path,sift_ablation",
                    help="D1/D2: methods evaluated without E_expl and the randomisation cascade (cost)")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=12)
    a = ap.parse_args(argv)
    if a.c4 or a.merge or a.stability or a.sweep or a.merge_sweep:
        a.trained_only = True  # the c4 / merged block replaces only itself in --out
    names = methods(a.slow_methods)
    t0 = time.perf_counter()
    parts = []
    if not a.trained_only:
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
                  format_table(p1["rows"], columns=("pg0", "pg4", "energy", "rank", "auc", "deletion_zero",
                                                    "insertion_zero", "deletion_zero_norm", "insertion_zero_norm",
                                                    "mufidelity", "global", "gini", "hf", "zlib", "e_grid",
                                                    "e_grid_p2", "seconds_per_image"), markdown=True), ""]
        fig = Path(a.out).parent / "figures" / "explanation-evaluation" / "p1_deletion_insertion.png"
        p1_curves_figure(p1, fig)
        parts += [f"![P1 deletion and insertion curves](figures/explanation-evaluation/{fig.name})", ""]
        print("D3a …")
        d3 = d3a_table(names)
        cols = ("out_of_support", "psf_mass", "on_particle", "area_fraction", "enrichment", "r90", "seconds_per_image")
        parts += ["## D3a analytic denoiser (Gaussian σ_d = 1.5), target pixel:32,20 on a D1 'A' particle (noisy)", "",
                  "Support = the 13×13 kernel square (radius 6); PSF support S_p from the gradient (≥ 1e-3 of its max).",
                  "", format_table(d3, columns=cols, markdown=True), ""]
    blocks = {}
    designs = [d for d in ("d1", "d2") if getattr(a, d)]
    given = " ".join(argv if argv is not None else sys.argv[1:])

    def _paths(v):
        return [p for p in v.split(",") if p]

    sweep_rows = None
    if a.sweep:
        idx = range(len(SWEEP)) if a.sweep == "all" else [int(v) for v in a.sweep.split(",")]
        sweep_rows = sweep_table("d1", [SWEEP[i] for i in idx], a.save_models or "models")
        if a.save_result:  # one part of a split sweep: its block is written by --merge-sweep
            import pickle

            with open(a.save_result, "wb") as fh:
                pickle.dump({"rows": sweep_rows, "order": list(idx)}, fh)
            sweep_rows = None
        designs = []
    if a.merge_sweep:
        order = {SWEEP[i][0]: i for i in range(len(SWEEP))}
        merged = {k: v for q in load_results(_paths(a.merge_sweep)) for k, v in q["rows"].items()}
        sweep_rows = dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], 99)))
    if sweep_rows is not None:
        blocks["d1-sweep"] = "\n".join([MARK.format("d1-sweep", "begin")] + sweep_section("d1", sweep_rows) + [
            f"Generated by `python benchmarks/explanation_evaluation.py {given}` "
            "(CPU; `--sweep` runs, one per process, merged by `--merge-sweep`).", MARK.format("d1-sweep", "end")])
    if a.stability:
        runs = load_results(_paths(a.stability))
        key = f"{runs[0]['info']['design'].lower()}-stability"
        blocks[key] = "\n".join([MARK.format(key, "begin")] + stability_section(runs) + [
            f"Generated by `python benchmarks/explanation_evaluation.py {given}` "
            "from one `--save-result` run per `--train-seed` (their commands are in each file).", MARK.format(key, "end")])
        designs = []
    if a.merge:
        r = merge_results(load_results(_paths(a.merge)))
        dn = r["info"]["design"].lower()
        runs = r["info"]["runs"]
        settings = {}
        for run in runs:
            settings.update(run["settings"])
        fig = Path(a.out).parent / "figures" / "explanation-evaluation" / f"{dn}_maps.png"
        maps_figure(r["info"]["design"], r["maps_inputs"], r["maps_gt"], r["maps"], fig, n=min(4, len(r["maps_gt"])))
        gen = "; ".join(f"`OMP_NUM_THREADS=1 {run['command']}` ({run['wall_s']:.0f} s)" for run in runs)
        blocks[dn] = "\n".join(
            [MARK.format(dn, "begin")] + trained_section(dn, r, settings)
            + [f"![{dn.upper()}: maps of the first test particles](figures/explanation-evaluation/{fig.name})", "",
               f"Generated by {len(runs)} processes on CPU, {gen}, merged by `python benchmarks/explanation_evaluation.py "
               f"{given}`. Explainer settings: {settings}; faithfulness on "
               f"the class probability, zero and noise baselines, MuFidelity with {r['info']['n_subsets']} subsets; "
               + runs[0]["note"], MARK.format(dn, "end")])
        designs = []
    if a.c4:
        tnames = [m.strip() for m in a.methods.split(",") if m.strip()] or [p.name for p in list_plugins()]
        settings = _params(tnames, table=CHEAP)
        cmd = "python benchmarks/explanation_evaluation.py " + given
        print(f"C4 ({a.c4_design.upper()}) …", flush=True)
        t1 = time.perf_counter()
        r = c4_table(a.c4_design, tnames, settings, a.c4_n_test, a.c4_n_train, a.c4_epochs, a.n_offgrid,
                     save_dir=a.save_models or None, reuse=a.reuse_models, ordinary_epochs=a.c4_ordinary_epochs)
        blocks["c4"] = "\n".join([MARK.format("c4", "begin")] + c4_section(r, settings) + [
            f"Generated by `OMP_NUM_THREADS=1 {cmd}` (CPU, {time.perf_counter() - t1:.0f} s).", MARK.format("c4", "end")])
    if designs:
        tnames = ([m.strip() for m in a.methods.split(",") if m.strip()] if a.methods else
                  [p.name for p in list_plugins()] if a.cheap else names)
        settings = _params(tnames, table=CHEAP if a.cheap else FAST)
        cmd = "python benchmarks/explanation_evaluation.py " + given
        for dn in designs:
            print(f"{dn.upper()} …", flush=True)
            t1 = time.perf_counter()
            r = trained_table(dn, tnames, a.n_test, a.n_train, a.epochs, a.n_subsets, settings=settings,
                              sanity=False if a.no_sanity else ("final" if a.sanity_final else True),
                              equivariance=not a.no_equivariance,
                              save_dir=a.save_models or None,
                              reuse=a.reuse_models, light_methods=tuple(a.light.split(",")) if a.light else (),
                              train_seed=a.train_seed)
            blocks[dn] = "\n".join(
                [MARK.format(dn, "begin")]
                + trained_section(dn, r, settings)
                + [f"Generated by `OMP_NUM_THREADS=1 {cmd}` (CPU, {time.perf_counter() - t1:.0f} s). Explainer "
                   f"settings: {settings}; faithfulness on the class probability, zero and noise baselines, "
                   f"MuFidelity with {a.n_subsets} subsets; " + _extras_note(a),
                   MARK.format(dn, "end")])
            if a.save_result:
                r["info"]["runs"] = [{"command": cmd, "settings": settings, "wall_s": time.perf_counter() - t1,
                                      "note": _extras_note(a)}]
                save_result(r, Path(a.save_result))
    out = Path(a.out)
    if a.trained_only:
        import fcntl
        import tempfile

        with open(Path(tempfile.gettempdir()) / "explanation_evaluation.lock", "w") as lock:  # D1 and D2 may be run as two processes
            fcntl.flock(lock, fcntl.LOCK_EX)
            text = out.read_text() if out.exists() else "# Benchmark: evaluating explanations against ground truth\n"
            for dn, b in blocks.items():
                i, j = text.find(MARK.format(dn, "begin")), text.find(MARK.format(dn, "end"))
                if i >= 0 and j > i:
                    text = text[:i] + b + text[j + len(MARK.format(dn, "end")):]
                else:
                    text = text.rstrip("\n") + "\n\n" + b + "\n"
            out.write_text(text)
    else:
        for b in blocks.values():
            parts += [b, ""]
        parts.append(f"Total run time: {time.perf_counter() - t0:.0f} s.")
        out.write_text("\n".join(parts) + "\n")
    print(f"wrote {a.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
