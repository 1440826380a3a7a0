"""Synthetic particle-like data for the denoiser tests (no simulation dependency)."""
import numpy as np


def blobs(n=40, h=32, w=None, noise=0.3, seed=0):
    """``n`` images of one or two Gaussian blobs at random positions plus Gaussian noise."""
    w = w or h
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    yy = yy - (h - 1) / 2
    xx = xx - (w - 1) / 2
    clean = np.zeros((n, h, w), np.float32)
    for i in range(n):
        for _ in range(2):
            cy, cx = rng.uniform(-h / 5, h / 5), rng.uniform(-w / 5, w / 5)
            s = rng.uniform(2, 5)
            clean[i] += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    noisy = clean + rng.normal(scale=noise, size=clean.shape).astype(np.float32)
    return noisy, clean
