"""Denoiser metrics that need no ground truth (issue 13): arrays and callables in, numbers out.

Every function takes the denoiser as ``fn`` — an ``nn.Module`` or a callable on normalised
``(B, 1, H, W)`` tensors (:func:`cryoxplain.metrics.equivariance.as_image_function`) — and images
already normalised (:mod:`cryoxplain.imaging.normalize`).  What each number means and what a good
value is: docs/metrics.md ("Evaluation without ground truth").

* :func:`j_invariant_loss` — Noise2Self's calibration loss of the J-invariant version of ``fn``
  (Batson & Royer 2019): ranks denoisers on real data; ``loss − noise variance`` estimates the MSE
  against the unknown clean images;
* :func:`contrast_sign_error` — ``‖F(−x) + F(x)‖ / ‖F(x)‖``: 0 for a contrast-sign-equivariant map;
* :func:`transfer_gain` / :func:`matched_lowpass_sigma` — the ring-wise gain of ``fn`` on images and
  the Gaussian low-pass with the same half-gain frequency (the "linear low-pass of matched
  bandwidth"; the blur is :func:`cryoxplain.imaging.filters.gaussian_blur`);
* :func:`noise_response` — output energy and ring spectrum on pure-noise inputs, relative to the
  input and to the matched low-pass (the hallucination check);
* :func:`region_snr` — the Topaz-Denoise estimate of SNR from paired signal and background regions.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.blindspot import grid_masks, replace_masked
from ..imaging.fourier import n_rings, ring_index
from ..imaging.masks import disc_mask
from .equivariance import as_image_function

__all__ = ["HALF_GAIN", "contrast_sign_error", "gaussian_lowpass", "j_invariant_loss", "lowpass_half_gain_frequency",
           "matched_lowpass_sigma", "noise_response", "region_snr", "transfer_gain", "window_for"]

#: the gain that defines a filter's bandwidth here (its half-gain frequency)
HALF_GAIN = 0.5
#: f½·σ of a Gaussian blur: exp(−2π²σ²f²) = ½ at f = sqrt(ln 2 / 2) / (π σ) (f in cycles/px)
_GAUSS_HALF = math.sqrt(math.log(2) / 2) / math.pi


def _batch(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4 or t.shape[1] != 1:
        raise ShapeError(f"expected images (B, H, W) or (B, 1, H, W), got shape {tuple(t.shape)}")
    return t.to(torch.float32)


def window_for(fn, shape) -> torch.Tensor:
    """``(H, W)`` 0/1 window of the pixels where ``fn`` predicts: the model's valid disc
    (:func:`cryoxplain.models.protocol.model_valid_radius`), else the disc inscribed in the box."""
    from ..models.protocol import model_valid_radius

    return torch.from_numpy(disc_mask(shape, model_valid_radius(fn)))


def j_invariant_loss(fn, images, *, spacing: int = 4, replace: str = "mean", window=None,
                     batch_size: int = 64) -> float:
    """Mean of ``(f_J(x) − x)²`` over the pixels of ``window`` (default: :func:`window_for`).

    ``f_J`` is the J-invariant version of ``fn``: for each of the ``spacing²`` interleaved grids
    ``J`` (:func:`cryoxplain.imaging.blindspot.grid_masks`) the pixels of ``J`` are replaced
    (``replace``) and ``fn``'s output is kept on ``J`` only, so no output pixel has seen its own
    input.  For noise independent between pixels, E = E‖f_J(x) − y‖²/n + σ² (y the clean image, σ²
    the noise variance): lower is better, comparable between denoisers on the same images.
    """
    x = _batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    h, w = x.shape[-2:]
    win = window_for(fn, (h, w)) if window is None else torch.as_tensor(window, dtype=torch.float32)
    tot, cnt = 0.0, 0.0
    for m in grid_masks((h, w), spacing):
        out = f(replace_masked(x, m[None, None], replace)).to(torch.float32)
        wt = (m.to(torch.float32) * win)[None, None]
        tot += float(((out - x) ** 2 * wt).sum())
        cnt += float(wt.sum()) * x.shape[0]
    return tot / cnt


def contrast_sign_error(fn, images, *, window=None, batch_size: int = 64) -> float:
    """``‖W(F(−x) + F(x))‖ / ‖W F(x)‖`` pooled over the images (``W``: :func:`window_for`).

    0 for a map with ``F(−x) = −F(x)`` (every linear filter; a network built odd); 2 for ``|x|``.
    """
    x = _batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    win = window_for(fn, x.shape[-2:]) if window is None else torch.as_tensor(window, dtype=torch.float32)
    y, yn = f(x).to(torch.float32).reshape(x.shape), f(-x).to(torch.float32).reshape(x.shape)
    den = float(torch.linalg.vector_norm(win * y))
    return float(torch.linalg.vector_norm(win * (y + yn))) / den if den > 0 else math.nan


def _ring_power(z: torch.Tensor, ring: torch.Tensor, nr: int) -> np.ndarray:
    """Σ over images and ring bins of |z|² (z: rfft-free full FFT, (B, 1, H, W) complex)."""
    p = (z.abs() ** 2).sum(dim=(0, 1)).reshape(-1).double()
    r = ring.reshape(-1)
    keep = r >= 0
    return torch.zeros(nr, dtype=torch.float64).index_add_(0, r[keep], p[keep]).numpy()


def _taper_window(fn, shape) -> torch.Tensor:
    """A smooth disc (taper box/8) inside the valid disc: the window of the spectral measurements."""
    from ..models.protocol import model_valid_radius

    h, w = shape
    r = model_valid_radius(fn) or min(h, w) / 2.0
    return torch.from_numpy(disc_mask((h, w), r, taper=min(r, min(h, w) / 8.0)))


def transfer_gain(fn, images, *, batch_size: int = 64) -> np.ndarray:
    """Ring-wise gain ``Re Σ F̂(Wy)·conj(F̂(Wx)) / Σ |F̂(Wx)|²`` of ``y = fn(x)``, rings 0 … n//2
    (:mod:`cryoxplain.imaging.fourier`); ``W`` a smooth disc (taper box/8) inside the pixels where
    ``fn`` predicts.  Exactly 1 for the identity; for a linear shift-invariant filter close to its
    transfer function (the window blurs it over a few rings: at low frequencies a wide filter reads
    a little low); for a network, its effective linear response on these images."""
    x = _batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    h, w = x.shape[-2:]
    win = _taper_window(fn, (h, w))
    y = f(x).to(torch.float32).reshape(x.shape)
    X, Y = torch.fft.fft2(win * x), torch.fft.fft2(win * y)
    ring = torch.from_numpy(ring_index((h, w)))
    nr = n_rings((h, w))
    cross = (Y * X.conj()).real.sum(dim=(0, 1)).reshape(-1).double()
    r = ring.reshape(-1)
    keep = r >= 0
    num = torch.zeros(nr, dtype=torch.float64).index_add_(0, r[keep], cross[keep]).numpy()
    den = _ring_power(X, ring, nr)
    return np.divide(num, den, out=np.full(nr, np.nan), where=den > 0)


def lowpass_half_gain_frequency(gain: np.ndarray, n: int) -> float:
    """The first frequency (cycles/px) where ``gain`` (rings 0 … n//2 of an ``n``-px box) falls to
    :data:`HALF_GAIN`, linearly interpolated between rings; ``inf`` when it never does.  Ring 0 is
    taken as gain 1 (normalised images carry no DC to measure it on), so a map that halves every
    measured ring gets a half-gain frequency below ring 1."""
    g = np.asarray(gain, float)
    prev = 1.0
    for k in range(1, len(g)):
        if np.isfinite(g[k]) and g[k] < HALF_GAIN:
            t = (prev - HALF_GAIN) / (prev - g[k])
            return (k - 1 + float(np.clip(t, 0, 1))) / n
        if np.isfinite(g[k]):
            prev = g[k]
    return math.inf


def matched_lowpass_sigma(gain: np.ndarray, n: int) -> float:
    """σ (px) of the Gaussian blur with the same half-gain frequency as ``gain``; 0 when ``gain``
    never falls to one half (then the matched low-pass is the identity)."""
    f = lowpass_half_gain_frequency(gain, n)
    if not math.isfinite(f) or f <= 0:
        return 0.0
    return _GAUSS_HALF / f


def gaussian_lowpass(sigma: float, border: str = "periodic"):
    """The linear reference ``x ↦ gaussian_blur(x, σ)`` (identity for σ = 0), on ``(B, 1, H, W)``."""
    from ..imaging.filters import gaussian_blur

    s = float(sigma)
    if s <= 0:
        return lambda x: x
    return lambda x: gaussian_blur(x, s, border=border)


def noise_response(fn, noise, *, sigma: float, window=None, batch_size: int = 64) -> dict:
    """Output of ``fn`` on pure-noise inputs ``noise`` (normalised), against the input and the matched
    Gaussian low-pass of ``sigma`` px.

    Returns ``energy`` = ‖W F(n)‖²/‖W n‖², ``lowpass_energy`` = the same for the low-pass,
    ``energy_vs_lowpass`` = their ratio (> 1: the network puts more energy into pure noise than a
    linear filter of its own bandwidth — it invents structure), and the ring spectra
    ``spectrum`` / ``lowpass_spectrum`` (output power / input power per Fourier ring, smooth disc
    window) with ``spectrum_excess`` = max over rings 1 … n//2 of ``spectrum − lowpass_spectrum`` (in units
    of the input power: > 0 where the network passes or creates more power at some frequency than
    the low-pass; a ratio would be meaningless where the Gaussian is ~0) and ``spectrum_excess_ring``.
    """
    x = _batch(noise)
    f = as_image_function(fn, batch_size=batch_size)
    lp = gaussian_lowpass(sigma)
    h, w = x.shape[-2:]
    win = window_for(fn, (h, w)) if window is None else torch.as_tensor(window, dtype=torch.float32)
    y = f(x).to(torch.float32).reshape(x.shape)
    z = lp(x).to(torch.float32)
    e_in = float(((win * x) ** 2).sum())
    energy, lp_energy = float(((win * y) ** 2).sum()) / e_in, float(((win * z) ** 2).sum()) / e_in
    tw = _taper_window(fn, (h, w))
    ring = torch.from_numpy(ring_index((h, w)))
    nr = n_rings((h, w))
    p_in = _ring_power(torch.fft.fft2(tw * x), ring, nr)
    spec = _ring_power(torch.fft.fft2(tw * y), ring, nr) / p_in
    lspec = _ring_power(torch.fft.fft2(tw * z), ring, nr) / p_in
    excess = np.concatenate([[-np.inf], (spec - lspec)[1:]])  # ring 0: a normalised box has (almost) no DC power
    return {"energy": energy, "lowpass_energy": lp_energy,
            "energy_vs_lowpass": energy / lp_energy if lp_energy > 0 else math.nan,
            "spectrum": spec.tolist(), "lowpass_spectrum": lspec.tolist(),
            "spectrum_excess": float(np.max(excess)), "spectrum_excess_ring": int(np.argmax(excess)),
            "n_images": int(x.shape[0]), "sigma_px": float(sigma)}


def region_snr(signal_regions, background_regions) -> dict:
    """The Topaz-Denoise SNR estimate (Bepler et al. 2020, Methods) from N paired regions.

    ``signal_regions``, ``background_regions``: sequences of 1-D arrays (the pixel values of each
    region, e.g. a disc on a particle and a disc on nearby empty ice).  For pair ``i``, with
    ``μ_b, v_b`` the background region's mean and population variance (ddof 0), the signal is
    ``s = x_s − μ_b`` with mean ``μ_s``; ``SNR = 10·log10( (1/N) Σ_i μ_s,i² / v_b,i )`` dB: the
    per-pair ratios are averaged linearly before the log (the signal region's own variance does
    not enter; invariant to a·x + b).  Pairs whose background has < 2 pixels or zero variance are
    skipped.  Returns ``snr_db``, ``snr`` (linear), ``n_regions``.  The averaging order and ddof are
    pinned by ``tests/metrics/test_nogt.py::test_region_snr_exact_definition`` (docs/metrics.md
    says what of this could be checked against the paper).
    """
    sig, bg = list(signal_regions), list(background_regions)
    if len(sig) != len(bg) or not sig:
        raise ParameterError(f"need equally many (≥ 1) signal and background regions, got {len(sig)} and {len(bg)}")
    ratios = []
    for s, b in zip(sig, bg):
        s, b = np.asarray(s, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        vb = b.var()
        if b.size < 2 or not vb > 0:
            continue
        ratios.append((s.mean() - b.mean()) ** 2 / vb)
    if not ratios:
        return {"snr": math.nan, "snr_db": math.nan, "n_regions": 0}
    val = float(np.mean(ratios))
    return {"snr": val, "snr_db": 10 * math.log10(val) if val > 0 else -math.inf, "n_regions": len(ratios)}
