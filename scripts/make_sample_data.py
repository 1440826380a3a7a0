#!/usr/bin/env python
"""Regenerate sample_data/ exactly: 200 particles of the real 70S ribosome map at SNR 1/4.

Source map: ASPIRE-Python's ``clean70SRibosome_vol_65p.mrc`` (65³, header voxel size 0; see
sample_data/README.md for provenance and the choice of 5.0 Å/pixel).  Usage::

    python scripts/make_sample_data.py            # writes sample_data/ribosome70S_* (needs --force to replace)
    python scripts/make_sample_data.py --check    # regenerate in memory and compare with the committed files
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from cryoxplain.io.mrc import read_mrc  # noqa: E402
from cryoxplain.sim import load_density, simulate_particles, write_simulation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAP = REPO.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"

# Every parameter of the committed set.  Changing any of them changes the data.
SETTINGS = dict(n=200, box=64, pixel_size=5.0, snr=0.25, seed=20240, noise_scale="image")
PREFIX = "ribosome70S"


def simulate(map_path: Path, n: int | None = None):
    s = dict(SETTINGS)
    if n is not None:
        s["n"] = n
    density = load_density(map_path, pixel_size=s["pixel_size"])
    # record the provenance, not this machine's path
    density.source = "clean70SRibosome_vol_65p.mrc (ComputationalCryoEM/ASPIRE-Python @ 64ad0dd6)"
    return simulate_particles(density, s["n"], box=s["box"], snr=s["snr"], seed=s["seed"],
                              noise_scale=s["noise_scale"], device="cpu")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", type=Path, default=MAP, help="path of clean70SRibosome_vol_65p.mrc")
    ap.add_argument("--out", type=Path, default=REPO / "sample_data", help="output folder")
    ap.add_argument("--force", action="store_true", help="replace existing files")
    ap.add_argument("--check", action="store_true", help="compare a regeneration with the files in --out")
    args = ap.parse_args(argv)
    result = simulate(args.map)
    if args.check:
        ok = True
        for key in ("clean", "noisy"):
            data, vs = read_mrc(args.out / f"{PREFIX}_{key}.mrcs")
            new = getattr(result, key)
            rel = float(np.abs(data - new).max() / np.abs(data).max())
            if np.array_equal(data, new):
                verdict = "identical"
            elif rel < 1e-5:  # a different CPU/library build may round the last bits differently
                verdict = f"equal to float32 rounding (max relative difference {rel:.1e})"
            else:
                verdict = f"DIFFERENT (max relative difference {rel:.1e})"
                ok = False
            if vs != SETTINGS["pixel_size"]:
                verdict += f"; voxel size {vs} != {SETTINGS['pixel_size']}"
                ok = False
            print(f"{key}: {verdict}")
        return 0 if ok else 1
    args.out.mkdir(parents=True, exist_ok=True)
    paths = write_simulation(result, args.out / PREFIX, force=args.force)
    snr = result.metadata["snr_measured"]
    print(f"wrote {len(result)} particles, box {SETTINGS['box']}, {SETTINGS['pixel_size']} Å/px, "
          f"measured SNR {snr.mean():.4f} ± {snr.std():.4f} (requested {SETTINGS['snr']})")
    for p in paths.values():
        print(f"  {p.relative_to(REPO) if p.is_relative_to(REPO) else p}  {p.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
