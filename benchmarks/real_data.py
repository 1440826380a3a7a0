#!/usr/bin/env python
"""Real-data denoising benchmark (issue 13): one run, one table, one figure.

Denoisers: the shipped general models ``default`` (cartesian) and ``default-spiral``; Topaz's
pretrained U-Net (``topaz denoise -m unet``, its own environment ``--topaz-python``); ASPIRE's
covariance Wiener filter (CWF, fitted on each stack itself; its own environment
``--aspire-python``, via benchmarks/_aspire_cwf.py); a Gaussian low-pass
(:func:`cryoxplain.imaging.filters.gaussian_blur`).  Missing peers are reported, not faked.

A. Ground truth, on the structure held out of the default models' training (β-galactosidase,
   ``real/ngl_betaGal.mrc``, resampled to 5.0 Å/px): ``--n`` particles, box 64, CTF (defocus
   0.5–3.5 µm uniform, no astigmatism, 300 kV, Cs 2.7 mm, Q 0.1), protein dark (as in real
   micrographs), white noise at SNR 1/4, 1/16, 1/64.  SNR_out (dB, pooled over the disc of radius
   31 px = the spiral's valid disc, for every method), the same after the best per-image affine
   fit a·F(x)+b (fair to outputs on another scale), FRC-0.5 (Å, soft mask).  The low-pass σ is
   the oracle: the best of a grid on the ground truth, per SNR.  CWF's output is re-multiplied by
   each image's CTF so that every method estimates the same CTF-modulated image.

B. No ground truth, on the 105 real particles (``real/fei-extended_picked105_bin6_box64.mrcs``,
   5.12 Å/px, protein dark, no CTF correction) and on 64 px crops of the real micrograph
   (``real/mrcfile_fei-extended_bin6.mrc``, tiles containing a pick), each image normalised first:

   * rotation-equivariance error E (cryoxplain.metrics.equivariance, one common window: the
     spiral's valid disc), at 90° and mean over ``--n-offgrid`` off-grid angles;
   * contrast-sign error ‖F(−x) + F(x)‖ / ‖F(x)‖;
   * pure-noise output energy: ‖F(n)‖²/‖n‖² on white noise and on background tiles of the real
     micrograph (≥ 40 px from every pick), divided by the same ratio for a Gaussian low-pass of
     matched bandwidth (the same half-gain frequency as the denoiser's ring gain on the real
     particles).  A ratio > 1: the denoiser puts more energy into pure noise than a linear filter
     passing the same band would — it invents structure.
     Contrast sign, matched low-pass and noise energy are :mod:`cryoxplain.metrics.nogt`'s (the
     definitions of ``cryoxplain evaluate real``).

C. Throughput: particles/s on the 1/16 stack, CPU, 1 thread, each tool as its own process
   (start-up and model loading included, as a user sees it).

D. Self-supervised fine-tuning on the stack itself (``--finetune-epochs E``, 0 = off): the shipped
   ``default`` model fine-tuned by the blind-spot method (``train --method masked --init default``:
   no clean images; batch norm frozen, docs/train.md), ``E`` epochs, d4, 48 px crops, batch 16,
   cosine lr from ``--finetune-lr``, 10 % of the stack held out for the history only — once on each
   part-A stack (then scored against the ground truth beside CWF fitted on that same stack) and
   once on the real particles (then scored by the part-B metrics; note that it has seen these
   particles' noise).  ``--finetune-only`` runs just these rows with their references (the
   default model, CWF, the oracle low-pass in A; the default model in B), no Topaz, no throughput.

    OMP_NUM_THREADS=1 nice python benchmarks/real_data.py [--n 300] [--json out.json] [--figure docs/img/real_data.png]
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/real_data.py --finetune-only --n 300 --n-offgrid 1 --json ft.json
    OMP_NUM_THREADS=1 python benchmarks/real_data.py --throughput-only 100,2000 --n 200 --json thr.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
REAL = DATA / "real"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from denoise_vs_topaz import affine_fit_snr, watch  # noqa: E402  (the one watcher / affine-fit SNR)

RADIUS = 31.0  # the spiral's valid disc on 64 px boxes: one evaluation disc for every method


# ------------------------------------------------------------------------------------ denoisers

class Ours:
    def __init__(self, model):
        from cryoxplain.denoise import Denoiser

        self.model, self.den = model, Denoiser(model, device="cpu")
        self.name = {"default": "cryoxplain default (cartesian)", "default-spiral": "cryoxplain default-spiral"}.get(model, model)

    def __call__(self, x, ctf=None):
        return self.den.denoise_images(np.asarray(x, np.float32))

    def cli(self, src, out):
        return [sys.executable, "-m", "cryoxplain", "denoise", str(src), "-o", str(out), "--model", self.model,
                "--device", "cpu", "--force"]


class FineTuned:
    """The shipped ``base`` model fine-tuned by the blind-spot method on one stack (part D): call
    :meth:`fit` on the stack, then use it like :class:`Ours` (the fitted model, fixed)."""

    def __init__(self, base="default", epochs=3, lr=3e-4, crop=48, seed=0, tag="the stack"):
        self.base, self.epochs, self.lr, self.crop, self.seed = base, int(epochs), float(lr), crop, int(seed)
        self.name = f"cryoxplain {base} + masked fine-tune on {tag}"
        self.den, self.train_s, self.history = None, None, None

    def fit(self, x):
        from cryoxplain.denoise import Denoiser, train_denoiser

        t = time.perf_counter()
        res = train_denoiser(np.asarray(x, np.float32), method="masked", init=self.base, epochs=self.epochs,
                             seed=self.seed, batch_size=16, lr=self.lr, lr_schedule="cosine", augment="d4",
                             crop=self.crop, val_fraction=0.1, device="cpu", progress=False)
        self.train_s = time.perf_counter() - t
        self.history = {k: [float(v) for v in res.history[k]] for k in ("epoch", "train_loss", "val_masked_loss")}
        self.den = Denoiser(res.model, device="cpu")
        print(f"# D {self.name}: {len(x)} images, {self.epochs} epochs, {self.train_s:.0f} s; val_masked_loss "
              f"{[round(v, 4) for v in self.history['val_masked_loss']]}", file=sys.stderr, flush=True)
        return self

    def __call__(self, x, ctf=None):
        return self.den.denoise_images(np.asarray(x, np.float32))


class External:
    """A tool run as a subprocess on an MRC stack (Topaz, ASPIRE CWF)."""

    def __init__(self, name, make_cmd, work: Path, env):
        self.name, self.make_cmd, self.work, self.env, self.calls = name, make_cmd, work, env, 0

    def cli(self, src, out, ctf=None):
        return self.make_cmd(src, out, ctf)

    def __call__(self, x, ctf=None, pixel_size=5.0):
        from cryoxplain.io.mrc import read_mrc, write_mrc

        self.calls += 1
        tag = f"{self.name.split()[0].lower()}_{self.calls}"
        src, out = self.work / f"{tag}_in.mrcs", self.work / f"{tag}_out.mrcs"
        write_mrc(src, np.asarray(x, np.float32), pixel_size, force=True)
        ctf_path = None
        if ctf is not None:
            ctf_path = self.work / f"{tag}_ctf.npz"
            np.savez(ctf_path, **ctf)
        watch(self.make_cmd(src, out, ctf_path), self.env)
        y, _ = read_mrc(out)
        return np.asarray(y, np.float32).reshape(np.shape(x))


def _is_cwf(fn) -> bool:
    """ASPIRE CWF: the one tool that takes each particle's CTF."""
    return isinstance(fn, External) and fn.name.startswith("ASPIRE")


