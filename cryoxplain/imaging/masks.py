"""Masks on the particle box: the box centre, radial distance, hard and soft discs.

Convention (docs/conventions.md): the centre of an ``H × W`` box is pixel ``(H // 2, W // 2)`` —
the RELION/cryoSPARC particle centre and the origin of an ``fftshift``-ed Fourier transform.  On
odd boxes this is the geometric centre ``(N − 1)/2``; on even boxes it lies half a pixel past it.
Distances are in pixels and are measured **periodically** on the box (the offset of row ``i`` from
the centre is taken in ``[−N/2, N/2)``): an even box's first row, ``N/2`` pixels above the centre,
is the row a 90° rotation about the centre brings the last column to.  With this rule every disc
mask here is exactly invariant under the quarter turns and flips of
:mod:`cryoxplain.geometry.rotate`, on even and odd boxes alike.

All functions return numpy arrays (``float32`` masks, ``float64`` distances); use
``torch.as_tensor(mask, device=..., dtype=...)`` for torch.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError, ShapeError

__all__ = ["box_center", "centered_coordinates", "radial_distance", "disc_mask", "resolve_mask"]


def _shape2(shape) -> tuple[int, int]:
    if np.isscalar(shape):
        shape = (int(shape), int(shape))
    try:
        h, w = int(shape[-2]), int(shape[-1])
    except (TypeError, ValueError, IndexError):
        raise ShapeError(f"expected a box shape (H, W) or a box size, got {shape!r}") from None
    if h < 1 or w < 1:
        raise ShapeError(f"box shape must be positive, got {h}x{w}")
    return h, w


def box_center(n: int) -> int:
    """Index of the centre pixel of an axis of ``n`` pixels: ``n // 2``."""
    return int(n) // 2


def centered_coordinates(n: int) -> np.ndarray:
    """Pixel offsets ``(n,)`` from the centre ``n // 2``, folded periodically into ``[−n/2, n/2)``.

    For an odd ``n`` this is ``−(n−1)/2 … (n−1)/2``; for an even ``n`` it is ``−n/2 … n/2 − 1``
    (the first pixel is the farthest, exactly as in ``numpy.fft.fftshift(numpy.fft.fftfreq(n)) * n``).
    """
    n = int(n)
    return (np.arange(n, dtype=np.float64) - n // 2)


def radial_distance(shape, center=None) -> np.ndarray:
    """Distance (pixels, ``float64`` array ``(H, W)``) of every pixel centre from the box centre.

    ``shape``: ``(H, W)`` or a box size.  ``center``: optional ``(y, x)`` pixel position (floats
    allowed) instead of the box centre ``(H // 2, W // 2)``; distances to an explicit centre are
    plain (not periodic).
    """
    h, w = _shape2(shape)
    if center is None:
        yy, xx = centered_coordinates(h), centered_coordinates(w)
    else:
        cy, cx = float(center[0]), float(center[1])
        yy = np.arange(h, dtype=np.float64) - cy
        xx = np.arange(w, dtype=np.float64) - cx
    return np.hypot(yy[:, None], xx[None, :])


def disc_mask(shape, radius: float | None = None, *, taper: float = 0.0, center=None) -> np.ndarray:
    """Disc mask ``(H, W)``, ``float32`` in ``[0, 1]``, centred on the box centre (module convention).

    ``radius`` (pixels) defaults to the disc inscribed in the box, ``min(H, W)/2``.  With
    ``taper = 0`` the mask is 1 where the distance is ``≤ radius`` and 0 elsewhere (use
    ``mask > 0`` for a boolean index).  With ``taper > 0`` the edge is a raised cosine: 1 for
    ``r ≤ radius − taper``, falling smoothly to 0 at ``r = radius``.  ``center``: ``(y, x)`` pixel
    position of the disc's centre instead of the box centre (e.g. a region of interest).
    """
    h, w = _shape2(shape)
    radius = min(h, w) / 2.0 if radius is None else float(radius)
    if not radius > 0:
        raise ParameterError(f"disc radius must be > 0 pixels, got {radius}")
    taper = float(taper)
    if not 0 <= taper <= radius:
        raise ParameterError(f"taper must be in [0, radius={radius:g}] pixels, got {taper:g}")
    r = radial_distance((h, w), center)
    if taper == 0:
        return (r <= radius + 1e-9).astype(np.float32)
    t = np.clip((r - (radius - taper)) / taper, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def resolve_mask(mask, shape, *, default: str = "disc") -> np.ndarray | None:
    """Turn a mask argument into a ``float32 (H, W)`` array, or None for no mask.

    ``mask``: ``"disc"`` (the inscribed hard disc), ``"none"`` or None (no mask), or an array of
    shape ``(H, W)`` (booleans or weights in ``[0, 1]``).  ``default`` is used for ``mask="default"``.
    """
    h, w = _shape2(shape)
    if isinstance(mask, str):
        name = default if mask == "default" else mask
        if name == "none":
            return None
        if name == "disc":
            return disc_mask((h, w))
        raise ParameterError(f"unknown mask {mask!r}; use 'disc', 'none' or an (H, W) array")
    if mask is None:
        return None
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask)
    if m.shape != (h, w):
        raise ShapeError(f"mask of shape {m.shape} does not match the {h}x{w} images")
    m = m.astype(np.float32)
    if not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
        raise ParameterError("mask values must be finite and in [0, 1]")
    return m
