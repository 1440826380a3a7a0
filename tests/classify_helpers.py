"""A small procedural source of labelled particles (two complexes of Gaussian domains).

Each structure is a set of 3D Gaussian "domains"; complex B has two extra arms.  A projection
of an isotropic 3D Gaussian along z is a 2D Gaussian at the rotated (x, y) position, so particles
are exact projections at Haar-random orientations, plus white Gaussian noise at a given SNR
(variance over the particle disc / σ²).  Labels are the source structure.
"""
import numpy as np

DOMAINS_A = np.array([[0, 0, 0], [7, 0, 0], [-4, 6, 2], [-4, -6, -2], [0, 0, 7]], float)
DOMAINS_B = np.concatenate([DOMAINS_A, [[0, 13, 0], [0, -13, 0]]])  # a larger complex: two extra arms


def _random_rotations(n, rng):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def project(domains, n, box=32, sigma=3.0, seed=0):
    rng = np.random.default_rng(seed)
    rots = _random_rotations(n, rng)
    yy, xx = np.mgrid[0:box, 0:box] - box // 2
    out = np.zeros((n, box, box), np.float32)
    for i, r in enumerate(rots):
        p = domains @ r.T
        for cx, cy, _ in p:
            out[i] += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    return out


def labelled_particles(n_per_class=64, box=32, snr=1.0, seed=0):
    """``(stack_A, stack_B)`` noisy particles of the two conformations."""
    rng = np.random.default_rng(seed + 1000)
    stacks = []
    disc = (np.mgrid[0:box, 0:box] - box // 2) ** 2
    disc = disc.sum(0) <= (box / 2) ** 2
    for j, dom in enumerate((DOMAINS_A, DOMAINS_B)):
        clean = project(dom, n_per_class, box, seed=seed * 2 + j)
        var = clean[:, disc].var(axis=1).mean()
        stacks.append((clean + rng.normal(scale=np.sqrt(var / snr), size=clean.shape)).astype(np.float32))
    return stacks
