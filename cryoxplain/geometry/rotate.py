"""In-plane image rotations for equivariance measurements, and disc masks.

Conventions (used by every metric in cryoxplain)
------------------------------------------------
* Images are the last two axes of an array: ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``,
  numpy arrays or torch tensors (the result has the input's type, dtype and device).
* The rotation centre is the **particle centre of the field**, pixel ``(H // 2, W // 2)`` (RELION,
  cryoSPARC; the origin of the ``fftshift``-ed DFT), as everywhere in cryoxplain
  (docs/conventions.md).  On odd boxes this is the geometric centre.  A rotation by a multiple of
  90° (and a flip, :func:`mirror`) is an exact permutation of the pixels about that centre, taken
  **periodically**: on an even box the first row lies ``N/2`` px from the centre and the last
  only ``N/2 − 1``, so the quarter turn maps the unpaired edge row/column onto the opposite edge
  (exactly as a 90° rotation acts on a DFT).  The disc masks of :mod:`cryoxplain.imaging.masks`
  measure distance the same way, so they are exactly invariant under these permutations.
* Angles are in **radians**.  Writing ``x`` for the column index and ``y`` for the row index, a
  rotation by ``+θ`` turns the +x axis towards the +y axis: counter-clockwise when the image is
  displayed with the origin at the lower left (the MRC convention), clockwise with the origin at
  the upper left.  ``rotate(img, k*pi/2)`` equals ``rot90(img, k)``, which on odd
  boxes equals ``numpy.rot90(img, -k, axes=(-2, -1))``.
* Values are ``out(p) = in(R_θ⁻¹ p)``; outside the input box the image is taken as zero.

The band-limited rotation (:func:`rotate`, ``method="fft"``)
-------------------------------------------------------------
An arbitrary angle is first reduced to ``k·90° + φ`` with ``|φ| ≤ 45°``; the ``k·90°`` part is
done exactly by :func:`rot90`, the residual φ by the **three-pass FFT shear** of Unser, Thévenaz &
Yaroslavsky (1995) / Larkin, Oldfield & Klemm (1997):

    R(φ) = S_x(−tan φ/2) · S_y(sin φ) · S_x(−tan φ/2),

where each shear translates every row (or column) by a sub-pixel amount, done exactly for
band-limited (trigonometric) signals by a phase ramp in 1D Fourier space.  Why this operator:

* it is *sinc* (band-limited) interpolation: it neither smooths nor attenuates high frequencies,
  so a smoother or a noisier model output is not favoured by the measurement (spline or bilinear
  interpolation damp high frequencies, which would make low-pass outputs look "more equivariant");
* each shear is unitary on the padded periodic canvas and shears compose exactly, so rotations by
  ±φ invert each other up to the loss at the box edges;
* it is ``O(N² log N)``, batched, runs on the GPU and is differentiable in torch.

The image is zero-padded to an odd canvas of side ``2·max(H, W)+1`` before shearing (odd: no
ambiguous Nyquist bin, so the result is real; twice the box: intermediate shears do not wrap
around into the cropped box).  The cost of band-limited interpolation is Gibbs ringing at
discontinuities — the box edge and, for pure noise, every pixel — which is why equivariance is
measured inside a disc (:func:`cryoxplain.imaging.masks.disc_mask`) and why :mod:`cryoxplain.metrics.equivariance` reports
the operator's own round-trip floor next to every model error.

``method="spline"`` (numpy/scipy, order-5 B-spline via :func:`scipy.ndimage.map_coordinates`) is
provided for comparison; it is not unitary and damps frequencies near Nyquist.

References: M. Unser, P. Thévenaz, L. Yaroslavsky, "Convolution-based interpolation for fast,
high-quality rotation of images", IEEE TIP 4(10), 1995; K. G. Larkin, M. A. Oldfield, H. Klemm,
"Fast Fourier method for the accurate rotation of sampled images", Opt. Commun. 139, 1997.
"""
from __future__ import annotations

import functools
import math
from typing import Union

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

Array = Union[np.ndarray, torch.Tensor]

__all__ = ["rot90", "mirror", "rotate", "disc_mask", "rotate_deg"]

_EXACT_TOL = 1e-12  # residual angle (rad) below which a rotation is treated as an exact multiple of 90°


def _check_image_dims(x: Array) -> None:
    if x.ndim < 2:
        raise ShapeError(f"expected images with at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")


