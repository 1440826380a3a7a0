#!/usr/bin/env python
"""Reproduce the thesis' spiral-vs-cartesian denoiser experiments (thesis §7.4, Fig 7.7–7.9; spec
denoising.md §6) on particles simulated from the real 70S ribosome map.

Three experiments, each training every model on the same simulated particles (same orientations,
same noise, same validation split, same seed):

    snr4       SNR 1/4
    snr64      SNR 1/64
    snr64_aug  SNR 1/64, random-rotation augmentation every epoch (train_denoiser augment="rotate")

Models of matched size (same depth / width / kernel size; parameter counts printed and checked):
``spiral`` (cryoxplain.models.spiral), ``cartesian`` (DnCNN-style, cryoxplain.models.cartesian) and,
when the optional ``e2cnn`` package is installed, ``steerable``: a C_N steerable CNN of the same
depth (the upper anchor: exactly equivariant to 90° rotations on the pixel grid; for N = 8 the 45°
steps are only approximate with 3×3 kernels).

``--target signal`` (default, the thesis' formulation §7.1): the networks predict the clean image,
``F(x) = body(x)`` (config ``residual=False``; the spiral also ``outside="zero"``, so it makes no
prediction outside its disc).  ``--target noise``: residual learning, ``F(x) = x − body(x)``
(``residual=True``).  Both use the same layers and parameters, and every model is an ordinary
registered architecture (``build_model(arch, **config)``; a model trained with either target can
be saved and used by ``cryoxplain denoise``).

Per epoch (epoch 0 = before training) the history records the validation denoising score (MSE
loss in normalised units, SNR_out in dB against the ground truth, PSNR), the training loss, and
the equivariance error E(θ) of :mod:`cryoxplain.metrics.equivariance` on held-out noisy particles
(``equivariance``: mean over fixed random off-grid angles; ``equivariance_grid``: 90/180/270°;
``equivariance_floor``: the rotation's own round-trip error).

Outputs in ``--out`` (default ``equivariance_experiments/``):

    results.h5           /<experiment>/<model>/<column> per-epoch arrays; attrs: config, params
    fig_<experiment>.png score and equivariance vs epoch (like thesis Fig 7.7 / 7.8 / 7.9)
    summary.json         final numbers and the check of each thesis claim
    stdout               one table: final score / equivariance per experiment and model

Configurations (``--config``): ``tiny`` (seconds; the test suite), ``quick`` (2 CPU cores,
≤ 15 min on an idle machine), ``full`` (for a GPU; see docs/equivariance.md).  Example::

    nice python benchmarks/equivariance_experiments.py --config quick --out eqv_quick
    python benchmarks/equivariance_experiments.py --config full --device cuda --out eqv_full
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
RIBOSOME = REPO.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"
#: the map's header has no voxel size; ASPIRE's tutorials treat it as a 65-voxel downsampled map.
#: We assume 5 Å/voxel (a ~250 Å ribosome in a 325 Å box).  Only physical units depend on it.
RIBOSOME_PIXEL_SIZE = 5.0

EXPERIMENTS = {
    "snr4": {"snr": 1 / 4, "augment": "none", "label": "SNR 1/4"},
    "snr64": {"snr": 1 / 64, "augment": "none", "label": "SNR 1/64"},
    "snr64_aug": {"snr": 1 / 64, "augment": "rotate", "label": "SNR 1/64 + random rotations"},
}

CONFIGS = {
    # the test suite: seconds
    "tiny": dict(box=17, pixel_size=20.0, n_particles=40, val_fraction=0.25, epochs=2, depth=3, width=4,
                 kernel_size=3, batch_size=8, lr=2e-3, eq_images=4, eq_angles=2, n_rot=4),
    # 2 CPU cores, <= 15 min on an idle machine
    "quick": dict(box=33, pixel_size=10.0, n_particles=600, val_fraction=1 / 6, epochs=12, depth=5, width=16,
                  kernel_size=3, batch_size=16, lr=2e-3, eq_images=16, eq_angles=4, n_rot=8),
    # a GPU (one H100: tens of minutes)
    "full": dict(box=65, pixel_size=5.0, n_particles=6000, val_fraction=1 / 12, epochs=40, depth=8, width=32,
                 kernel_size=3, batch_size=32, lr=1e-3, eq_images=64, eq_angles=8, n_rot=8),
}




# ---------------------------------------------------------------------------------------------
# optional exactly-equivariant anchor: a C_N steerable CNN (e2cnn)
# ---------------------------------------------------------------------------------------------
def steerable_available() -> bool:
    try:
        import e2cnn  # noqa: F401
    except Exception:
        return False
    return True


def _register_steerable():
    """Register architecture ``steerable`` (only in this process) when e2cnn is installed."""
    from cryoxplain.models.registry import _ARCHS, register_architecture

    if "steerable" in _ARCHS:
        return
    from e2cnn import gspaces
    from e2cnn import nn as enn

    class SteerableDenoiser(torch.nn.Module):
        """DnCNN-style residual denoiser built from C_N steerable convolutions (Weiler & Cesa 2019).

        Same layer pattern as the cartesian model (conv+ReLU, (depth−2)×[conv+BN+ReLU], conv),
        hidden features are ``fields`` regular representations of C_N (``fields·N`` channels), input
        and output are scalar fields; exactly equivariant under rotations by multiples of 360°/N.
        """

        input_shape = None

        def __init__(self, depth=5, width=16, kernel_size=3, n_rot=8, fields=None, residual=True):
            super().__init__()
            self.residual = bool(residual)
            self.depth, self.width, self.kernel_size, self.n_rot = int(depth), int(width), int(kernel_size), int(n_rot)
            self.fields = int(fields) if fields else max(1, round(width / math.sqrt(n_rot)))
            gs = gspaces.Rot2dOnR2(self.n_rot)
            self.t_in = enn.FieldType(gs, [gs.trivial_repr])
            th = enn.FieldType(gs, self.fields * [gs.regular_repr])
            p = self.kernel_size // 2
            layers = [enn.R2Conv(self.t_in, th, self.kernel_size, padding=p), enn.ReLU(th, inplace=True)]
            for _ in range(self.depth - 2):
                layers += [enn.R2Conv(th, th, self.kernel_size, padding=p, bias=False), enn.InnerBatchNorm(th),
                           enn.ReLU(th, inplace=True)]
            layers.append(enn.R2Conv(th, self.t_in, self.kernel_size, padding=p))
            self.body = enn.SequentialModule(*layers)

        def config(self):
            return {"depth": self.depth, "width": self.width, "kernel_size": self.kernel_size,
                    "n_rot": self.n_rot, "fields": self.fields, "residual": self.residual}

        def forward(self, x):
            y = self.body(enn.GeometricTensor(x, self.t_in)).tensor
            return x - y if self.residual else y

    register_architecture("steerable", task="denoise")(SteerableDenoiser)


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def model_specs(cfg: dict, models: list[str], target: str = "signal") -> dict[str, tuple[str, dict]]:
    """``name -> (arch, config)`` of matched size; the steerable model's field count is chosen so that
    its parameter count is closest to the cartesian one's.  ``target``: ``signal`` (the networks
    predict the clean image, config ``residual=False``; the thesis' setting) or ``noise``
    (residual learning, ``residual=True``)."""
    from cryoxplain.models.registry import build_model

    if target not in ("signal", "noise"):
        raise SystemExit(f"unknown target {target!r}; choose signal or noise")
    residual = target == "noise"
    base = {"depth": cfg["depth"], "width": cfg["width"], "kernel_size": cfg["kernel_size"]}
    specs: dict[str, tuple[str, dict]] = {}
    for name in models:
        if name == "cartesian":
            specs[name] = ("cartesian", dict(base, residual=residual))
        elif name == "spiral":
            # predicting the signal, the spiral makes no claim outside its disc (zero there, as in
            # the thesis); the residual spiral passes the input through there, as shipped before
            outside = "passthrough" if residual else "zero"
            specs[name] = ("spiral", dict(base, **spiral_geometry(cfg), residual=residual, outside=outside))
        elif name == "steerable":
            _register_steerable()
            target_n = n_params(build_model("cartesian", **base))
            best = None
            f0 = max(1, round(cfg["width"] / math.sqrt(cfg["n_rot"])))
            for f in sorted({max(1, f0 - 1), f0, f0 + 1}):
                c = dict(base, n_rot=cfg["n_rot"], fields=f, residual=residual)
                d = abs(n_params(build_model("steerable", **c)) - target_n)
                if best is None or d < best[0]:
                    best = (d, c)
            specs[name] = ("steerable", best[1])
        else:
            raise SystemExit(f"unknown model {name!r}; choose from spiral, cartesian, steerable")
    return specs


def spiral_geometry(cfg: dict) -> dict:
    """Geometry keys of the spiral model for the configured box (the factory's box-size keyword;
    windings and samples keep the spiral model's defaults: ~1 px spacing)."""
    import inspect

    from cryoxplain.models.registry import _ARCHS, _ensure_builtin_archs

    _ensure_builtin_archs()
    if "spiral" not in _ARCHS:
        raise SystemExit("the spiral architecture is not available in this installation")
    params = inspect.signature(_ARCHS["spiral"][0]).parameters
    for key in ("box_size", "box", "size", "image_size"):
        if key in params:
            return {key: cfg["box"]}
    return {}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def simulate(cfg: dict, snr: float, seed: int, density_path: Path | None = None):
    """Noisy and clean particles at ``snr`` (same orientations and noise draws for every SNR)."""
    from cryoxplain.sim import load_density, simulate_particles

    dens = load_density(density_path or RIBOSOME, pixel_size=RIBOSOME_PIXEL_SIZE)
    res = simulate_particles(dens, cfg["n_particles"], box=cfg["box"], pixel_size=cfg["pixel_size"], snr=snr,
                             seed=seed)
    return res.noisy, res.clean, res.params


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def run(cfg: dict, experiments: list[str], models: list[str], out: Path, *, seed: int = 0, device: str = "auto",
        density: Path | None = None, target: str = "signal", log=print) -> dict:
    """Run the experiments; write results.h5, figures and summary.json into ``out``; return the results."""
    from cryoxplain.metrics.equivariance import EquivarianceCallback
    from cryoxplain.models.registry import build_model
    from cryoxplain.denoise import train_denoiser

    out.mkdir(parents=True, exist_ok=True)
    specs = model_specs(cfg, models, target)
    sizes = {}
    for name, (arch, conf) in specs.items():
        torch.manual_seed(seed)
        sizes[name] = n_params(build_model(arch, **conf))
    log("models: " + ", ".join(f"{k} {specs[k][0]}{specs[k][1]} ({sizes[k]} parameters)" for k in specs))
    if "spiral" in sizes and "cartesian" in sizes and sizes["spiral"] != sizes["cartesian"]:
        # same layer pattern, so the counts must agree exactly: even one missing parameter (the
        # output bias) changes the epoch-0 equivariance comparison several-fold (docs/equivariance.md §5)
        rel = abs(sizes["spiral"] - sizes["cartesian"]) / sizes["cartesian"]
        log(f"WARNING: spiral and cartesian parameter counts differ ({sizes['spiral']} vs {sizes['cartesian']}, "
            f"{100 * rel:.2f}%); the models are not matched")

    data_cache: dict[float, tuple] = {}
    results: dict = {"config": dict(cfg, target=target), "seed": seed, "models": {k: {"arch": a, "config": c, "n_params": sizes[k]}
                                                             for k, (a, c) in specs.items()},
                     "experiments": {}, "sim": {}}
    for exp in experiments:
        e = EXPERIMENTS[exp]
        if e["snr"] not in data_cache:
            t0 = time.perf_counter()
            data_cache[e["snr"]] = simulate(cfg, e["snr"], seed, density)
            log(f"simulated {cfg['n_particles']} particles at SNR {e['snr']:.4g} ({time.perf_counter() - t0:.1f}s)")
        noisy, clean, sim_params = data_cache[e["snr"]]
        results["sim"][exp] = {k: v for k, v in sim_params.items() if isinstance(v, (int, float, str)) or v is None}
        results["experiments"][exp] = {}
        for name, (arch, conf) in specs.items():
            t0 = time.perf_counter()
            cb = EquivarianceCallback(n_images=cfg["eq_images"], n_offgrid=cfg["eq_angles"], seed=seed)
            res = train_denoiser(noisy, clean, arch=arch, arch_config=deepcopy(conf), epochs=cfg["epochs"], seed=seed,
                                 val_fraction=cfg["val_fraction"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                                 augment=e["augment"], device=device, callbacks=[cb], progress=False)
            hist = {k: np.asarray(v, dtype=np.float64) for k, v in res.history.items()}
            results["experiments"][exp][name] = hist
            log(f"[{exp}] {name:<10} {time.perf_counter() - t0:7.1f}s  final SNR_out {hist['val_snr_out_db'][-1]:6.2f} dB"
                f"  E off-grid {hist['equivariance'][0]:.3f} -> {hist['equivariance'][-1]:.3f}"
                f"  E grid {hist['equivariance_grid'][0]:.3f} -> {hist['equivariance_grid'][-1]:.3f}")
    results["claims"] = check_claims(results)
    write_results(results, out)
    return results


# ---------------------------------------------------------------------------------------------
# the thesis' claims, checked on the histories
# ---------------------------------------------------------------------------------------------
def _h(results, exp, model):
    return results["experiments"].get(exp, {}).get(model)


def _overfit(h) -> float:
    """Final validation loss minus final training loss (normalised units): the generalisation gap."""
    return float(h["val_loss"][-1] - h["train_loss"][-1])


TAIL = 3  # the last TAIL epochs are averaged for "final" values; their spread is the uncertainty


def _tail(h, col) -> tuple[float, float]:
    """Mean and standard deviation of ``col`` over the last :data:`TAIL` epochs (epoch 0 excluded)."""
    v = np.asarray(h[col][1:], dtype=np.float64)[-TAIL:]
    if v.size == 0:
        v = np.asarray(h[col], dtype=np.float64)
    return float(np.mean(v)), float(np.std(v))


def check_claims(results: dict) -> list[dict]:
    """Each thesis claim (§7.4) as a verdict with the numbers it rests on.

    ``ratio`` = E_cartesian / E_spiral (off-grid E).  "Final" values are means over the last
    :data:`TAIL` epochs; ``±`` is the ratio's uncertainty from the epoch-to-epoch spread of both
    curves over those epochs.  A difference smaller than its uncertainty gives "inconclusive".

    1. spiral nearly equivariant from the start: after the first epoch, ratio > 2 in every
       experiment.  (Epoch 0 is reported but not used: a residual network, output = input −
       predicted noise, is close to the identity when untrained, which is exactly equivariant.)
    2a. cartesian catches up at SNR 1/4: final ratio < 1.5 and below its epoch-1 ratio.
    2b. but not at 1/64: final ratio at SNR 1/64 > 1.5 and larger than the SNR-1/4 ratio by more
        than the uncertainty.
    3. cartesian slightly lower fidelity / more overfitting at 1/64: final SNR_out(cart) below
       SNR_out(spiral) by more than the spread, or a larger generalisation gap (val − train loss).
    4. augmentation narrows but does not close the gap: final ratio with augmentation below the one
       without (by more than the uncertainty) and still above 1 (by more than its uncertainty).
    """
    out = []

    def pair(exp):
        c, s = _h(results, exp, "cartesian"), _h(results, exp, "spiral")
        return (c, s) if c is not None and s is not None and len(c["equivariance"]) > 1 else None

    def ratio_at(exp, epoch):
        c, s = pair(exp)
        return float(c["equivariance"][epoch] / s["equivariance"][epoch])

    def ratio_final(exp):
        c, s = pair(exp)
        (mc, sc), (ms, ss) = _tail(c, "equivariance"), _tail(s, "equivariance")
        r = mc / ms
        return r, r * math.hypot(sc / mc, ss / ms)

    exps = [e for e in ("snr4", "snr64", "snr64_aug") if pair(e) is not None]
    if not exps:
        return [{"claim": "all", "verdict": "not tested (needs spiral and cartesian runs of >= 1 epoch)"}]
    r0 = {e: ratio_at(e, 0) for e in exps}
    r1 = {e: ratio_at(e, 1) for e in exps}
    rf = {e: ratio_final(e) for e in exps}
    ok1 = all(r > 2 for r in r1.values())
    out.append({"claim": "spiral nearly equivariant from the start (after epoch 1: E_cart/E_spiral > 2)",
                "verdict": "confirmed" if ok1 else "not confirmed",
                "numbers": {e: {"E_spiral_0": float(pair(e)[1]["equivariance"][0]),
                                "E_cart_0": float(pair(e)[0]["equivariance"][0]),
                                "E_spiral_1": float(pair(e)[1]["equivariance"][1]),
                                "E_cart_1": float(pair(e)[0]["equivariance"][1]),
                                "ratio_epoch0": r0[e], "ratio_epoch1": r1[e]} for e in exps}})
    if "snr4" in rf:
        r, u = rf["snr4"]
        ok = r < 1.5 and r < r1["snr4"]
        out.append({"claim": "cartesian catches up in equivariance at SNR 1/4 (final ratio < 1.5, below epoch-1 ratio)",
                    "verdict": "confirmed" if ok else "not confirmed",
                    "numbers": {"ratio_epoch1": r1["snr4"], "ratio_final": r, "ratio_final_unc": u,
                                "note": "ratio < 1: the cartesian ends more equivariant than the spiral" if r + u < 1 else ""}})
    if "snr64" in rf:
        r, u = rf["snr64"]
        r4, u4 = rf.get("snr4", (None, 0.0))
        if r > 1.5 and (r4 is None or r - r4 > math.hypot(u, u4)):
            v = "confirmed"
        elif r4 is not None and r > 1.5 and abs(r - r4) <= math.hypot(u, u4):
            v = "inconclusive"
        else:
            v = "not confirmed"
        out.append({"claim": "cartesian does not catch up at SNR 1/64 (final ratio > 1.5 and > SNR-1/4 ratio)",
                    "verdict": v, "numbers": {"ratio_epoch1": r1["snr64"], "ratio_final": r, "ratio_final_unc": u,
                                              "ratio_final_snr4": r4, "ratio_final_snr4_unc": u4}})
        c, s = pair("snr64")
        (sc, sc_sd), (ss, ss_sd) = _tail(c, "val_snr_out_db"), _tail(s, "val_snr_out_db")
        d_snr, d_unc = sc - ss, math.hypot(sc_sd, ss_sd)
        d_best = float(np.nanmax(c["val_snr_out_db"]) - np.nanmax(s["val_snr_out_db"]))
        gap_c, gap_s = _overfit(c), _overfit(s)
        if d_snr < -d_unc or gap_c > gap_s:
            v = "confirmed"
        elif abs(d_snr) <= d_unc:
            v = "inconclusive"
        else:
            v = "not confirmed"
        out.append({"claim": "cartesian slightly lower fidelity / more overfitting at SNR 1/64",
                    "verdict": v,
                    "numbers": {"final_snr_out_db_cart_minus_spiral": d_snr, "unc_db": d_unc,
                                "best_snr_out_db_cart_minus_spiral": d_best,
                                "gap_val_minus_train_cart": gap_c, "gap_val_minus_train_spiral": gap_s}})
    if "snr64" in rf and "snr64_aug" in rf:
        (r, u), (ra, ua) = rf["snr64"], rf["snr64_aug"]
        if ra < r - math.hypot(u, ua) and ra > 1 + ua:
            v = "confirmed"
        elif abs(ra - r) <= math.hypot(u, ua) or abs(ra - 1) <= ua:
            v = "inconclusive"
        else:
            v = "not confirmed"
        out.append({"claim": "rotation augmentation narrows but does not close the gap at SNR 1/64",
                    "verdict": v, "numbers": {"ratio_final_no_aug": r, "unc_no_aug": u,
                                              "ratio_final_aug": ra, "unc_aug": ua}})
    return out


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def write_results(results: dict, out: Path) -> None:
    import h5py

    from cryoxplain.io.atomic import atomic_path

    with atomic_path(out / "results.h5", force=True) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["config"] = json.dumps(results["config"])
            f.attrs["seed"] = results["seed"]
            f.attrs["models"] = json.dumps(results["models"], default=_json_default)
            f.attrs["description"] = ("per-epoch histories (row 0 = before training) of the spiral-vs-cartesian "
                                      "experiments (thesis §7.4); equivariance = mean E(theta) over off-grid angles")
            for exp, per_model in results["experiments"].items():
                g = f.create_group(exp)
                g.attrs.update({k: v for k, v in EXPERIMENTS[exp].items()})
                g.attrs["simulation"] = json.dumps(results["sim"].get(exp, {}), default=_json_default)
                for name, hist in per_model.items():
                    gm = g.create_group(name)
                    gm.attrs["arch"] = results["models"][name]["arch"]
                    gm.attrs["n_params"] = results["models"][name]["n_params"]
                    for col, v in hist.items():
                        gm.create_dataset(col, data=np.asarray(v, dtype=np.float64))
    summary = {"config": results["config"], "models": results["models"], "claims": results["claims"],
               "final": {exp: {m: {k: float(v[-1]) for k, v in h.items()} for m, h in pm.items()}
                         for exp, pm in results["experiments"].items()},
               "epoch0": {exp: {m: {k: float(v[0]) for k, v in h.items()} for m, h in pm.items()}
                          for exp, pm in results["experiments"].items()}}
    with atomic_path(out / "summary.json", force=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=_json_default, allow_nan=True))
    for exp in results["experiments"]:
        plot_experiment(results, exp, out / f"fig_{exp}.png")


_STYLE = {"spiral": dict(color="C3"), "cartesian": dict(color="C0"), "steerable": dict(color="C2", ls="--")}


def plot_experiment(results: dict, exp: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryoxplain.io.atomic import atomic_path

    per_model = results["experiments"][exp]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for name, h in per_model.items():
        st = _STYLE.get(name, {})
        ep = h["epoch"]
        axes[0].plot(ep, h["val_snr_out_db"], marker="o", ms=3, label=name, **st)
        axes[1].plot(ep[1:], h["train_loss"][1:], marker=".", ms=3, alpha=0.6, label=f"{name} train",
                     **dict(st, ls=":"))
        axes[1].plot(ep, h["val_loss"], marker="o", ms=3, label=f"{name} val", **st)
        axes[2].plot(ep, h["equivariance"], marker="o", ms=3, label=f"{name} off-grid", **st)
        axes[2].plot(ep, np.maximum(h["equivariance_grid"], 1e-3), marker="s", ms=3, alpha=0.5,
                     label=f"{name} 90/180/270°", **dict(st, ls=":"))
    ref = next(iter(per_model.values())).get("equivariance_reference")
    if ref is not None:
        axes[2].axhline(float(ref[0]), color="0.5", lw=1, ls="-.", label="isotropic-blur reference")
    axes[0].set(xlabel="epoch", ylabel="validation SNR_out (dB, disc)", title="denoising score")
    axes[1].set(xlabel="epoch", ylabel="MSE (normalised units)", title="loss", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="equivariance error E", yscale="log",
                title="equivariance (values < 1e-3 drawn at 1e-3)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    cfg = results["config"]
    fig.suptitle(f"{EXPERIMENTS[exp]['label']} — 70S ribosome, box {cfg['box']}, {cfg['n_particles']} particles, "
                 f"depth {cfg['depth']} width {cfg['width']}, networks predict the {cfg.get('target', 'signal')}",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_table(results: dict) -> str:
    lines = [f"{'experiment':<11}{'model':<11}{'params':>8}{'SNRout dB':>10}{'val loss':>10}{'gap':>9}"
             f"{'E0 off':>9}{'E off':>9}{'E grid':>9}{'iso-ref':>9}"]
    for exp, pm in results["experiments"].items():
        for name, h in pm.items():
            lines.append(f"{exp:<11}{name:<11}{results['models'][name]['n_params']:>8d}{h['val_snr_out_db'][-1]:>10.2f}"
                         f"{h['val_loss'][-1]:>10.4f}{_overfit(h):>9.4f}{h['equivariance'][0]:>9.4f}"
                         f"{h['equivariance'][-1]:>9.4f}{h['equivariance_grid'][-1]:>9.4f}{h['equivariance_reference'][-1]:>9.4f}")
    lines.append("gap = final val loss - final train loss; E0 = epoch 0 (untrained); E = final epoch")
    for c in results["claims"]:
        nums = c.get("numbers", {})
        extra = ""
        if "ratio_final" in nums:
            extra = f" (E_cart/E_spiral over the last {TAIL} epochs: {nums['ratio_final']:.2f} ± {nums['ratio_final_unc']:.2f})"
        elif "ratio_final_aug" in nums:
            extra = (f" (ratio {nums['ratio_final_no_aug']:.2f} ± {nums['unc_no_aug']:.2f} without, "
                     f"{nums['ratio_final_aug']:.2f} ± {nums['unc_aug']:.2f} with augmentation)")
        elif "final_snr_out_db_cart_minus_spiral" in nums:
            extra = f" (SNR_out cart − spiral {nums['final_snr_out_db_cart_minus_spiral']:+.2f} ± {nums['unc_db']:.2f} dB)"
        lines.append(f"- {c['claim']}: {c['verdict']}{extra}")
    return "\n".join(lines)


def read_results(out: Path) -> dict:
    """Load ``results.h5`` written by :func:`write_results` (to re-check claims / re-plot)."""
    import h5py

    with h5py.File(out / "results.h5", "r") as f:
        res = {"config": json.loads(f.attrs["config"]), "seed": int(f.attrs["seed"]),
               "models": json.loads(f.attrs["models"]), "experiments": {}, "sim": {}}
        for exp in f:
            res["sim"][exp] = json.loads(f[exp].attrs.get("simulation", "{}"))
            res["experiments"][exp] = {m: {c: f[exp][m][c][()] for c in f[exp][m]} for m in f[exp]}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    ap.add_argument("--quick", action="store_const", const="quick", dest="config", help="same as --config quick")
    ap.add_argument("--out", type=Path, default=Path("equivariance_experiments"))
    ap.add_argument("--experiments", default="snr4,snr64,snr64_aug")
    ap.add_argument("--models", default=None, help="comma-separated (default: spiral,cartesian[,steerable if e2cnn])")
    ap.add_argument("--epochs", type=int, default=None, help="override the configuration's epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--density", type=Path, default=RIBOSOME, help="MRC density map (default: the 70S ribosome)")
    ap.add_argument("--target", choices=("signal", "noise"), default="signal",
                    help="what the networks predict: the clean signal (thesis, default; config residual=false) "
                         "or the noise (residual learning; config residual=true)")
    ap.add_argument("--replot", action="store_true",
                    help="do not train: re-check the claims and redraw the figures from OUT/results.h5")
    args = ap.parse_args(argv)
    if args.replot:
        res = read_results(args.out)
        res["claims"] = check_claims(res)
        write_results(res, args.out)
        print(format_table(res))
        return 0
    cfg = dict(CONFIGS[args.config], name=args.config)
    if args.epochs:
        cfg["epochs"] = args.epochs
    exps = [e for e in args.experiments.split(",") if e]
    for e in exps:
        if e not in EXPERIMENTS:
            ap.error(f"unknown experiment {e!r}; choose from {', '.join(EXPERIMENTS)}")
    models = args.models.split(",") if args.models else ["spiral", "cartesian"] + (["steerable"] if steerable_available() else [])
    if "steerable" in models and not steerable_available():
        print("e2cnn is not installed: skipping the steerable anchor (pip install e2cnn)", file=sys.stderr)
        models.remove("steerable")
    if not args.density.is_file():
        ap.error(f"density map {args.density} not found")
    t0 = time.perf_counter()
    res = run(cfg, exps, models, args.out, seed=args.seed, device=args.device, density=args.density, target=args.target,
              log=lambda s: print(s, flush=True))
    print(format_table(res))
    print(f"wrote {args.out}/results.h5, summary.json, fig_*.png in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
