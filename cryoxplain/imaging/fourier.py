"""Fourier rings (the radial binning shared by FRC and by attribution power spectra) and Fourier
resampling (:func:`fourier_crop` / :func:`fourier_pad`: binning and un-binning micrographs).

For an ``H × W`` image with ``n = min(H, W)``, the DFT bin at frequency ``(f_y, f_x)`` (cycles per
pixel, :func:`numpy.fft.fftfreq` order, origin at bin 0 — pixel ``N // 2`` after ``fftshift``) lies
in ring ``k = round(n·sqrt(f_y² + f_x²))``.  Ring ``k`` is centred on ``k / n`` cycles/pixel, or
``k / (n·pixel_size)`` 1/Å.  Rings ``0 … n // 2`` cover the disc inscribed in the Fourier box (up
to Nyquist, 0.5 cycles/pixel); higher rings are the box corners and are left out unless asked for.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError

__all__ = ["ring_index", "n_rings", "ring_frequencies", "rfft_weights", "ring_sums", "frequency_radius",
           "fourier_crop", "fourier_pad"]


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


# ---------------------------------------------------------------- Fourier resampling

def _resample(image, shape, grow: bool) -> np.ndarray:
    """Keep (or zero-pad to) the centred ``shape`` block of the DFT of ``image``; values keep their units."""
    import scipy.fft

    x = np.asarray(image)
    if x.ndim != 2:
        raise ShapeError(f"Fourier resampling takes one 2D image, got shape {x.shape}")
    h, w = x.shape
    nh, nw = int(shape[0]), int(shape[1])
    if nh < 1 or nw < 1:
        raise ShapeError(f"target shape must be positive, got {nh}x{nw}")
    if (grow and (nh < h or nw < w)) or (not grow and (nh > h or nw > w)):
        raise ShapeError(f"{'fourier_pad' if grow else 'fourier_crop'}: cannot go from {h}x{w} to {nh}x{nw}")
    work = np.float64 if x.dtype == np.float64 else np.float32
    spec = scipy.fft.rfft2(x.astype(work, copy=False), workers=-1)
    sh, sw = min(h, nh), min(w, nw)  # the kept block: rows k = -(sh // 2) … sh - sh // 2 - 1, cols 0 … sw // 2
    out = np.zeros((nh, nw // 2 + 1), spec.dtype)
    lo, hi = sh // 2, sh - sh // 2  # rows 0 … hi-1 and the last lo rows
    out[:hi, :sw // 2 + 1] = spec[:hi, :sw // 2 + 1]
    if lo:
        out[-lo:, :sw // 2 + 1] = spec[-lo:, :sw // 2 + 1]
    # an even size's Nyquist row/column stands for ±N/2 at once: split it when growing, fold both
    # sides into it when cropping, so that fourier_crop(fourier_pad(x)) == x
    if sh % 2 == 0:
        if grow and nh > h:
            out[-lo] *= 0.5
            out[lo] = out[-lo]
        elif not grow and nh < h:
            out[-lo, :sw // 2 + 1] += spec[lo, :sw // 2 + 1]
    if sw % 2 == 0:
        c = sw // 2
        if grow and nw > w:
            out[:, c] *= 0.5
        elif not grow and nw < w:
            col = out[:, c].copy()
            out[:, c] = col + np.conj(col[(-np.arange(nh)) % nh])
    del spec
    res = scipy.fft.irfft2(out, s=(nh, nw), workers=-1)
    res *= (nh * nw) / (h * w)  # rfft2/irfft2 scaling: the mean (and local values) are kept
    return res.astype(work, copy=False)


def fourier_crop(image, shape) -> np.ndarray:
    """Fourier binning: keep the centred ``shape = (h, w)`` block of the DFT of a 2D ``image``.

    The result samples the same field of view on an ``h × w`` grid (pixel size × ``H/h``, ``W/w``),
    band-limited to its new Nyquist frequency — no aliasing, unlike real-space averaging.  The
    block is centred on the DFT origin (pixel ``N // 2`` after ``fftshift``, docs/conventions.md):
    frequencies ``-(h // 2) … h - h // 2 - 1`` along each axis.  Values keep their units (the mean
    is preserved).  float32 in, float32 out (float64 stays float64); memory ~ the real FFT of the input.
    """
    return _resample(image, shape, grow=False)


def fourier_pad(image, shape) -> np.ndarray:
    """Fourier up-sampling, the inverse of :func:`fourier_crop`: zero-pad the DFT of a 2D ``image``
    to ``shape`` (the same field of view on a finer grid, no new frequencies)."""
    return _resample(image, shape, grow=True)
