"""Functions run in each rank of the 2-process gloo worlds of tests/distributed (importable by
``torch.multiprocessing`` spawn; this folder is on ``sys.path`` under pytest)."""
from __future__ import annotations

import numpy as np


def toy_pairs(n=24, box=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    clean = np.stack([np.exp(-((xx - rng.uniform(-3, 3)) ** 2 + (yy - rng.uniform(-3, 3)) ** 2) / 8.0)
                      for _ in range(n)]).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.5, clean.shape)).astype(np.float32)
    return noisy, clean


def train_denoise(rank, out, kwargs):
    """Train a denoiser; return its parameters (numpy) and the history."""
    from cryoxplain.denoise import train_denoiser

    noisy, clean = toy_pairs()
    res = train_denoiser(noisy, clean, out=out, progress=False, device="cpu", **kwargs)
    return {k: v.detach().cpu().numpy().copy() for k, v in res.model.state_dict().items()}, res.history


def train_classify(rank, out, kwargs):
    from cryoxplain.classify.train import DEFAULT_CONFIG, train_classifier

    noisy, _ = toy_pairs(24, 16, 0)
    other, _ = toy_pairs(24, 16, 1)
    other = np.ascontiguousarray(other[:, ::-1])
    res = train_classifier([noisy, other], config=DEFAULT_CONFIG.replace(progress=False, device="cpu", **kwargs),
                           out=out)
    return {k: v.detach().cpu().numpy().copy() for k, v in res.model.state_dict().items()}, res.history