def _as_process(fn, src, ctf_path, work, env) -> dict:
    """Denoise the stack ``src`` with ``fn`` (ours or an External) as its own process (part C);
    the watcher's ``wall_s`` and ``peak_rss_kb``."""
    out = work / "thr_out.mrcs"
    return watch(fn.cli(src, out, ctf_path) if _is_cwf(fn) else fn.cli(src, out), env)


class LowPass:
    def __init__(self, sigma):
        self.sigma = float(sigma)
        self.name = f"Gaussian low-pass (σ {self.sigma:g} px)"

    def __call__(self, x, ctf=None):
        from cryoxplain.imaging.filters import gaussian_blur

        return np.asarray(gaussian_blur(np.asarray(x, np.float32), self.sigma), np.float32)


def _topaz(py):
    def cmd(src, out, ctf):
        return [str(py), "-m", "topaz.commands.denoise", "--stack", "-m", "unet", "-d", "-1", "-j", "1", "-o", str(out),
                str(src)]
    return cmd


def _aspire(py, pixel_size):
    def cmd(src, out, ctf):
        c = [str(py), str(Path(__file__).resolve().parent / "_aspire_cwf.py"), str(src), str(out), str(pixel_size)]
        return c + (["--ctf", str(ctf)] if ctf is not None else [])
    return cmd


