"""Fourier rings: the radial binning shared by FRC and by attribution power spectra.

For an ``H × W`` image with ``n = min(H, W)``, the DFT bin at frequency ``(f_y, f_x)`` (cycles per
pixel, :func:`numpy.fft.fftfreq` order, origin at bin 0 — pixel ``N // 2`` after ``fftshift``) lies
in ring ``k = round(n·sqrt(f_y² + f_x²))``.  Ring ``k`` is centred on ``k / n`` cycles/pixel, or
``k / (n·pixel_size)`` 1/Å.  Rings ``0 … n // 2`` cover the disc inscribed in the Fourier box (up
to Nyquist, 0.5 cycles/pixel); higher rings are the box corners and are left out unless asked for.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError

__all__ = ["ring_index", "n_rings", "ring_frequencies", "rfft_weights", "ring_sums", "frequency_radius"]


def _hw(shape) -> tuple[int, int]:
    h, w = int(shape[-2]), int(shape[-1])
    if h < 1 or w < 1:
        raise ShapeError(f"image shape must be positive, got {h}x{w}")
    return h, w


def n_rings(shape) -> int:
    """Number of rings up to Nyquist: ``min(H, W) // 2 + 1``."""
    return min(_hw(shape)) // 2 + 1


def ring_index(shape, *, rfft: bool = False, include_corners: bool = False) -> np.ndarray:
    """Ring of every DFT bin: ``int64 (H, W)`` (or ``(H, W//2 + 1)`` with ``rfft=True``).

    Bins beyond the last ring (the corners) get ``-1`` unless ``include_corners``.
    """
    h, w = _hw(shape)
    n = min(h, w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = (np.fft.rfftfreq(w) if rfft else np.fft.fftfreq(w))[None, :]
    ring = np.rint(np.sqrt(fy ** 2 + fx ** 2) * n).astype(np.int64)
    if not include_corners:
        ring[ring >= n // 2 + 1] = -1
    return ring


def ring_frequencies(shape, pixel_size: float | None = None, *, include_corners: bool = False) -> np.ndarray:
    """Ring centres ``(R,)``: cycles/pixel, or 1/Å when ``pixel_size`` (Å/pixel) is given."""
    h, w = _hw(shape)
    n = min(h, w)
    r = int(ring_index((h, w), include_corners=True).max()) + 1 if include_corners else n // 2 + 1
    f = np.arange(r) / n
    return f / float(pixel_size) if pixel_size else f


def rfft_weights(shape) -> np.ndarray:
    """Weights ``(H, W//2 + 1)`` that make sums over an ``rfft2`` half plane equal sums over the full
    DFT: 2 for columns that stand for a ± pair, 1 for the ``f_x = 0`` column (and Nyquist, W even)."""
    h, w = _hw(shape)
    wgt = np.full((h, w // 2 + 1), 2.0)
    wgt[:, 0] = 1.0
    if w % 2 == 0:
        wgt[:, -1] = 1.0
    return wgt


def ring_sums(values: np.ndarray, ring: np.ndarray, count: int | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """Sum ``values (..., H, W')`` over each ring of ``ring (H, W')`` → ``(..., R)``.

    ``count``: number of rings ``R`` (default ``ring.max() + 1``); bins with ``ring < 0`` or
    ``≥ R`` are left out.  ``weights`` (e.g. :func:`rfft_weights`) multiply the values first.
    """
    v = np.asarray(values)
    if v.shape[-2:] != ring.shape:
        raise ShapeError(f"values of shape {v.shape} do not match the ring map {ring.shape}")
    r = int(ring.max()) + 1 if count is None else int(count)
    keep = (ring >= 0) & (ring < r)
    idx = ring[keep]
    lead = v.shape[:-2]
    flat = v.reshape((-1,) + ring.shape)[:, keep]
    if weights is not None:
        flat = flat * np.asarray(weights)[keep]
    out = np.zeros((flat.shape[0], r), dtype=np.result_type(flat.dtype, np.float64))
    for i in range(flat.shape[0]):
        if np.iscomplexobj(flat):
            out[i] = np.bincount(idx, weights=flat[i].real, minlength=r) + 1j * np.bincount(idx, weights=flat[i].imag, minlength=r)
        else:
            out[i] = np.bincount(idx, weights=flat[i], minlength=r)
    return out.reshape(lead + (r,))


def frequency_radius(shape, *, rfft: bool = False) -> np.ndarray:
    """Radial frequency ``sqrt(f_y² + f_x²)`` (cycles/pixel, ``float64 (H, W)`` or ``(H, W//2 + 1)``
    with ``rfft=True``) of every DFT bin, in :func:`numpy.fft.fftfreq` order (origin at bin 0)."""
    h, w = _hw(shape)
    fy = np.fft.fftfreq(h)[:, None]
    fx = (np.fft.rfftfreq(w) if rfft else np.fft.fftfreq(w))[None, :]
    return np.sqrt(fy ** 2 + fx ** 2)
