#!/usr/bin/env python
"""Measure the radial noise power spectrum of the real EPU micrograph's background and store it in
the package (``cryoxplain/data/noise/fei_extended_bin6_background.json``), where
:func:`cryoxplain.sim.training.coloured_noise` reads it to simulate real-looking (coloured) noise.

Input: ``../shared/data/real/mrcfile_fei-extended_bin6.mrc`` (the real EPU micrograph, ×6 Fourier
binned, 5.12265 Å/px) and the 105 picks in ``fei-extended_picked105_bin6_box64.star`` (coordinates
in pixels of the unbinned micrograph; binned = (unbinned − offset)/6 with the crop offset of
SOURCES.md: row 5, column 1).

Method: the micrograph is normalised (cryoxplain.imaging.normalize); every ``patch`` × ``patch``
tile on a grid with step ``patch/2`` whose centre is at least ``min_dist`` binned pixels from every
pick and whose tile lies inside the image is a background patch.  Each patch has its own mean
removed and is multiplied by a separable Hann window (power renormalised by the window's mean
square); the periodograms ``|FFT|²`` are averaged over patches and binned into Fourier rings
(cryoxplain.imaging.fourier.ring_index: ring k at k/patch cycles/px).  The stored ``power`` is the
ring mean divided by its mean over rings 1 … patch/2, so a white spectrum would be 1 everywhere;
ring 0 (the removed mean) is set to ring 1's value.

    python scripts/measure_noise_spectrum.py [--force]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REAL = REPO.parent / "shared" / "data" / "real"
OUT = REPO / "cryoxplain" / "data" / "noise" / "fei_extended_bin6_background.json"


def picks_binned(star: Path, bin_factor: int = 6, row_offset: int = 5, col_offset: int = 1) -> np.ndarray:
    from cryoxplain.io.star import read_star

    blocks = read_star(star)
    parts = blocks["particles"]
    x = (np.asarray(parts["rlnCoordinateX"], dtype=float) - col_offset) / bin_factor
    y = (np.asarray(parts["rlnCoordinateY"], dtype=float) - row_offset) / bin_factor
    return np.stack([y, x], axis=1)  # (row, column)


def measure(mic: np.ndarray, picks: np.ndarray, patch: int = 64, min_dist: float = 40.0) -> dict:
    from cryoxplain.imaging.fourier import ring_index, ring_sums
    from cryoxplain.imaging.normalize import normalize_images

    img = normalize_images(mic).astype(np.float64)
    h, w = img.shape
    win = np.outer(np.hanning(patch), np.hanning(patch))
    win_ms = float((win ** 2).mean())
    ring = ring_index((patch, patch))
    counts = np.bincount(ring[ring >= 0])
    acc, centres = np.zeros(patch // 2 + 1), []
    step = patch // 2
    for r0 in range(0, h - patch + 1, step):
        for c0 in range(0, w - patch + 1, step):
            c = np.array([r0 + patch / 2, c0 + patch / 2])
            if np.min(np.linalg.norm(picks - c, axis=1)) < min_dist:
                continue
            p = img[r0:r0 + patch, c0:c0 + patch]
            p = (p - p.mean()) * win
            pw = np.abs(np.fft.fft2(p)) ** 2 / (patch * patch * win_ms)
            acc += ring_sums(pw, ring)[: patch // 2 + 1] / counts
            centres.append([int(r0), int(c0)])
    if not centres:
        raise SystemExit("no background patch found; lower --min-dist")
    power = acc / len(centres)
    power[0] = power[1]
    power = power / power[1:].mean()
    return {"power": power.tolist(), "frequency_cycles_per_px": (np.arange(patch // 2 + 1) / patch).tolist(),
            "n_patches": len(centres), "patch_px": patch, "min_dist_px": min_dist, "patch_origins": centres}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micrograph", default=str(REAL / "mrcfile_fei-extended_bin6.mrc"))
    ap.add_argument("--star", default=str(REAL / "fei-extended_picked105_bin6_box64.star"))
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--min-dist", type=float, default=40.0, help="binned px from every pick")
    ap.add_argument("-o", "--output", default=str(OUT))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    from cryoxplain.io.mrc import read_mrc

    out = Path(args.output)
    if out.exists() and not args.force:
        raise SystemExit(f"{out} exists (--force to overwrite)")
    mic, px = read_mrc(args.micrograph)
    mic = np.asarray(mic, dtype=np.float64)
    if mic.ndim == 3:
        mic = mic[0]
    res = measure(mic, picks_binned(Path(args.star)), args.patch, args.min_dist)
    res.update(source="../shared/data/real/mrcfile_fei-extended_bin6.mrc (real EPU micrograph, x6 Fourier-binned; "
                      "mrcfile 1.5.4 test data, BSD-3-Clause)",
               picks="../shared/data/real/fei-extended_picked105_bin6_box64.star",
               pixel_size_A=float(px) if px else None, script="scripts/measure_noise_spectrum.py",
               normalisation="power / mean(power over rings 1..patch/2): white noise = 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    p = np.array(res["power"])
    print(f"{res['n_patches']} background patches of {args.patch} px; power at f=0.03/0.1/0.25/0.5 cycles/px: "
          + ", ".join(f"{p[int(round(f * args.patch))]:.2f}" for f in (0.03, 0.1, 0.25, 0.5)) + f" -> {out}")


if __name__ == "__main__":
    sys.exit(main())
