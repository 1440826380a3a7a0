"""Benchmark: Ablation Path explanation of ONE 128×128 particle on the CPU at default settings.

Target (issue 8): ≤ 30 s.  Prints one table: our ablation path (defaults, Algorithm 1
monotonisation), the same with the vectorised monotonisation, and Captum's Integrated Gradients
(same classifier, 64 steps) as the peer for scale; plus where the time goes.

The particle is a projection of the real 70S ribosome map in ../shared/data (random orientation,
Gaussian noise).  The classifier is ``--model`` (a cryoxplain model file or shipped name of task
``classify``); without one, a stand-in CNN (4 conv layers, ~0.1 M parameters) is trained here for
a few seconds to tell ribosome projections from smooth non-particle "junk".

    OMP_NUM_THREADS=1 nice python benchmarks/ablation_path.py [--model NAME] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

REPO = Path(__file__).resolve().parent.parent
VOLUME = REPO.parent / "shared" / "data" / "aspire_clean70SRibosome_vol_65p.mrc"
SIZE = 128


def load_volume() -> np.ndarray:
    import mrcfile

    with mrcfile.open(VOLUME, permissive=True) as m:
        v = np.asarray(m.data, dtype=np.float32)
    return v / v.std()


def project(vol: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A randomly oriented projection of ``vol`` (cryoxplain.sim, centre N//2) up-sampled to
    ``size``², unit-variance signal."""
    from cryoxplain.sim.project import project as sim_project
    from cryoxplain.sim.so3 import random_rotations

    img = sim_project(vol, random_rotations(1, rng), oversample=1)[0].astype(np.float64)
    img = ndimage.zoom(img, size / img.shape[0], order=1)[:size, :size]
    img -= img[:8].mean()
    return (img / img.std()).astype(np.float32)


def junk(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    img = ndimage.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(6, 14))
    return (img / img.std()).astype(np.float32)


def particles(vol, rng, n: int, label: int, noise: float = 1.0) -> np.ndarray:
    imgs = [project(vol, rng) if label == 1 else junk(rng) for _ in range(n)]
    return np.stack(imgs) + noise * rng.standard_normal((n, SIZE, SIZE)).astype(np.float32)


class StandInClassifier(nn.Module):
    """Particle (1) vs junk (0): 4 conv layers + global pooling, ~0.1 M parameters."""

    input_shape = None

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 2))

    def forward(self, x):
        return self.f(x)


def train_stand_in(vol, seed: int = 0, steps: int = 120) -> nn.Module:
    from cryoxplain.testing import fit_toy_classifier

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = np.concatenate([particles(vol, rng, 96, 1), particles(vol, rng, 96, 0)])
    y = np.r_[np.ones(96, np.int64), np.zeros(96, np.int64)]
    return fit_toy_classifier(StandInClassifier(), x, y, steps=steps, batch_size=16, seed=seed)


def get_classifier(spec: str | None, vol):
    if spec:
        from cryoxplain.models.registry import load_model

        model, info = load_model(spec)
        return model, info.describe()
    from cryoxplain.models.registry import read_model_info, shipped_models

    for name in shipped_models():
        try:
            if read_model_info(name).task == "classify":
                from cryoxplain.models.protocol import model_input_shape
                from cryoxplain.models.registry import load_model

                model, info = load_model(name)
                if model_input_shape(model) in (None, (SIZE, SIZE)):
                    return model, info.describe()
        except Exception:
            continue
    return train_stand_in(vol), "stand-in CNN (trained in this script)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--html", default=None, help="also write the viewer page here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from cryoxplain.explain.base import Target
    from cryoxplain.explain.registry import create_explainer

    vol = load_volume()
    model, desc = get_classifier(args.model, vol)
    rng = np.random.default_rng(args.seed)
    x = torch.from_numpy(particles(vol, rng, 1, 1)).unsqueeze(1)
    with torch.no_grad():
        logits = model(x)
    k = int(logits.argmax(1))
    target = Target.from_callable(lambda o: o[:, k], f"class:{k}")
    print(f"classifier: {desc}; particle 128x128, predicted class {k}, "
          f"p = {float(torch.softmax(logits, 1)[0, k]):.3f}; torch threads {torch.get_num_threads()}")

    rows = []
    ex = create_explainer("ablation_path")
    ex.attribute(model, x[:, :, :32, :32] if model.__class__.__name__ == "StandInClassifier" else x, target)  # numba JIT warm-up
    for label, params in (("ablation_path (defaults, Algorithm 1)", {}),
                          ("ablation_path (monotonise=fast)", {"monotonise": "fast"})):
        ex = create_explainer("ablation_path", **params)
        t0 = time.perf_counter()
        a = ex.attribute(model, x, target)
        dt = time.perf_counter() - t0
        e = a.extras
        rows.append((label, dt, int(e["iterations"][0]), bool(e["converged"][0]),
                     f"{e['objective_initial'][0]:.3f} → {e['objective_final'][0]:.3f}",
                     f"sat {e['saturation'][0]:.2f}"))
        if label.startswith("ablation_path (defaults") and args.html:
            ex.write_html(a, x, args.html)
    # peer: Captum Integrated Gradients, same model, 64 steps
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(lambda z: torch.softmax(model(z), 1)[:, k])
    t0 = time.perf_counter()
    ig.attribute(x, baselines=torch.zeros_like(x), n_steps=64, internal_batch_size=64)
    rows.append(("captum IntegratedGradients (64 steps)", time.perf_counter() - t0, 1, True, "", ""))

    # cost split of one default iteration: model vs projection
    from cryoxplain_plugins.ablation_path.projection import repair
    from cryoxplain_plugins.ablation_path.optimize import initial_path, PathConfig

    phi = initial_path(1, PathConfig(), 64, 64) + 0.05 * torch.randn(1, 14, 64, 64, dtype=torch.float64)
    t0 = time.perf_counter()
    for _ in range(20):
        repair(phi)
    t_rep = (time.perf_counter() - t0) / 20

    print()
    print("| method | wall time (s) | iterations | converged | objective | final |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |")
    print(f"\nrepair (Algorithm 1 + clamp + re-parametrisation) of one 14x64x64 path: {1e3 * t_rep:.1f} ms")
    target_ok = rows[0][1] <= 30
    print(f"target ≤ 30 s for one 128² particle at defaults: {'met' if target_ok else 'NOT met'} ({rows[0][1]:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
