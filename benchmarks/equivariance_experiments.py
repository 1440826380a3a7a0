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
(``equivariance``: mean over fixed stratified off-grid angles, ``equivariance_std`` its spread;
``equivariance_grid``: 90/180/270°; ``equivariance_floor``: the rotation's own round-trip error),
with one output window for both models, inside the spiral's valid disc.

The protocol (configurations, matched models, simulation, training runs, claim checks, files) is
:mod:`cryoxplain.evaluate` (``run_equivariance_experiments``, ``check_claims``); this script is its
command line and adds the optional steerable anchor.

Outputs in ``--out`` (default ``equivariance_experiments/``):

    results.h5           /<experiment>/<model>/<column> per-epoch arrays; attrs: config, params
    fig_<experiment>.png score and equivariance vs epoch (like thesis Fig 7.7 / 7.8 / 7.9)
    summary.json         final numbers and the check of each thesis claim
    stdout               one table: final score / equivariance per experiment and model

Configurations (``--config``): ``tiny`` (seconds; the test suite), ``quick`` (2 CPU cores,
a few minutes), ``medium`` (3 seeds on 2 CPU cores in about an hour), ``full`` (for a GPU; see
docs/equivariance.md).

Several seeds (``--seeds 0,1,2``): every (seed, experiment) pair runs as its own process
(``--jobs`` at a time, one thread each on CPU) into ``OUT/seed<S>_<experiment>/``; a pair whose
``summary.json`` exists is not run again (so an interrupted run resumes).  Then the claims and the
issue-14 target are judged across seeds (mean ± sd over seeds) into ``OUT/summary.json``,
``OUT/fig_<experiment>.png`` (mean and min–max band) and a table.  ``--aggregate`` only does that
last step.  Examples::

    nice python benchmarks/equivariance_experiments.py --config quick --out eqv_quick
    nice python benchmarks/equivariance_experiments.py --config medium --seeds 0,1,2 --jobs 2 --out eqv_medium
    python benchmarks/equivariance_experiments.py --config full --device cuda --seeds 0,1,2 --jobs 1 --out eqv_full
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from cryoxplain.evaluate import (CONFIGS, EXPERIMENTS, RIBOSOME_PIXEL_SIZE, check_claims, combine_experiment_results,
                                 format_experiments_table, format_seed_table, n_params, read_experiment_results,
                                 run_equivariance_experiments, write_experiment_results, write_seed_summary)
from cryoxplain.evaluate import model_specs as _matched_specs

REPO = Path(__file__).resolve().parent.parent
RIBOSOME = REPO.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"


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
    from cryoxplain.models.registry import ArchitectureSpec, architectures, register_architecture

    if "steerable" in architectures():
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

    register_architecture(ArchitectureSpec("steerable", "denoise", SteerableDenoiser))


def model_specs(cfg: dict, models: list[str], target: str = "signal") -> dict[str, tuple[str, dict]]:
    """:func:`cryoxplain.evaluate.model_specs` plus ``steerable``, whose field count is chosen so that
    its parameter count is closest to the cartesian one's."""
    from cryoxplain.models.registry import build_model

    specs = _matched_specs(cfg, [m for m in models if m != "steerable"], target)
    if "steerable" in models:
        _register_steerable()
        base = {"depth": cfg["depth"], "width": cfg["width"], "kernel_size": cfg["kernel_size"]}
        target_n = n_params(build_model("cartesian", **base))
        best = None
        f0 = max(1, round(cfg["width"] / math.sqrt(cfg["n_rot"])))
        for f in sorted({max(1, f0 - 1), f0, f0 + 1}):
            c = dict(base, n_rot=cfg["n_rot"], fields=f, residual=target == "noise")
            d = abs(n_params(build_model("steerable", **c)) - target_n)
            if best is None or d < best[0]:
                best = (d, c)
        specs["steerable"] = ("steerable", best[1])
    return {m: specs[m] for m in models}


UNIT = re.compile(r"^seed(\d+)_(" + "|".join(EXPERIMENTS) + r")$")


def _unit_command(args, seed: int, exp: str, models: list[str], out: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--config", args.config, "--seed", str(seed),
           "--experiments", exp, "--models", ",".join(models), "--target", args.target, "--density", str(args.density),
           "--device", args.device, "--out", str(out)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    return cmd


def run_seeds(args, exps: list[str], models: list[str]) -> int:
    """``--seeds``: run every (seed, experiment) pair not yet done as its own process, then judge the
    claims across seeds (``--aggregate``: the last step only)."""
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s] if args.seeds else None
    t0 = time.perf_counter()
    walls = {}
    if not args.aggregate:
        todo = [(s, e) for s in seeds for e in exps if not (out / f"seed{s}_{e}" / "summary.json").is_file()]
        env = dict(os.environ)
        if args.device != "cuda":  # one thread per process: --jobs processes share the cores
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

        def one(unit):
            s, e = unit
            d = out / f"seed{s}_{e}"
            t = time.perf_counter()
            with open(out / f"log_seed{s}_{e}.txt", "w") as log:
                rc = subprocess.run(_unit_command(args, s, e, models, d), env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            walls[f"seed{s}_{e}"] = time.perf_counter() - t
            print(f"seed {s} {e}: {'done' if rc == 0 else f'FAILED (exit {rc}, see {out}/log_seed{s}_{e}.txt)'} "
                  f"in {walls[f'seed{s}_{e}']:.0f}s", flush=True)
            return rc

        print(f"{len(todo)} runs to do ({len(seeds) * len(exps) - len(todo)} already done), {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rcs = list(pool.map(one, todo))
        if any(rcs):
            print("some runs failed; not judging the claims", file=sys.stderr)
            return 1
    by_seed: dict[int, list] = {}
    for d in sorted(out.iterdir()):
        m = UNIT.match(d.name)
        if m and (d / "results.h5").is_file() and (seeds is None or int(m.group(1)) in seeds):
            by_seed.setdefault(int(m.group(1)), []).append(read_experiment_results(d))
    if not by_seed:
        print(f"no finished runs in {out}", file=sys.stderr)
        return 1
    per_seed = [combine_experiment_results(parts) for _, parts in sorted(by_seed.items())]
    extra = {"wall_seconds_this_command": time.perf_counter() - t0}
    if walls:
        extra["wall_seconds_per_run"] = walls
    summary = write_seed_summary(per_seed, out, extra=extra)
    print(format_seed_table(summary))
    print(f"wrote {out}/summary.json, fig_*.png ({len(per_seed)} seeds) in {time.perf_counter() - t0:.0f}s")
    return 0


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
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds: one process per seed and experiment, then claims judged across seeds")
    ap.add_argument("--jobs", type=int, default=2, help="with --seeds: processes at a time (default 2)")
    ap.add_argument("--aggregate", action="store_true",
                    help="with --seeds (default: every OUT/seed*_* folder): only judge and plot the finished runs")
    ap.add_argument("--replot", action="store_true",
                    help="do not train: re-check the claims and redraw the figures from OUT/results.h5")
    args = ap.parse_args(argv)
    if args.replot:
        res = read_experiment_results(args.out)
        res["claims"] = check_claims(res)
        write_experiment_results(res, args.out)
        print(format_experiments_table(res))
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
    if args.seeds or args.aggregate:
        return run_seeds(args, exps, models)
    t0 = time.perf_counter()
    specs = model_specs(cfg, models, args.target)
    res = run_equivariance_experiments(cfg, exps, specs, args.out, density=args.density,
                                       density_pixel_size=RIBOSOME_PIXEL_SIZE, seed=args.seed, device=args.device,
                                       target=args.target, log=lambda s: print(s, flush=True))
    print(format_experiments_table(res))
    print(f"wrote {args.out}/results.h5, summary.json, fig_*.png in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
