"""Gaussian filters of images, the one implementation every part of cryoxplain uses.

The kernel is the sampled Gaussian ``exp(−t²/2σ²)`` on the taps ``|t| ≤ r = int(truncate·σ + 0.5)``,
normalised to sum 1 — scipy.ndimage's ``gaussian_filter`` kernel, so results agree with it (and
with PAIR ``saliency``'s Blur IG, which calls it) to rounding.  σ is in pixels; σ = 0 is the
identity.  The blur is separable (rows, then columns).

Borders (``border=``), named as in scipy.ndimage:

* ``"reflect"`` (default) — half-sample symmetric, ``d c b a | a b c d | d c b a``;
* ``"mirror"`` — whole-sample symmetric, ``d c b | a b c d | c b a`` (torch's ``"reflect"`` pad);
* ``"zero"`` — taps outside the image are dropped (scipy ``mode="constant"``, ``cval=0``);
* ``"periodic"`` — the image wraps around (scipy ``"wrap"``); this blur commutes exactly with
  every symmetry of :mod:`cryoxplain.geometry.rotate` on the grid.

:func:`gaussian_blur` blurs ``(..., H, W)`` numpy arrays or torch tensors (differentiable in the
image) with one σ or one σ per image; :func:`gaussian_blur_matrices` gives the 1-D operators as
dense ``(M, n, n)`` matrices together with their derivative in σ (what Blur IG integrates).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

__all__ = ["BORDERS", "gaussian_radius", "gaussian_kernel1d", "fold_index", "gaussian_blur_matrices", "gaussian_blur"]

BORDERS = ("reflect", "mirror", "zero", "periodic")


def _check(border: str, truncate: float) -> None:
    if border not in BORDERS:
        raise ParameterError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
    if not truncate > 0:
        raise ParameterError(f"truncate must be > 0, got {truncate}")


def gaussian_radius(sigma: float, truncate: float = 4.0) -> int:
    """Kernel half-width in taps, ``int(truncate·σ + 0.5)`` (0 for σ = 0)."""
    return int(truncate * float(sigma) + 0.5) if sigma > 0 else 0


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The normalised 1-D kernel ``(2r + 1,)`` (module docstring); ``[1.]`` for σ = 0."""
    if sigma < 0 or not np.isfinite(sigma):
        raise ParameterError(f"Gaussian sigma must be a finite value ≥ 0 pixels, got {sigma}")
    r = gaussian_radius(sigma, truncate)
    if r == 0:
        return torch.ones(1, dtype=dtype, device=device)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


