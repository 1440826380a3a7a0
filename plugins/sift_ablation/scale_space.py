"""The exact DoG band decomposition on a log-spaced σ grid (spec ``sift_ablation.md`` §3–§4).

Bands are sub-integrals of Lemma 8, ``T_l = ∫_{[e_l, e_{l+1}[} Δ(·,σ)/σ dσ``, which telescope to
differences of low-passes (Γ = the exact Gaussian, :func:`cryoxplain.imaging.filters.gaussian_blur_exact`)::

    T_0 = x − Γ(e_1),   T_l = Γ(e_l) − Γ(e_{l+1}) (1 ≤ l ≤ M−1),   T_M = Γ(e_M)

so ``Σ_l T_l = x`` to rounding error for any grid and any linear filter.  All lengths are in
pixels; images are ``(H, W)`` (or ``(..., H, W)``), bands ``(M+1, ..., H, W)``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.imaging.filters import border_extension, gaussian_blur_exact

__all__ = ["sigma_edges", "representative_sigmas", "bands", "band_noise_norms", "detection_stack", "laplacian_band"]


def sigma_edges(h: int, w: int, sigma_min: float = 1.125, octave_steps: int = 4, sigma_max: float = 0.0) -> np.ndarray:
    """Band edges ``e_0 = 0, e_k = sigma_min·2^{(k−1)/ρ}`` (k = 1…M), ``M`` the first k with ``e_k ≥ R``.

    ``R = sigma_max`` or, when that is 0, ``min(H, W)/4`` (§4.1).  Returns ``(M+1,)`` float64.
    """
    if not sigma_min > 0:
        raise ParameterError(f"sigma_min must be > 0 pixels, got {sigma_min}")
    if int(octave_steps) < 1:
        raise ParameterError(f"octave_steps must be ≥ 1, got {octave_steps}")
    if sigma_max < 0:
        raise ParameterError(f"sigma_max must be ≥ 0 pixels (0 = min(H, W)/4), got {sigma_max}")
    r = float(sigma_max) if sigma_max > 0 else min(h, w) / 4.0
    rho = int(octave_steps)
    m = max(1, int(math.ceil(rho * math.log2(max(r, sigma_min) / sigma_min) - 1e-9)) + 1)
    return np.concatenate([[0.0], sigma_min * 2.0 ** (np.arange(m) / rho)])


def representative_sigmas(edges: np.ndarray) -> np.ndarray:
    """σ̄_l of every band (§4.1): geometric mid-points; the open end bands continue the spacing
    of their neighbour by half a step (``σ̄_0 = e_1·q_0^{−1/2}``, ``σ̄_M = e_M·q^{1/2}``)."""
    e = np.asarray(edges, dtype=np.float64)
    m = e.size - 1
    if m == 1:
        return np.array([e[1] / math.sqrt(2.0), e[1] * math.sqrt(2.0)])
    q_lo = e[2] / e[1]
    q_hi = e[m] / e[m - 1]
    mid = np.sqrt(e[1:m] * e[2:m + 1])
    return np.concatenate([[e[1] / math.sqrt(q_lo)], mid, [e[m] * math.sqrt(q_hi)]])


def bands(x, edges: np.ndarray, border: str = "reflect") -> torch.Tensor:
    """The band stack ``(M+1, ..., H, W)`` of ``x`` (``(..., H, W)``, tensor or array); sums to x."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    low = gaussian_blur_exact(t, [float(s) for s in np.asarray(edges)[1:]], border=border)  # Γ(e_1..e_M)
    first = (t - low[0]).unsqueeze(0)
    mid = low[:-1] - low[1:]
    return torch.cat([first, mid, low[-1:]], dim=0)


def band_noise_norms(edges: np.ndarray) -> np.ndarray:
    """``‖k_l‖₂`` of the bounded bands' impulse responses for unit white noise (§5.2, continuous
    2-D formula); ``(M+1,)`` with NaN for the open bands ``l = 0`` and ``l = M``."""
    e = np.asarray(edges, dtype=np.float64)
    out = np.full(e.size, np.nan)
    a, b = e[1:-1], e[2:]
    out[1:-1] = np.sqrt(1 / (4 * np.pi * a ** 2) + 1 / (4 * np.pi * b ** 2) - 1 / (np.pi * (a ** 2 + b ** 2)))
    return out


def detection_stack(T: torch.Tensor, edges: np.ndarray) -> torch.Tensor:
    """``D_j = T_j / ln(e_{j+1}/e_j)`` for ``j = 1…M−1`` (§4.3): the mean of Δ over log σ in the band."""
    e = np.asarray(edges, dtype=np.float64)
    widths = torch.as_tensor(np.log(e[2:] / e[1:-1]), dtype=T.dtype, device=T.device)
    return T[1:-1] / widths.view((-1,) + (1,) * (T.ndim - 1))


def laplacian_band(x, sigma: float, border: str = "reflect") -> torch.Tensor:
    """Δ(·, σ) = −σ ∂Γ/∂σ computed exactly in Fourier (``‖k‖²σ² e^{−‖k‖²σ²/2}``, even extension);
    the reference for the Lemma-9 test (§11.1.5)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    h, w = t.shape[-2:]
    ext = border_extension(t, border)
    hh, ww = ext.shape[-2:]
    ky = 2 * np.pi * np.fft.fftfreq(hh)
    kx = 2 * np.pi * np.fft.rfftfreq(ww)
    k2 = torch.as_tensor(ky[:, None] ** 2 + kx[None, :] ** 2, dtype=t.dtype)
    g = k2 * sigma ** 2 * torch.exp(-0.5 * k2 * sigma ** 2)
    return torch.fft.irfft2(torch.fft.rfft2(ext) * g, s=(hh, ww))[..., :h, :w]