def _check_env(py: Path, code: str, env) -> str | None:
    if not py.exists():
        return f"no Python environment at {py}"
    p = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["import failed"])[-1]


# ------------------------------------------------------------------------------------ metrics

def _disc(box, radius=RADIUS):
    from cryoxplain.imaging.masks import disc_mask

    return disc_mask(box, radius) > 0


def gt_metrics(clean, est, noisy, pixel_size):
    from cryoxplain.metrics.snr import frc, snr, snr_db

    m = _disc(clean.shape[-1])
    r = frc(clean, est, pixel_size=pixel_size).crossing(0.5)
    return {"snr_in_db": snr_db(snr(clean, noisy, mask=m)), "snr_out_db": snr_db(snr(clean, est, mask=m)),
            "snr_affine_db": affine_fit_snr(clean, est, m),
            "frc05_A": r["resolution_A"], "frc05_crossed": r["crossed"]}


def _call(fn, x, ctf=None, pixel_size=5.0):
    if isinstance(fn, External):
        return fn(x, ctf=ctf, pixel_size=pixel_size)
    return fn(x, ctf=ctf)


def no_gt_metrics(fn, images, noise_white, noise_bg, angles, window, pixel_size, ctf=None):
    """The no-ground-truth numbers of one denoiser, by the library's own definitions
    (:mod:`cryoxplain.metrics.nogt`, the same as ``cryoxplain evaluate real``), on the evaluation
    disc ``RADIUS`` for every method alike."""
    import torch

    from cryoxplain.metrics.equivariance import equivariance_error
    from cryoxplain.metrics.nogt import contrast_sign_error, matched_lowpass_sigma, noise_response, transfer_gain

    x = np.asarray(images, np.float32)
    y = _call(fn, x, ctf, pixel_size)

    def on_particles(t):  # (B,1,H,W) tensor → tensor, with the particles' CTFs (Topaz/CWF may use them)
        return torch.from_numpy(np.asarray(_call(fn, t[:, 0].numpy(), ctf, pixel_size), np.float32))[:, None]

    def on_noise(t):  # pure noise has no CTF
        return torch.from_numpy(np.asarray(_call(fn, t[:, 0].numpy(), None, pixel_size), np.float32))[:, None]

    e = equivariance_error(on_particles, x, angles, window=window, outputs=torch.from_numpy(y)[:, None])
    e90 = e.get(90.0)
    off = [v for a, v in e.items() if a != 90.0]
    disc = torch.from_numpy(_disc(x.shape[-1]).astype(np.float32))
    sig = matched_lowpass_sigma(transfer_gain(on_particles, x), x.shape[-1])
    sign = contrast_sign_error(on_particles, x, window=disc)
    res = {"E90": e90, "E_offgrid": float(np.mean(off)) if off else None, "sign_error": sign, "matched_sigma_px": sig}
    for tag, n in (("white", noise_white), ("background", noise_bg)):
        r = noise_response(on_noise, np.asarray(n, np.float32), sigma=sig, window=disc)
        res[f"noise_energy_{tag}"] = r["energy"]
        res[f"noise_energy_{tag}_vs_lowpass"] = r["energy_vs_lowpass"]
    return res, y


# ------------------------------------------------------------------------------------ data

