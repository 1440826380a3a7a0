"""Shared images for the sift_ablation tests (fast, analytic: no projection needed)."""
import functools

import numpy as np


def blob(n, centre, s, amp=1.0, shape=None):
    """Gaussian blob of std ``s`` px at ``centre = (x, y)`` (x = column)."""
    h, w = shape or (n, n)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    return amp * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * s * s))


def particle(n, snr=None, seed=1):
    """A phantom-like particle: 17 Gaussian domains inside the disc (like ``cryoxplain.sim.phantom``'s
    projections) plus white noise at ``snr`` = Var_disc(clean)/σ²; normalised per image.  Cached."""
    return _particle(n, snr, seed).copy()


@functools.lru_cache(maxsize=None)
def _particle(n, snr, seed):
    rng = np.random.default_rng(1000 + n)
    x = np.zeros((n, n))
    for _ in range(17):
        r = rng.uniform(0, 0.3 * n)
        a = rng.uniform(0, 2 * np.pi)
        x += blob(n, (n // 2 + r * np.cos(a), n // 2 + r * np.sin(a)), rng.uniform(0.03, 0.09) * n, rng.uniform(0.5, 1.5))
    if snr is not None:
        yy, xx = np.mgrid[:n, :n]
        disc = (yy - n // 2) ** 2 + (xx - n // 2) ** 2 <= (n / 2) ** 2
        sigma = np.sqrt(x[disc].var() / snr)
        x = x + np.random.default_rng(seed).standard_normal((n, n)) * sigma
    return (x - x.mean()) / x.std()
