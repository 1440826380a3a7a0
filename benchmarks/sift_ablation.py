"""Benchmark: sift_ablation vs ablation_path on ONE 128×128 particle, CPU, default settings.

Target (issue 15): sift_ablation ≤ 2× the pixel plugin's time on the same model and particle.
Prints the feature-basis build time, K, the decoder's size, and the wall time of both explainers
(the model: cryoxplain.testing.TinyClassifier with seeded random weights, a stand-in whose cost per
evaluation is small, so the comparison is dominated by the methods' own overhead — the worst case
for the SIFT plugin; a real classifier makes the evaluations dominate both).

    OMP_NUM_THREADS=2 python benchmarks/sift_ablation.py [--size 128] [--snr 0.25]
    OMP_NUM_THREADS=2 python benchmarks/sift_ablation.py --pyramid-sizes 64,128,256

``--pyramid-sizes`` prints instead the resolution-pyramid table (spec §4.4/§10): for each box size,
``pyramid=none`` vs ``thesis`` without and with ``pyramid_fix``: K, the elements stored per level
(MiB float32), the relative reconstruction error max|D(1) − x|/max|x| and the build time.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from cryoxplain.explain.targets import ClassLogit
from cryoxplain.sim import phantom, simulate_particles
from cryoxplain.testing.toys import TinyClassifier
from cryoxplain_plugins.ablation_path import AblationPath
from cryoxplain_plugins.sift_ablation import SiftAblation
from cryoxplain_plugins.sift_ablation.decomposition import BasisConfig, build_decoder


def pyramid_table(sizes, snr: float) -> None:
    """Memory and reconstruction error of the thesis pyramid (Table 4.1) vs one exact level."""
    print(f"| box | pyramid | fix | K | stored (MiB, float32) | max|D(1) − x|/max|x| | build (s) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = np.asarray(simulate_particles(phantom(n, seed=0), 1, snr=snr, seed=1).noisy[0], np.float64).squeeze()
        for pyr, fix in (("none", True), ("thesis", False), ("thesis", True)):
            t = time.perf_counter()
            d = build_decoder(x, BasisConfig(pyramid=pyr, pyramid_fix=fix))
            dt = time.perf_counter() - t
            mib = sum(d.extra["level_elements"].values()) * 4 / 2**20
            levels = "+".join(f"{v * 4 / 2**20:.2f}" for _, v in sorted(d.extra["level_elements"].items()))
            print(f"| {n} | {pyr} | {'yes' if fix and pyr != 'none' else '–'} | {d.n_features} | {mib:.2f} ({levels}) "
                  f"| {d.reconstruction_error:.1e} | {dt:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--snr", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pyramid-sizes", default="", help="comma-separated box sizes: print the pyramid table")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.pyramid_sizes:
        pyramid_table([int(v) for v in a.pyramid_sizes.split(",")], a.snr)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = np.asarray(simulate_particles(phantom(a.size, seed=0), 1, snr=a.snr, seed=1).noisy[0], np.float32).squeeze()
    x = (x - x.mean()) / x.std()
    X = torch.as_tensor(x)[None, None]
    torch.manual_seed(0)
    model = TinyClassifier(image_shape=(a.size, a.size)).eval()
    build_decoder(x, BasisConfig())                                 # warm-up (FFT plans, caches)
    t = time.perf_counter()
    dec = build_decoder(x, BasisConfig())
    t_build = time.perf_counter() - t
    rows = [("feature basis build", f"{t_build:.3f} s", f"K = {dec.n_features}, "
             f"dense Z̄ {dec.Z.numel() * 4 / 2**20:.2f} MiB (float32), nonzero {dec.nonzero_fraction:.2f}, "
             f"recon. error {dec.reconstruction_error:.1e}")]
    times = {}
    for name, ex in (("ablation_path (defaults)", AblationPath()), ("sift_ablation (defaults)", SiftAblation())):
        t = time.perf_counter()
        att = ex.attribute(model, X, ClassLogit(1))
        times[name] = time.perf_counter() - t
        e = att.extras
        rows.append((name, f"{times[name]:.2f} s", f"iterations {int(e['iterations'][0])}, "
                     f"saturation {float(e['saturation'][0]):.3f}, converged {bool(e['converged'][0])}"))
    ratio = times["sift_ablation (defaults)"] / times["ablation_path (defaults)"]
    rows.append(("ratio sift / pixel", f"{ratio:.2f}×", "target ≤ 2×"))
    w = max(len(r[0]) for r in rows)
    print(f"{a.size}² particle, SNR {a.snr}, {a.threads} threads")
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:>9}  {r[2]}")


if __name__ == "__main__":
    main()
