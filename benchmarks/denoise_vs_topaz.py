#!/usr/bin/env python
"""Side-by-side: ``cryoxplain denoise`` (shipped default model) vs ``topaz denoise`` (pretrained U-Net).

One run → one table.  Both tools get the same simulated particle stacks (the real 70S ribosome map,
the same simulation settings as the default model's training data but a different seed: in
distribution, unseen particles) at SNR 1/4 and 1/16, on the CPU, one thread each
(``OMP_NUM_THREADS=1``; Topaz ``-j 1 -d -1``).  Each tool runs as its own process, started by a
small watcher that reports the wall time and the peak RSS of that process alone; the particles/s
figure therefore includes start-up and model loading, as a user would see it.

Quality is measured by :mod:`cryoxplain.metrics.snr` against the known clean images: SNR_out over
the box-inscribed disc (dB), PSNR (each clean image's own range), FRC 0.5 resolution (Å, soft disc
mask), and — to be fair to a model trained on other data, whose output may be scaled differently —
the SNR after the best per-image affine fit a·F(x)+b of the estimate to the clean image.

Topaz is run from its own environment (default ``.venv-topaz/bin/python``; ``pip install
topaz-em``), as ``python -m topaz.commands.denoise --stack`` — the module behind ``topaz denoise``
(see docs/benchmarks.md for why not the ``topaz`` entry point here).  Without it, the table has our
rows only and says why.

    OMP_NUM_THREADS=1 nice python benchmarks/denoise_vs_topaz.py [--n 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DENSITY = REPO.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"
TOPAZ_PY = REPO / ".venv-topaz" / "bin" / "python"

# run CMD as a child; print its wall time and its own peak RSS (kB) as JSON on the last line
WATCH = (
    "import json,resource,subprocess,sys,time;t=time.perf_counter();"
    "p=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE,text=True);"
    "w=time.perf_counter()-t;r=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
    "print(p.stderr[-2000:] if p.returncode else '',file=sys.stderr);"
    "print(json.dumps({'rc':p.returncode,'wall_s':w,'peak_rss_kb':r}))"
)


def watch(cmd: list[str], env: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", WATCH, *cmd], capture_output=True, text=True, env=env)
    if p.returncode != 0 or not p.stdout.strip():
        raise RuntimeError(f"watcher failed: {p.stderr[-2000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res['rc']}: {p.stderr[-2000:]}")
    return res


def affine_fit_snr(clean: np.ndarray, est: np.ndarray, mask: np.ndarray) -> float:
    """Pooled SNR after the least-squares a·est + b per image (in the mask)."""
    sig = err = 0.0
    for c, e in zip(clean.astype(np.float64), est.astype(np.float64)):
        cm, em = c[mask], e[mask]
        A = np.stack([em, np.ones_like(em)], axis=1)
        coef, *_ = np.linalg.lstsq(A, cm, rcond=None)
        sig += float(((cm - cm.mean()) ** 2).sum())
        err += float(((A @ coef - cm) ** 2).sum())
    return 10 * np.log10(sig / err)


def metrics(clean_path, est_path, noisy_path, pixel_size) -> dict:
    from cryoxplain.evaluate import evaluate_snr_files
    from cryoxplain.imaging.masks import disc_mask
    from cryoxplain.io.mrc import read_mrc

    r = evaluate_snr_files(clean_path, est_path, noisy=noisy_path, pixel_size=pixel_size)
    clean, _ = read_mrc(clean_path)
    est, _ = read_mrc(est_path)
    return {"snr_in_db": r["snr_in_db"], "snr_out_db": r["snr_out_db"], "psnr_db": r["psnr_db"],
            "frc05_A": r["frc_0.5"]["resolution_A"], "frc05_crossed": r["frc_0.5"]["crossed"],
            "snr_affine_db": affine_fit_snr(clean, est, disc_mask(clean.shape[1:]) > 0)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="particles per SNR")
    ap.add_argument("--snrs", default="0.25,0.0625")
    ap.add_argument("--seed", type=int, default=777, help="simulation seed (the default model was trained on 0…4000)")
    ap.add_argument("--pixel-size", type=float, default=5.0)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--model", default="default", help="our model (file or shipped name)")
    ap.add_argument("--topaz-python", default=str(TOPAZ_PY))
    ap.add_argument("--workdir", default=None, help="keep the stacks here (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    from cryoxplain.io.mrc import write_mrc
    from cryoxplain.sim import load_density, simulate_particles

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)

    topaz_py = Path(args.topaz_python)
    topaz_note = None
    if not topaz_py.exists():
        topaz_note = f"Topaz not run: no Python environment with topaz-em at {topaz_py} (pip install topaz-em there)"
    else:
        chk = subprocess.run([str(topaz_py), "-c", "import topaz.commands.denoise, topaz.denoising.models as m, os;"
                              "d=os.path.join(os.path.dirname(m.__file__),'..','pretrained','denoise');"
                              "assert os.path.exists(os.path.join(d,'unet_L2_v0.2.2.sav'))"],
                             capture_output=True, text=True, env=env)
        if chk.returncode != 0:
            topaz_note = f"Topaz not run: topaz-em or its pretrained U-Net weights unavailable ({chk.stderr.strip().splitlines()[-1] if chk.stderr.strip() else 'import failed'})"

    dens = load_density(DENSITY, pixel_size=args.pixel_size)
    rows = []
    for snr in [float(s) for s in args.snrs.split(",")]:
        sim = simulate_particles(dens, args.n, box=args.box, snr=snr, seed=args.seed)
        tag = f"snr{snr:g}"
        clean, noisy = work / f"{tag}_clean.mrcs", work / f"{tag}_noisy.mrcs"
        write_mrc(clean, sim.clean, args.pixel_size, force=True)
        write_mrc(noisy, sim.noisy, args.pixel_size, force=True)
        runs = [("cryoxplain (default DnCNN)", work / f"{tag}_ours.mrcs",
                 [sys.executable, "-m", "cryoxplain", "denoise", str(noisy), "-o", str(work / f"{tag}_ours.mrcs"),
                  "--model", args.model, "--device", "cpu", "--force"])]
        if topaz_note is None:
            runs.append(("topaz denoise (pretrained unet)", work / f"{tag}_topaz.mrcs",
                         [str(topaz_py), "-m", "topaz.commands.denoise", "--stack", "-m", "unet", "-d", "-1", "-j", "1",
                          "-o", str(work / f"{tag}_topaz.mrcs"), str(noisy)]))
        for name, out, cmd in runs:
            w = watch(cmd, env)
            m = metrics(clean, out, noisy, args.pixel_size)
            rows.append({"tool": name, "snr": snr, "n": args.n, **m, "particles_per_s": args.n / w["wall_s"],
                         "wall_s": w["wall_s"], "peak_rss_mb": w["peak_rss_kb"] / 1024})
            print(f"# {name} at SNR {snr:g}: done in {w['wall_s']:.1f} s", file=sys.stderr, flush=True)

    hdr = ("| tool | SNR | SNR_in (dB) | SNR_out (dB) | SNR_out affine-fit (dB) | PSNR (dB) | FRC-0.5 (Å) "
           "| particles/s | peak RSS (MB) |")
    lines = [hdr, "|---" * (hdr.count("|") - 1) + "|"]
    for r in rows:
        frc = f"{r['frc05_A']:.1f}" + ("" if r["frc05_crossed"] else " (≥Nyquist)")
        lines.append(f"| {r['tool']} | 1/{1 / r['snr']:g} | {r['snr_in_db']:.2f} | {r['snr_out_db']:.2f} | "
                     f"{r['snr_affine_db']:.2f} | {r['psnr_db']:.2f} | {frc} | {r['particles_per_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    print(f"\n{args.n} simulated 70S-ribosome particles per SNR, box {args.box}, {args.pixel_size} Å/px, "
          f"seed {args.seed}; CPU, 1 thread; particles/s includes process start-up and model loading.\n")
    print("\n".join(lines))
    if topaz_note:
        print(f"\n{topaz_note}")
    by = {(r["tool"].split()[0], r["snr"]): r for r in rows}
    for snr in sorted({r["snr"] for r in rows}, reverse=True):
        o, t = by.get(("cryoxplain", snr)), by.get(("topaz", snr))
        if o and t:
            print(f"SNR 1/{1 / snr:g}: SNR_out ours − Topaz = {o['snr_out_db'] - t['snr_out_db']:+.2f} dB "
                  f"(affine-fit {o['snr_affine_db'] - t['snr_affine_db']:+.2f} dB); "
                  f"throughput ratio {o['particles_per_s'] / t['particles_per_s']:.1f}×")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "topaz_note": topaz_note}, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
