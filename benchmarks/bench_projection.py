#!/usr/bin/env python
"""Projection accuracy and speed: cryoxplain.sim.project vs a scipy cubic-spline reference.

For N random orientations of the 70S ribosome map (or the phantom when ../shared/data is absent),
each projector's images are compared with the projection computed by
``scipy.ndimage.map_coordinates(order=3)`` on the same sampling points (cubic B-spline
interpolation — accurate but slow, the usual "peer" way to rotate a map in Python).  Prints one
table: seconds per projection and relative L2 error vs the reference.

    python benchmarks/bench_projection.py [--n 8] [--box 64]
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from cryoxplain.sim import load_density, phantom, project, random_rotations  # noqa: E402

MAP = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"


def reference(vol: np.ndarray, rots: np.ndarray, box: int) -> np.ndarray:
    d = vol.shape[0]
    nz = int(math.ceil(math.sqrt(3) * d)) | 1
    coeffs = ndimage.spline_filter(vol.astype(np.float64), order=3, mode="constant")
    r = np.arange(box) - box // 2
    rz = np.arange(nz) - nz // 2
    z, y, x = np.meshgrid(rz, r, r, indexing="ij")
    p = np.stack([x, y, z], -1).reshape(-1, 3).astype(np.float64)
    out = np.empty((len(rots), box, box))
    for i, a in enumerate(rots):
        v = p @ a + d // 2  # (x, y, z) volume coordinates
        vals = ndimage.map_coordinates(coeffs, [v[:, 2], v[:, 1], v[:, 0]], order=3, mode="constant",
                                       prefilter=False)
        out[i] = vals.reshape(nz, box, box).sum(0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--box", type=int, default=64)
    args = ap.parse_args()
    if MAP.exists():
        dens, name = load_density(MAP, pixel_size=5.0), "70S ribosome map (65³, 5 Å)"
    else:
        dens, name = phantom(size=64, pixel_size=2.0), "phantom (64³)"
    rots = random_rotations(args.n, np.random.default_rng(0))
    t = time.perf_counter()
    ref = reference(dens.data, rots, args.box)
    t_ref = (time.perf_counter() - t) / args.n
    rows = [("scipy map_coordinates order 3 (reference)", t_ref, 0.0)]
    for ov in (1, 2, 3):
        t = time.perf_counter()
        img = project(dens.data, rots, args.box, oversample=ov)
        dt = (time.perf_counter() - t) / args.n
        err = np.linalg.norm(img - ref) / np.linalg.norm(ref)
        rows.append((f"cryoxplain project, oversample={ov}{' (default)' if ov == 2 else ''}", dt, err))
    print(f"density: {name}; {args.n} random orientations, box {args.box}, threads {os.environ['OMP_NUM_THREADS']}")
    print(f"{'projector':48s} {'s / projection':>15s} {'rel. L2 error':>14s}")
    for label, dt, err in rows:
        print(f"{label:48s} {dt:15.4f} {err:14.2e}")


if __name__ == "__main__":
    main()