@functools.lru_cache(maxsize=64)
def _quarter_turn_index(h: int, w: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row/column ``(H', W')`` of every output pixel of a ``k``-quarter turn about the centre
    (cached per box and k: training augmentation and the metrics turn many batches of one size)."""
    ho, wo = (h, w) if k % 2 == 0 else (w, h)
    dy = np.arange(ho)[:, None] - ho // 2  # output offsets from the output centre
    dx = np.arange(wo)[None, :] - wo // 2
    # out(p) = in(R^-1 p);  R rotates +x towards +y by k·90°
    if k == 1:
        sx, sy = dy, -dx
    elif k == 2:
        sx, sy = -dx, -dy
    else:
        sx, sy = -dy, dx
    sy = np.broadcast_to(sy, (ho, wo))
    sx = np.broadcast_to(sx, (ho, wo))
    return np.mod(sy + h // 2, h), np.mod(sx + w // 2, w)  # shared (cached): callers only index with them


def rot90(x: Array, k: int = 1) -> Array:
    """Exact rotation by ``k·90°`` of the last two axes about pixel ``(H//2, W//2)`` (module conventions).

    Equals ``rotate(x, k*pi/2)``; a pure (periodic) permutation of pixels.  On odd boxes it equals
    ``numpy.rot90(x, -k, axes=(-2, -1))``; on even boxes that result shifted by one pixel so that
    the centre stays put.  ``k`` odd swaps H and W.
    """
    _check_image_dims(x)
    k = int(k) % 4
    if k == 0:
        return x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
    h, w = x.shape[-2:]
    iy, ix = _quarter_turn_index(h, w, k)
    if isinstance(x, torch.Tensor):
        return x[..., torch.as_tensor(iy, device=x.device), torch.as_tensor(ix, device=x.device)]
    return np.ascontiguousarray(np.asarray(x)[..., iy, ix])


def mirror(x: Array, axis: int = -1) -> Array:
    """Exact mirror image about the centre pixel along ``axis`` (-1: columns, x → −x; -2: rows).

    Periodic like :func:`rot90`: index ``i`` goes to ``(2·(N//2) − i) mod N``; on odd boxes this is
    a plain flip.
    """
    _check_image_dims(x)
    if axis not in (-1, -2):
        raise ParameterError(f"axis must be -1 (columns) or -2 (rows), got {axis}")
    n = x.shape[axis]
    idx = np.mod(2 * (n // 2) - np.arange(n), n)
    if isinstance(x, torch.Tensor):
        return x.index_select(x.ndim + axis, torch.as_tensor(idx, device=x.device))
    return np.ascontiguousarray(np.take(np.asarray(x), idx, axis=axis))


def disc_mask(h: int, w: int | None = None, radius: float | None = None, taper: float = 0.0) -> np.ndarray:
    """Deprecated location: use :func:`cryoxplain.imaging.masks.disc_mask` (same mask, centre ``N // 2``)."""
    from ..imaging.masks import disc_mask as _disc

    return _disc((h, h if w is None else w), radius, taper=taper)


def _angles_vector(theta, batch: int) -> np.ndarray:
    th = np.asarray(theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else theta, dtype=np.float64)
    if th.ndim == 0:
        return np.full(batch, float(th))
    th = th.reshape(-1)
    if th.size != batch:
        raise ShapeError(f"got {th.size} angles for {batch} images; pass one angle or one per image")
    if not np.all(np.isfinite(th)):
        raise ParameterError("rotation angles must be finite")
    return th


def _reduce(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ = k·π/2 + φ with k ∈ {0..3}, |φ| ≤ π/4."""
    q = np.round(th / (np.pi / 2))
    phi = th - q * (np.pi / 2)
    return (q.astype(np.int64) % 4), phi


def _shear_rotate_torch(x: torch.Tensor, phi: np.ndarray, order: str = "xyx") -> torch.Tensor:
    """Three-pass FFT shear rotation of ``x`` (B, H, W) by per-image residual angles φ (|φ| ≤ 45°).

    ``order="xyx"``: S_x(−tan φ/2) S_y(sin φ) S_x(−tan φ/2); ``"yxy"``: S_y(tan φ/2) S_x(−sin φ) S_y(tan φ/2).
    Both equal R(φ) exactly in the continuum; on sampled images they differ by the interpolation error.
    """
    B, H, W = x.shape
    n = max(H, W)
    L = 2 * n + 1  # odd canvas: no Nyquist bin, result is exactly real
    top, left = (L - H) // 2, (L - W) // 2
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    rdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    canvas = x.new_zeros((B, L, L), dtype=rdtype)
    canvas[:, top:top + H, left:left + W] = x.to(rdtype)
    cy, cx = float(top + H // 2), float(left + W // 2)
    dev = x.device
    alpha = torch.as_tensor(-np.tan(phi / 2.0), dtype=rdtype, device=dev)  # (B,)
    beta = torch.as_tensor(np.sin(phi), dtype=rdtype, device=dev)
    freq = torch.fft.fftfreq(L, dtype=rdtype, device=dev)  # cycles / pixel
    ry = torch.arange(L, dtype=rdtype, device=dev) - cy
    rx = torch.arange(L, dtype=rdtype, device=dev) - cx

    def shear_x(img, a):
        # row y moves by a*(y - cy) along x:  g(x) -> g(x - s)  <=>  G(f) * exp(-2πi f s)
        s = a[:, None] * ry[None, :]  # (B, L) shift per row
        ph = torch.exp((-2j * math.pi) * (s[:, :, None] * freq[None, None, :]).to(cdtype))
        return torch.fft.ifft(torch.fft.fft(img.to(cdtype), dim=-1) * ph, dim=-1).real

    def shear_y(img, b):
        s = b[:, None] * rx[None, :]  # (B, L) shift per column
        ph = torch.exp((-2j * math.pi) * (freq[None, :, None] * s[:, None, :]).to(cdtype))
        return torch.fft.ifft(torch.fft.fft(img.to(cdtype), dim=-2) * ph, dim=-2).real

    if order == "xyx":
        out = shear_x(shear_y(shear_x(canvas, alpha), beta), alpha)
    else:
        out = shear_y(shear_x(shear_y(canvas, -alpha), -beta), -alpha)
    return out[:, top:top + H, left:left + W].to(x.dtype)


def _spline_rotate_np(x: np.ndarray, th: np.ndarray, order: int = 5) -> np.ndarray:
    from scipy import ndimage

    B, H, W = x.shape
    cy, cx = float(H // 2), float(W // 2)
    yy, xx = np.meshgrid(np.arange(H) - cy, np.arange(W) - cx, indexing="ij")
    out = np.empty_like(x, dtype=np.float64)
    for i in range(B):
        c, s = np.cos(th[i]), np.sin(th[i])
        # out(p) = in(R^-1 p):  R^-1 (x, y) = (c x + s y, -s x + c y)
        src_x = c * xx + s * yy + cx
        src_y = -s * xx + c * yy + cy
        out[i] = ndimage.map_coordinates(x[i].astype(np.float64), [src_y, src_x], order=order,
                                         mode="constant", cval=0.0, prefilter=True)
    return out


def rotate(x: Array, theta, method: str = "fft", *, shear_order: str = "xyx") -> Array:
    """Rotate images by ``theta`` radians about the box centre (module conventions).

    ``x``: ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` numpy array or torch tensor; ``theta``: a
    scalar or one angle per image (``B``).  Multiples of 90° are exact pixel permutations; other
    angles use the band-limited three-pass FFT shear (``method="fft"``, default) or an order-5
    B-spline (``method="spline"``, numpy/scipy, no autograd).  Angles other than multiples of 180°
    need a square box.  The result has the input's type, shape, dtype and device.

    ``shear_order`` (``"xyx"`` or ``"yxy"``) picks which of the two mirror-image three-shear
    factorisations is used; they agree exactly for band-limited content.  A three-shear rotation is
    undone *exactly* by the same factorisation run backwards, which would hide its interpolation
    error in a round-trip test: :func:`cryoxplain.metrics.equivariance.rotation_floor` therefore
    rotates forwards with one and back with the other.
    """
    if shear_order not in ("xyx", "yxy"):
        raise ParameterError(f"shear_order must be 'xyx' or 'yxy', got {shear_order!r}")
    if method not in ("fft", "spline"):
        raise ParameterError(f"unknown rotation method {method!r}; use 'fft' or 'spline'")
    _check_image_dims(x)
    is_torch = isinstance(x, torch.Tensor)
    shape = tuple(x.shape)
    H, W = shape[-2:]
    flat = x.reshape((-1, H, W))
    B = flat.shape[0]
    th = _angles_vector(theta, B)
    k, phi = _reduce(th)
    exact = np.abs(phi) < _EXACT_TOL
    if H != W and not np.all(exact & (k % 2 == 0)):
        raise ShapeError(f"rotating a non-square {H}x{W} box by angles other than multiples of 180° changes its shape; "
                         "use square images")
    if method == "spline":
        xn = flat.detach().cpu().numpy() if is_torch else np.asarray(flat)
        out = _spline_rotate_np(xn, th)
        if is_torch:
            return torch.as_tensor(out, dtype=x.dtype, device=x.device).reshape(shape)
        return out.astype(xn.dtype if np.issubdtype(xn.dtype, np.floating) else np.float64).reshape(shape)

    t = flat if is_torch else torch.as_tensor(np.asarray(flat, dtype=np.float64))
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    # exact quarter turns, grouped by k (at most 4 groups)
    parts = t
    if np.any(k != 0):
        parts = t.clone()
        for kk in (1, 2, 3):
            idx = np.nonzero(k == kk)[0]
            if idx.size:
                it = torch.as_tensor(idx, device=t.device)
                parts[it] = rot90(t[it], kk)
    if np.all(exact):
        out = parts
    else:
        sel = np.nonzero(~exact)[0]
        it = torch.as_tensor(sel, device=t.device)
        rotated = _shear_rotate_torch(parts[it], phi[sel], shear_order)
        if sel.size == B:
            out = rotated
        else:
            out = parts.clone()
            out[it] = rotated
    if is_torch:
        return (out.clone() if out is t else out).reshape(shape)  # never a view of the input
    res = out.numpy().reshape(shape)
    src_dtype = np.asarray(x).dtype
    return res.astype(src_dtype if np.issubdtype(src_dtype, np.floating) else np.float64)


def rotate_deg(x: Array, degrees, method: str = "fft", *, shear_order: str = "xyx") -> Array:
    """:func:`rotate` with the angle(s) in degrees (for CLI-facing code)."""
    return rotate(x, np.deg2rad(np.asarray(degrees, dtype=np.float64)), method=method, shear_order=shear_order)