def fold_index(j: torch.Tensor, n: int, border: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Map (possibly out-of-range) indices ``j`` on an axis of ``n`` pixels to in-range indices by
    the ``border`` rule.  Returns ``(index, valid)``; ``valid`` is False only for ``"zero"``
    taps outside the axis (their index is clamped and must be given weight 0)."""
    if border == "zero":
        valid = (j >= 0) & (j < n)
        return j.clamp(0, n - 1), valid
    if border == "periodic":
        return torch.remainder(j, n), torch.ones_like(j, dtype=torch.bool)
    if border == "reflect":
        p = torch.remainder(j, 2 * n)
        return torch.where(p >= n, 2 * n - 1 - p, p), torch.ones_like(j, dtype=torch.bool)
    if n == 1:
        return torch.zeros_like(j), torch.ones_like(j, dtype=torch.bool)
    p = torch.remainder(j, 2 * n - 2)
    return torch.where(p >= n, 2 * n - 2 - p, p), torch.ones_like(j, dtype=torch.bool)


def _sigmas(sigma, m: int | None = None) -> np.ndarray:
    s = np.asarray(sigma.detach().cpu().numpy() if isinstance(sigma, torch.Tensor) else sigma, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ParameterError("Gaussian sigma must be finite and ≥ 0 pixels")
    if m is not None and s.size not in (1, m):
        raise ShapeError(f"got {s.size} sigmas for {m} images; give one sigma or one per image")
    return s


def gaussian_blur_matrices(n: int, sigmas, *, border: str = "reflect", truncate: float = 4.0,
                           derivative: bool = False, dtype=torch.float32, device=None):
    """1-D Gaussian blur operators on an axis of ``n`` pixels, one per σ.

    Returns ``(G, dG)``: ``G`` is ``(M, n, n)`` with ``(G_σ v)_i = Σ_t k_σ(t) v[fold(i + t)]``, and
    ``dG = ∂G/∂σ`` (the derivative of the normalised kernel at fixed radius) or None.  σ = 0 gives
    the identity (and a zero derivative).  Blur an image ``X (H, W)`` as ``G_h X G_wᵀ``.
    """
    _check(border, truncate)
    sig = torch.as_tensor(_sigmas(sigmas), device=device)
    m = sig.numel()
    zero = sig <= 0
    safe = torch.where(zero, torch.ones_like(sig), sig)
    rad = torch.where(zero, torch.zeros_like(sig), torch.floor(truncate * sig + 0.5))
    big = int(rad.max().item()) if m else 0
    t = torch.arange(-big, big + 1, dtype=torch.float64, device=device)
    e = torch.exp(-0.5 * t[None, :] ** 2 / safe[:, None] ** 2) * (t.abs()[None, :] <= rad[:, None])
    e = torch.where(zero[:, None], (t == 0).to(e.dtype)[None, :].expand_as(e), e)
    norm = e.sum(1, keepdim=True)
    k = e / norm  # (M, T)
    i = torch.arange(n, device=device)
    if border == "zero":  # banded Toeplitz, G[i, j] = k(j − i): a gather of (M, n, n), no folding
        off = i[None, :] - i[:, None]
        inside = (off.abs() <= big).to(torch.float64)
        col = (off + big).clamp(0, 2 * big)

        def scatter(w):  # w (M, T) -> (M, n, n)
            return w[:, col] * inside
    else:
        scatter = _folded(m, n, t, border, device)

    g = scatter(k).to(dtype)
    if not derivative:
        return g, None
    de = e * t[None, :] ** 2 / safe[:, None] ** 3
    dk = (de * norm - e * de.sum(1, keepdim=True)) / norm ** 2
    dk = torch.where(zero[:, None], torch.zeros_like(dk), dk)
    return g, scatter(dk).to(dtype)


def _folded(m: int, n: int, t: torch.Tensor, border: str, device):
    """Taps ``w (M, T)`` at offsets ``t`` → ``(M, n, n)`` operators, out-of-range taps folded by ``border``."""
    i = torch.arange(n, device=device)
    idx, valid = fold_index(i[:, None] + t.long()[None, :], n, border)  # (n, T)
    vf = valid.to(torch.float64)

    def scatter(w):  # w (M, T) -> (M, n, n)
        out = torch.zeros(m, n, n, dtype=torch.float64, device=device)
        src = w[:, None, :] * vf[None, :, :]
        out.scatter_add_(2, idx[None].expand(m, n, -1).contiguous(), src.expand(m, n, -1).contiguous())
        return out

    return scatter


def _blur_axis(x: torch.Tensor, kern: torch.Tensor, axis: int, border: str) -> torch.Tensor:
    """Convolve the last-but-``axis`` dim of (M, H, W) with one 1-D kernel, borders by index folding."""
    r = (kern.numel() - 1) // 2
    if r == 0:
        return x
    n = x.shape[axis]
    idx, valid = fold_index(torch.arange(-r, n + r, device=x.device), n, border)
    xp = x.index_select(axis, idx)
    if border == "zero":
        shape = [1, 1, 1]
        shape[axis] = -1
        xp = xp * valid.to(x.dtype).view(shape)
    m, h, w = xp.shape
    if axis == 2:
        y = torch.nn.functional.conv1d(xp.reshape(m * h, 1, w), kern.view(1, 1, -1))
        return y.reshape(m, h, n)
    y = torch.nn.functional.conv1d(xp.transpose(1, 2).reshape(m * w, 1, h), kern.view(1, 1, -1))
    return y.reshape(m, w, n).transpose(1, 2)


def _image_tensor(x) -> tuple[bool, torch.Tensor]:
    """``(is_torch, t)``: ``x`` (``(..., H, W)`` array or tensor) as a floating tensor (arrays as float64)."""
    is_torch = isinstance(x, torch.Tensor)
    t = x if is_torch else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.ndim < 2:
        raise ShapeError(f"expected images (..., H, W), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    return is_torch, t


def gaussian_blur(x, sigma, *, border: str = "reflect", truncate: float = 4.0):
    """Gaussian blur of the last two axes of ``x`` (``(..., H, W)``, numpy array or torch tensor).

    ``sigma``: pixels, one value, or one per image (``prod(x.shape[:-2])`` values).  Returns the
    input's type, shape and (floating) dtype; torch results are differentiable in ``x``.
    """
    _check(border, truncate)
    is_torch, t = _image_tensor(x)
    shape = t.shape
    h, w = shape[-2:]
    flat = t.reshape(-1, h, w)
    sig = _sigmas(sigma, flat.shape[0])
    if sig.size == 1:
        s = float(sig[0])
        k = gaussian_kernel1d(s, truncate, dtype=flat.dtype, device=flat.device)
        out = _blur_axis(_blur_axis(flat, k, 1, border), k, 2, border)
    else:
        gh, _ = gaussian_blur_matrices(h, sig, border=border, truncate=truncate, dtype=flat.dtype, device=flat.device)
        gw = gh if w == h else gaussian_blur_matrices(w, sig, border=border, truncate=truncate, dtype=flat.dtype,
                                                      device=flat.device)[0]
        out = gh @ flat @ gw.transpose(1, 2)
    out = out.reshape(shape)
    if is_torch:
        return out if out is not x else out.clone()
    src = np.asarray(x).dtype
    return out.numpy().astype(src if np.issubdtype(src, np.floating) else np.float64)


# --------------------------------------------------------------------------------------------
# The exact Gaussian: the continuous transfer function applied in Fourier space
# --------------------------------------------------------------------------------------------

__all__ += ["EXACT_BORDERS", "border_extension", "gaussian_blur_exact"]

EXACT_BORDERS = ("reflect", "periodic")
_EXACT_CACHE: dict = {}


def _exact_transfer(h: int, w: int, sigmas: tuple, dtype, device, border: str) -> torch.Tensor:
    """``exp(−σ²‖k‖²/2)`` on the rfft2 grid of the (extended) image, ``(S, H', W'//2+1)``."""
    key = (h, w, sigmas, dtype, str(device), border)
    tf = _EXACT_CACHE.get(key)
    if tf is None:
        hh, ww = (2 * h, 2 * w) if border == "reflect" else (h, w)
        ky = 2 * np.pi * np.fft.fftfreq(hh)
        kx = 2 * np.pi * np.fft.rfftfreq(ww)
        k2 = ky[:, None] ** 2 + kx[None, :] ** 2
        s = np.asarray(sigmas, dtype=np.float64)[:, None, None]
        tf = torch.as_tensor(np.exp(-0.5 * s ** 2 * k2[None]), dtype=dtype, device=device)
        if len(_EXACT_CACHE) > 256:
            _EXACT_CACHE.clear()
        _EXACT_CACHE[key] = tf
    return tf


def border_extension(t: torch.Tensor, border: str = "reflect") -> torch.Tensor:
    """The periodic array whose Fourier multipliers give the ``border`` rule of the exact filters:
    ``"reflect"`` → the half-sample-symmetric ``[t, fliplr t; flipud t, flip t]`` (..., 2H, 2W);
    ``"periodic"`` → ``t`` itself.  Crop ``[..., :H, :W]`` after filtering."""
    if border not in EXACT_BORDERS:
        raise ParameterError(f"border must be one of {', '.join(EXACT_BORDERS)}, got {border!r}")
    if border == "periodic":
        return t
    top = torch.cat([t, t.flip(-1)], dim=-1)
    return torch.cat([top, top.flip(-2)], dim=-2)


def gaussian_blur_exact(x, sigma, *, border: str = "reflect"):
    """Gaussian blur of the last two axes by the *exact* transfer function ``exp(−σ²‖k‖²/2)``.

    A different discrete Gaussian from :func:`gaussian_blur` (whose kernel is sampled and
    truncated): the continuous Gaussian's Fourier multiplier (unit integral, gain 1 at k = 0) is
    applied to the rfft2 of the image's border extension, ``k = 2π·fftfreq`` in rad/px, so the
    filter has no truncation at any σ, is isotropic, forms an exact semigroup
    (``G_a G_b = G_√(a²+b²)``) and preserves constants exactly.  Used by the SIFT scale space.

    ``border``:

    * ``"reflect"`` (default) — half-sample-symmetric extension ``[x, fliplr x; flipud x, flip x]``
      (2H × 2W), i.e. Neumann / DCT-II boundary conditions, as scipy's ``reflect``; commutes
      exactly with the flips and (square boxes) quarter turns about ``((H−1)/2, (W−1)/2)``;
    * ``"periodic"`` — the image is one period; commutes exactly with every symmetry of
      :mod:`cryoxplain.geometry.rotate` (centre ``N//2``) and with integer circular shifts.

    ``x``: ``(..., H, W)`` numpy array or torch tensor (differentiable; float64 recommended);
    ``sigma``: pixels, one value (≥ 0) or a sequence of S values, which adds a leading axis of
    size S to the result.  Transfer functions are cached per (H, W, σ, dtype, device, border).
    """
    is_torch, t = _image_tensor(x)
    ext = border_extension(t, border)
    many = np.ndim(sigma) > 0
    sig = _sigmas(sigma)
    h, w = t.shape[-2:]
    spec = torch.fft.rfft2(ext)
    tf = _exact_transfer(h, w, tuple(float(s) for s in sig), t.dtype, t.device, border)
    if many:
        spec = spec.unsqueeze(0)
        tf = tf.view((tf.shape[0],) + (1,) * (t.ndim - 2) + tf.shape[1:])
    else:
        tf = tf[0]
    out = torch.fft.irfft2(spec * tf, s=ext.shape[-2:])[..., :h, :w]
    if is_torch:
        return out
    src = np.asarray(x).dtype
    return out.numpy().astype(src if np.issubdtype(src, np.floating) else np.float64)