def held_out_set(n, seed, pixel_size=5.0, box=64):
    import warnings

    from cryoxplain.sim import CTFParams, load_density, simulate_particles
    from cryoxplain.sim.simulate import disc_variance, disc_mask

    dens = load_density(REAL / "ngl_betaGal.mrc").resampled(pixel_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = simulate_particles(dens, n, box=box, snr=None, seed=seed, ctf=CTFParams(5000.0, 35000.0))
    clean = -r.clean.astype(np.float64)  # protein dark, as in real micrographs
    var = disc_variance(clean, disc_mask(box))
    ctf = {"defocus_u": r.metadata["defocus_u"], "defocus_v": r.metadata["defocus_v"],
           "defocus_angle": r.metadata["defocus_angle"], "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1}
    rng = np.random.default_rng([seed, 7])
    z = rng.standard_normal(clean.shape)
    return clean.astype(np.float32), var, z, ctf


def real_inputs(seed=0):
    from cryoxplain.imaging.normalize import normalize_images
    from cryoxplain.io.mrc import read_mrc
    from cryoxplain.io.star import read_star

    parts, px = read_mrc(REAL / "fei-extended_picked105_bin6_box64.mrcs")
    mic, _ = read_mrc(REAL / "mrcfile_fei-extended_bin6.mrc")
    mic = np.asarray(mic, np.float32).reshape(mic.shape[-2:])
    st = read_star(REAL / "fei-extended_picked105_bin6_box64.star")["particles"]
    picks = np.stack([(np.asarray(st["rlnCoordinateY"], float) - 5) / 6, (np.asarray(st["rlnCoordinateX"], float) - 1) / 6], 1)
    crops, bg = [], []
    h, w = mic.shape
    for r0 in range(0, h - 64 + 1, 32):
        for c0 in range(0, w - 64 + 1, 32):
            c = np.array([r0 + 32, c0 + 32])
            d = np.min(np.linalg.norm(picks - c, axis=1))
            tile = mic[r0:r0 + 64, c0:c0 + 64]
            if d >= 40:
                bg.append(tile)
            elif d < 16 and (r0 % 64 == 0 and c0 % 64 == 0):
                crops.append(tile)
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((len(parts), 64, 64)).astype(np.float32)
    # every image normalised ((x − μ)/σ, cryoxplain.imaging.normalize): the ratios below then measure
    # the denoised content, not the detector's offset (what every tool does to its input first anyway)
    return (normalize_images(parts), normalize_images(np.stack(crops)), normalize_images(np.stack(bg)), white,
            float(px))


# ------------------------------------------------------------------------------------ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="held-out particles per SNR")
    ap.add_argument("--snrs", default="0.25,0.0625,0.015625")
    ap.add_argument("--seed", type=int, default=1313)
    ap.add_argument("--n-offgrid", type=int, default=3)
    ap.add_argument("--topaz-python", default="/work/venv-topaz/bin/python")
    ap.add_argument("--aspire-python", default="/work/venv-aspire/bin/python")
    ap.add_argument("--models", default="default,default-spiral")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None, help="PNG: raw vs denoised real particles and micrograph crops")
    ap.add_argument("--no-peers", action="store_true", help="skip Topaz and ASPIRE (e.g. with --merge)")
    ap.add_argument("--merge", default=None, help="JSON of an earlier run (--json) whose peer rows (and figure "
                    "panels, npz beside it) are added to this run's table; same data and seeds")
    ap.add_argument("--finetune-epochs", type=int, default=3, help="part D: masked fine-tune epochs (0: no part D)")
    ap.add_argument("--finetune-lr", type=float, default=3e-4)
    ap.add_argument("--finetune-only", action="store_true", help="only part D and its references (module docstring)")
    ap.add_argument("--throughput-only", default="",
                    help="only part C, on stacks of these sizes (comma-separated, e.g. 100,2000: the 1/16 stack of "
                         "--n particles repeated), each tool as its own process; table of particles/s and ratios")
    args = ap.parse_args(argv)
    if args.finetune_only and args.finetune_epochs < 1:
        ap.error("--finetune-only needs --finetune-epochs >= 1")
    ft_kw = dict(epochs=args.finetune_epochs, lr=args.finetune_lr, seed=args.seed)

    from cryoxplain.metrics.equivariance import offgrid_angles, output_window

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    for k in ("json", "figure", "merge"):
        if getattr(args, k):
            setattr(args, k, str(Path(getattr(args, k)).resolve()))
    os.chdir(work)  # ASPIRE writes a logs/ folder into the working directory
    t_start = time.time()

    ours = [Ours(m) for m in (["default"] if args.finetune_only else args.models.split(",")) if m]
    notes = []
    tz = "skipped (--no-peers)" if args.no_peers else "skipped (--finetune-only)" if args.finetune_only else \
        _check_env(Path(args.topaz_python), "import topaz.commands.denoise", env)
    topaz = External("Topaz pretrained unet", _topaz(args.topaz_python), work, env) if tz is None else None
    if tz:
        notes.append(f"Topaz not run: {tz}")
    asp = "skipped (--no-peers)" if args.no_peers else _check_env(Path(args.aspire_python), "import aspire.denoising", env)
    if asp:
        notes.append(f"ASPIRE CWF not run: {asp}")
    if args.throughput_only:
        return throughput_table(args, ours, topaz, asp, work, env, notes)
    window = output_window(64, radius=RADIUS)  # = common_window(64, spiral model): its valid disc
    angles = [90.0] + offgrid_angles(args.n_offgrid)

    # ---- A: held-out structure with ground truth
    clean, var, z, ctf = held_out_set(args.n, args.seed)
    rows_gt, sigmas = [], np.round(np.arange(0.5, 4.01, 0.25), 2)
    throughput = {}
    for snr in [float(s) for s in args.snrs.split(",")]:
        noisy = (clean + np.sqrt(var / snr)[:, None, None] * z).astype(np.float32)
        methods = list(ours) + ([topaz] if topaz else [])
        cwf = None if asp else External("ASPIRE CWF", _aspire(args.aspire_python, 5.0), work, env)
        best = max(sigmas, key=lambda s: gt_metrics(clean, LowPass(s)(noisy), noisy, 5.0)["snr_out_db"])
        if args.finetune_epochs > 0:
            methods.append(FineTuned(tag=f"this stack ({len(noisy)} particles, {args.finetune_epochs} epochs)",
                                     **ft_kw).fit(noisy))
        methods += ([cwf] if cwf else []) + [LowPass(best)]
        for fn in methods:
            t = time.perf_counter()
            est = _call(fn, noisy, ctf=ctf if _is_cwf(fn) else None,
                        pixel_size=5.0)
            rows_gt.append({"method": fn.name if not isinstance(fn, LowPass) else "Gaussian low-pass (oracle σ)",
                            "sigma": getattr(fn, "sigma", None), "snr": snr,
                            **gt_metrics(clean, est, noisy, 5.0),
                            **({"train_s": fn.train_s} if isinstance(fn, FineTuned) else {})})
            dt = time.perf_counter() - t
            if isinstance(fn, Ours) and abs(snr - 0.0625) < 1e-9:
                throughput[f"{fn.name} [in-process]"] = len(noisy) / dt
            print(f"# A {fn.name} SNR 1/{1 / snr:g}: {rows_gt[-1]['snr_out_db']:.2f} dB ({dt:.0f} s)",
                  file=sys.stderr, flush=True)
        if abs(snr - 0.0625) < 1e-9 and not args.finetune_only:  # C: throughput, each tool as its own process
            from cryoxplain.io.mrc import write_mrc

            src = work / "thr_in.mrcs"
            write_mrc(src, noisy, 5.0, force=True)
            np.savez(work / "thr_ctf.npz", **ctf)
            for fn in methods:
                if isinstance(fn, FineTuned):  # its training is part D's, its inference is the default model's
                    continue
                if isinstance(fn, LowPass):
                    t = time.perf_counter()
                    fn(noisy)
                    throughput[fn.name.split(" (")[0]] = len(noisy) / (time.perf_counter() - t)
                    continue
                w = _as_process(fn, src, work / "thr_ctf.npz", work, env)
                throughput[fn.name] = len(noisy) / w["wall_s"]

    if args.json:  # part A on its own first (a long run that fails later keeps it)
        Path(args.json).with_suffix(".partA.json").write_text(json.dumps({"gt": rows_gt}, indent=1, default=float))
    # ---- B: real data, no ground truth
    parts, crops, bg, white, px = real_inputs()
    lp_sigma = next(r["sigma"] for r in rows_gt if r["sigma"] is not None and abs(r["snr"] - 0.0625) < 1e-9) \
        if any(abs(r["snr"] - 0.0625) < 1e-9 for r in rows_gt) else 1.5
    real_ctf = {"defocus_u": np.full(len(parts), 9066.0), "defocus_v": np.full(len(parts), 9066.0),
                "defocus_angle": np.zeros(len(parts)), "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1}
    crop_ctf = {k: (np.full(len(crops), v[0]) if isinstance(v, np.ndarray) else v) for k, v in real_ctf.items()}
    methods = list(ours) + ([topaz] if topaz else [])
    if args.finetune_epochs > 0:
        methods.append(FineTuned(tag=f"the real particles ({len(parts)}, {args.finetune_epochs} epochs)",
                                 **ft_kw).fit(parts))
    if not asp and not args.finetune_only:
        methods.append(External("ASPIRE CWF", _aspire(args.aspire_python, px), work, env))
    if not args.finetune_only:
        methods.append(LowPass(lp_sigma))
    rows_real, shown = [], {}
    for fn in methods:
        is_cwf = _is_cwf(fn)
        for tag, imgs, c in (("particles", parts, real_ctf), ("micrograph crops", crops, crop_ctf)):
            t = time.perf_counter()
            res, y = no_gt_metrics(fn, imgs, white[: len(imgs)], bg[: len(imgs)] if len(bg) >= len(imgs) else bg,
                                   angles, window, px, ctf=c if is_cwf else None)
            rows_real.append({"method": fn.name, "data": tag, **res})
            shown.setdefault(fn.name, {})[tag] = y
            print(f"# B {fn.name} {tag}: {res} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)

    if args.json:  # the denoised panels for a later --merge figure
        np.savez(Path(args.json).with_suffix(".npz"), **{f"{k}|{t}": v for k, d in shown.items() for t, v in d.items()})
    if args.merge:
        old = json.loads(Path(args.merge).read_text())
        mine = {r["method"] for r in rows_gt} | {r["method"] for r in rows_real}
        rows_gt += [r for r in old["gt"] if r["method"] not in mine]
        rows_real += [r for r in old["real"] if r["method"] not in mine]
        throughput = {**old["throughput"], **throughput}
        npz = Path(args.merge).with_suffix(".npz")
        if npz.exists():
            z = np.load(npz)
            have = set(shown)
            for key in z.files:
                k, t = key.split("|")
                if k not in have:
                    shown.setdefault(k, {})[t] = z[key]
        notes = [n for n in notes if "--no-peers" not in n] + [f"peer rows merged from {Path(args.merge).name}"]
        order = {m: i for i, m in enumerate(dict.fromkeys([r["method"] for r in rows_real]))}
        rows_gt.sort(key=lambda r: (-r["snr"], order.get(r["method"], 99)))
    # ---- report
    lines = ["| method | SNR | SNR_in (dB) | SNR_out (dB) | SNR_out affine (dB) | FRC-0.5 (Å) |", "|---|---|---|---|---|---|"]
    for r in rows_gt:
        frc = f"{r['frc05_A']:.1f}" + ("" if r["frc05_crossed"] else " (Nyquist)")
        name = r["method"] + (f" σ={r['sigma']:g}" if r["sigma"] is not None else "")
        lines.append(f"| {name} | 1/{1 / r['snr']:g} | {r['snr_in_db']:.2f} | {r['snr_out_db']:.2f} | "
                     f"{r['snr_affine_db']:.2f} | {frc} |")
    lines += ["", "| method | data | E 90° | E off-grid | sign error | noise energy white (÷ matched LP) | "
                  "noise energy background (÷ matched LP) | matched σ (px) | particles/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows_real:
        thr = throughput.get(r["method"], throughput.get(r["method"].split(" (")[0]))
        lines.append(f"| {r['method']} | {r['data']} | {r['E90']:.3f} | {r['E_offgrid']:.3f} | {r['sign_error']:.1e} | "
                     f"{r['noise_energy_white']:.3f} ({r['noise_energy_white_vs_lowpass']:.2f}) | "
                     f"{r['noise_energy_background']:.3f} ({r['noise_energy_background_vs_lowpass']:.2f}) | "
                     f"{r['matched_sigma_px']:.2f} | {'' if thr is None else f'{thr:.1f}'} |")
    print(f"\nA: {args.n} β-galactosidase particles (held out of training), 64 px, 5.0 Å/px, CTF 0.5–3.5 µm, "
          f"protein dark, white noise; seed {args.seed}. B: {len(parts)} real particles and {len(crops)} micrograph "
          f"crops (64 px), {len(bg)} background tiles; angles {angles}. Throughput on the 1/16 stack, 1 thread, "
          f"own process (start-up included). Run time {time.time() - t_start:.0f} s.\n")
    print("\n".join(lines))
    print("\nThroughput (particles/s, 1 thread): " + "; ".join(f"{k} {v:.1f}" for k, v in throughput.items()))
    for r in rows_gt:
        if "train_s" in r:
            print(f"\nD: {r['method']} at SNR 1/{1 / r['snr']:g}: fine-tuned in {r['train_s']:.0f} s")
    for m in methods:
        if isinstance(m, FineTuned):
            print(f"\nD: {m.name}: fine-tuned in {m.train_s:.0f} s")
    for n in notes:
        print(f"\n{n}")
    if args.json:
        Path(args.json).write_text(json.dumps({"gt": rows_gt, "real": rows_real, "throughput": throughput,
                                               "notes": notes, "angles": angles}, indent=1, default=float))
    if args.figure:
        _figure(args.figure, parts, crops, shown)
    if tmp is not None:
        tmp.cleanup()


def throughput_table(args, ours, topaz, asp, work, env, notes):
    """Part C alone at several stack sizes: the 1/16 held-out stack of ``--n`` particles repeated to each
    size, every tool as its own process (start-up and model loading included), 1 thread; then the
    ratio of each of ours to Topaz at each size (the issue-13 target: ≥ 3×)."""
    from cryoxplain.io.mrc import write_mrc

    clean, var, z, ctf = held_out_set(args.n, args.seed)
    noisy = (clean + np.sqrt(var / 0.0625)[:, None, None] * z).astype(np.float32)
    sizes = [int(v) for v in args.throughput_only.split(",") if v.strip()]
    tools = list(ours) + ([topaz] if topaz else [])
    if not asp:
        tools.append(External("ASPIRE CWF", _aspire(args.aspire_python, 5.0), work, env))
    rate = {}
    for n in sizes:
        reps = -(-n // len(noisy))
        stack = np.tile(noisy, (reps, 1, 1))[:n]
        src = work / f"thr_{n}.mrcs"
        write_mrc(src, stack, 5.0, force=True)
        c = {k: (np.tile(v, reps)[:n] if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == len(noisy) else v)
             for k, v in ctf.items()}
        np.savez(work / f"thr_{n}_ctf.npz", **c)
        for fn in tools:
            w = _as_process(fn, src, work / f"thr_{n}_ctf.npz", work, env)
            rate[(fn.name, n)] = n / w["wall_s"]
            print(f"# C {fn.name} {n} particles: {w['wall_s']:.1f} s, {n / w['wall_s']:.1f} particles/s, "
                  f"peak RSS {w.get('peak_rss_kb', 0) / 1024:.0f} MiB", file=sys.stderr, flush=True)
        lp = LowPass(1.5)
        t = time.perf_counter()
        lp(stack)
        rate[("Gaussian low-pass [in-process]", n)] = n / (time.perf_counter() - t)
    names = list(dict.fromkeys(k[0] for k in rate))
    lines = ["| tool | " + " | ".join(f"{n} particles (particles/s)" for n in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{rate.get((name, n), float('nan')):.1f}" for n in sizes) + " |")
    if topaz:
        for o in ours:
            lines.append(f"| {o.name} ÷ Topaz | " + " | ".join(
                f"{rate[(o.name, n)] / rate[(topaz.name, n)]:.2f}×" for n in sizes) + " |")
    print(f"\nC: the SNR 1/16 held-out stack ({args.n} particles, 64 px) repeated to each size; CPU, 1 thread "
          f"(OMP_NUM_THREADS=1, Topaz -j 1 -d -1), each tool as its own process (start-up and model loading "
          f"included).\n")
    print("\n".join(lines))
    for n_ in notes:
        print(f"\n{n_}")
    if args.json:
        Path(args.json).write_text(json.dumps({"throughput": {f"{k[0]}|{k[1]}": v for k, v in rate.items()},
                                               "sizes": sizes, "notes": notes}, indent=1, default=float))


def _figure(path, parts, crops, shown, idx_p=(0, 3, 7, 12), idx_c=(0, 2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("raw", parts, crops)] + [(k, v["particles"], v["micrograph crops"]) for k, v in shown.items()]
    cols = len(idx_p) + len(idx_c)
    fig, ax = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.6 * len(rows)))
    for i, (name, p, c) in enumerate(rows):
        ims = [p[j] for j in idx_p] + [c[j] for j in idx_c if j < len(c)]
        for j, im in enumerate(ims):
            a = ax[i, j]
            lo, hi = np.percentile(im, [1, 99])
            a.imshow(im, cmap="gray", vmin=lo, vmax=hi)
            a.set_xticks([])
            a.set_yticks([])
        ax[i, 0].set_ylabel(name.replace(" (", "\n("), fontsize=6)
    ax[0, 0].set_title("real particles", fontsize=7, loc="left")
    ax[0, len(idx_p)].set_title("micrograph crops", fontsize=7, loc="left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
