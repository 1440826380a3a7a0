"""Rotations in SO(3): uniform sampling and RELION's ZYZ Euler-angle convention.

Convention (RELION, Heymann et al. 2005): the Euler angles ``(rot, tilt, psi)`` give the matrix
``A = Rz(psi) @ Ry(tilt) @ Rz(rot)`` with the *passive* elementary rotations

    Rz(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]
    Ry(b) = [[cos b, 0, -sin b], [0, 1, 0], [sin b, 0, cos b]]

and a particle in orientation ``A`` is the projection along z of the density rotated by ``A``:
``image(x, y) = ∫ density(Aᵀ (x, y, z)) dz`` (coordinates ``(x, y, z)`` in that order, origin at
the box centre).  All angles are in radians.
"""
from __future__ import annotations

import numpy as np


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly (Haar measure) from SO(3).

    Uses normalised 4D Gaussian vectors as unit quaternions, which are uniform on S³ and hence
    give Haar-uniform rotations.
    """
    q = rng.standard_normal((int(n), 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return quaternion_to_matrix(q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` → rotation matrices ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def euler_to_matrix(rot, tilt, psi) -> np.ndarray:
    """RELION ZYZ Euler angles (radians, arrays broadcast) → matrices ``(..., 3, 3)``."""
    rot, tilt, psi = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (rot, tilt, psi)))
    ca, sa = np.cos(rot), np.sin(rot)
    cb, sb = np.cos(tilt), np.sin(tilt)
    cg, sg = np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    m = np.empty(rot.shape + (3, 3))
    m[..., 0, 0] = cg * cc - sg * sa
    m[..., 0, 1] = cg * cs + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cc - cg * sa
    m[..., 1, 1] = -sg * cs + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sc
    m[..., 2, 1] = ss
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(m: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` → RELION Euler angles ``(..., 3)`` = (rot, tilt, psi).

    ``tilt`` is in ``[0, π]``; ``rot`` and ``psi`` in ``(-π, π]``.  At the gimbal-lock poles
    (tilt 0 or π) ``rot`` is set to 0 and the whole in-plane angle goes into ``psi``.
    """
    m = np.asarray(m, dtype=np.float64)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((flat.shape[0], 3))
    eps = 16 * np.finfo(np.float32).eps
    for i, a in enumerate(flat):
        abs_sb = np.hypot(a[0, 2], a[1, 2])
        if abs_sb > eps:
            psi = np.arctan2(a[1, 2], -a[0, 2])
            rot = np.arctan2(a[2, 1], a[2, 0])
            tilt = np.arctan2(abs_sb, a[2, 2])  # sin(tilt) >= 0 by choice of psi/rot branch
        elif a[2, 2] > 0:
            rot, tilt, psi = 0.0, 0.0, np.arctan2(-a[1, 0], a[0, 0])
        else:
            rot, tilt, psi = 0.0, np.pi, np.arctan2(a[1, 0], -a[0, 0])
        out[i] = (rot, tilt, psi)
    return out.reshape(m.shape[:-2] + (3,))


def rotation_z(angle: float) -> np.ndarray:
    """The matrix of RELION Euler angles ``(0, 0, angle)``: an in-plane rotation."""
    return euler_to_matrix(0.0, 0.0, angle)
