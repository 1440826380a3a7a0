"""Resampling floor of the spiral CNN: the equivariance error E of its fixed grid→spiral→grid path
(:func:`cryoxplain.models.spiral.spiral_resampling_floor`) for each prefilter σ and oversampling,
on white noise and on clean simulated particles, with the windowed metric (12 stratified off-grid
angles, the spiral's output window).  Also the prefilter's cost: the relative change
‖W(K_σ x − x)‖/‖W x‖ it makes to clean particles (signal it removes before the net sees it).

    python benchmarks/spiral_resampling_floor.py [--box 33] [--n 64] [--density PATH]

Numbers: docs/equivariance.md §1 ("The spiral's resampling floor").
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None):
    from cryoxplain.imaging.filters import gaussian_blur
    from cryoxplain.metrics.equivariance import common_window
    from cryoxplain.models.spiral import SpiralDenoiser, spiral_resampling_floor

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--box", type=int, default=33)
    ap.add_argument("--n", type=int, default=64, help="images of each kind")
    ap.add_argument("--sigmas", default="0,0.5,0.7,1.0")
    ap.add_argument("--oversample", default="1,2")
    ap.add_argument("--density", type=Path,
                    default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc")
    args = ap.parse_args(argv)
    noise = torch.as_tensor(np.random.default_rng(0).standard_normal((args.n, args.box, args.box)), dtype=torch.float32)
    clean = None
    if args.density.is_file():
        from cryoxplain.sim import load_density, simulate_particles

        dens = load_density(args.density, pixel_size=5.0)
        clean = torch.as_tensor(simulate_particles(dens, args.n, box=args.box, pixel_size=10.0 * 33 / args.box,
                                                   snr=1.0, seed=0).clean, dtype=torch.float32)
        clean = clean / clean.std()
    print(f"box {args.box}, {args.n} images; E: mean ± sd over 12 stratified off-grid angles")
    print(f"{'sigma':>6}{'oversample':>11}{'n_spls':>8}{'window r':>9}{'E noise':>16}{'E clean':>16}{'prefilter cost':>15}{'build s':>9}")
    for s in (int(v) for v in args.oversample.split(",")):
        for sig in (float(v) for v in args.sigmas.split(",")):
            t0 = time.perf_counter()
            net = SpiralDenoiser(box_size=args.box, depth=2, width=1, prefilter_sigma=sig, oversample=s)
            t = time.perf_counter() - t0
            # one window for every row: the smallest valid disc (oversample 1)
            win = common_window(args.box, SpiralDenoiser(box_size=args.box, depth=2, width=1, prefilter_sigma=0))
            fn = spiral_resampling_floor(net, noise, window=win)
            row = f"{sig:>6.2f}{s:>11d}{net.geometry.n_spls:>8d}{net.valid_radius:>9.2f}{fn['mean']:>9.4f} ± {fn['std']:.3f}"
            if clean is not None:
                fc = spiral_resampling_floor(net, clean, window=win)
                w = torch.as_tensor(win, dtype=torch.float64)
                cost = float(torch.linalg.norm(w * (gaussian_blur(clean.double(), sig) - clean.double()))
                             / torch.linalg.norm(w * clean.double())) if sig > 0 else 0.0
                row += f"{fc['mean']:>9.4f} ± {fc['std']:.3f}{cost:>15.4f}"
            print(row + f"{t:>9.1f}")


if __name__ == "__main__":
    main()
