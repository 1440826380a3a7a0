"""Spatial power spectra of attribution maps and the FORGrad low-pass filter.

Shared by the frequency-aware explainer plugins (``blur_ig``, ``spectral_lens``,
``lowpass_gradient``, ``spectral_ig``), which all report the spectrum of the map they return.

Conventions (square or rectangular maps, real valued):

* ``P(kx, ky) = |FFT2(φ)|² / (H·W)`` with numpy's unnormalised FFT, so ``Σ P = Σ φ²`` (Parseval).
* Radial frequency ``r = sqrt(fx² + fy²)`` in cycles/pixel with ``fx = fftfreq(W)``,
  ``fy = fftfreq(H)``; the rings are those of :mod:`cryoxplain.imaging.fourier` (shared with the
  FRC).  Ring ``k`` collects the bins with ``round(r · n) == k`` where
  ``n = min(H, W)``; its centre is ``k / n`` cycles/pixel.  Rings ``0 … n//2`` cover the inscribed
  circle; the corners (``r > 0.5``) form further rings that are dropped unless
  ``include_corners=True``.
* The FORGrad filter (Muzellec et al., "Gradient strikes back", seed 002, §3.4) is an *ideal*
  (binary) low-pass mask on the centred DFT: ``box`` keeps ``|kx| ≤ σ and |ky| ≤ σ`` (the paper's
  K^σ), ``disk`` keeps ``kx² + ky² ≤ σ²`` (Xplique's ``forgrad``).  σ is in DFT-index units
  (cycles per box), so σ ≥ max(H, W)/2 keeps everything and σ = 0 keeps only the mean.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.fourier import frequency_radius, ring_frequencies, ring_index, ring_sums

__all__ = ["AttributionSpectrum", "attribution_spectrum", "high_frequency_fraction", "lowpass_mask",
           "lowpass_filter", "radial_frequencies"]


@dataclass
class AttributionSpectrum:
    """Result of :func:`attribution_spectrum`.

    ``frequencies`` (R,) ring centres in cycles/pixel; ``power`` mean power per ring, ``total``
    summed power per ring (both (R,) when averaged over the batch, else (N, R)); ``counts`` (R,)
    DFT bins per ring; ``power2d`` the centred (fftshifted) 2-D power, (H, W) or (N, H, W).
    """

    frequencies: np.ndarray
    power: np.ndarray
    total: np.ndarray
    counts: np.ndarray
    power2d: np.ndarray


def _as_numpy_maps(phi) -> np.ndarray:
    from ..imaging.batch import as_image_stack

    return as_image_stack(phi, name="attribution maps", dtype=np.float64, finite=False)


def radial_frequencies(shape: tuple[int, int], include_corners: bool = False):
    """Ring index of every (unshifted) DFT bin (corners included), the ring centres in cycles/pixel
    and the number of rings kept — the rings of :mod:`cryoxplain.imaging.fourier`."""
    freqs = ring_frequencies(shape, include_corners=include_corners)
    return ring_index(shape, include_corners=True), freqs, len(freqs)


def attribution_spectrum(phi, *, radial: bool = True, remove_mean: bool = False,
                         include_corners: bool = False, average: bool = True) -> AttributionSpectrum:
    """Power spectrum of attribution maps, radially averaged.

    Parameters
    ----------
    phi : array or tensor, (H, W), (N, H, W) or (N, 1, H, W)
    radial : compute the radial profile (the 2-D spectrum is always returned as ``power2d``).
    remove_mean : subtract each map's mean first (drops the DC term).
    include_corners : keep the rings beyond 0.5 cycles/pixel (the box corners).
    average : average over the N maps (default) or return per-map profiles ``(N, R)``.
    """
    a = _as_numpy_maps(phi)
    n_maps, h, w = a.shape
    if remove_mean:
        a = a - a.mean(axis=(1, 2), keepdims=True)
    p2 = np.abs(np.fft.fft2(a)) ** 2 / (h * w)  # (N, H, W), unshifted; Σ p2 = Σ a²
    ring, freqs, n_rings = radial_frequencies((h, w), include_corners)
    counts = ring_sums(np.ones((h, w)), ring, n_rings).astype(np.int64)
    total = ring_sums(p2, ring, n_rings) if radial else np.zeros((n_maps, n_rings))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / np.maximum(counts, 1)
    p2c = np.fft.fftshift(p2, axes=(-2, -1))
    if average:
        total, mean, p2c = total.mean(0), mean.mean(0), p2c.mean(0)
    return AttributionSpectrum(freqs, mean, total, counts, p2c)


def high_frequency_fraction(phi, cutoff: float) -> np.ndarray:
    """Fraction of each map's power at radial frequencies above ``cutoff`` (cycles/pixel): (N,)."""
    a = _as_numpy_maps(phi)
    p2 = np.abs(np.fft.fft2(a)) ** 2
    r = frequency_radius(a.shape[1:])
    tot = p2.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, p2[:, r > cutoff].sum(axis=1) / tot, 0.0)


def lowpass_mask(shape: tuple[int, int], sigma: float, mask: str = "box",
                 device=None, dtype=torch.float64) -> torch.Tensor:
    """Binary low-pass mask in *unshifted* DFT layout (so it multiplies ``fft2`` directly).

    ``box``: ``|ky| ≤ σ and |kx| ≤ σ`` (seed 002's K^σ); ``disk``: ``kx² + ky² ≤ σ²`` (Xplique).
    Frequencies are integer DFT indices in ``[-n/2, n/2)``.
    """
    if sigma < 0:
        raise ParameterError(f"low-pass cutoff must be >= 0, got {sigma}")
    if mask not in ("box", "disk"):
        raise ParameterError(f"mask must be 'box' or 'disk', got {mask!r}")
    h, w = shape
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=device, dtype=dtype)[:, None]
    kx = torch.fft.fftfreq(w, d=1.0 / w, device=device, dtype=dtype)[None, :]
    if mask == "box":
        m = (ky.abs() <= sigma) & (kx.abs() <= sigma)
    else:
        m = ky ** 2 + kx ** 2 <= sigma ** 2
    # The kept set is closed under k -> -k (mod n): |k| is invariant except at the Nyquist index
    # -n/2, which is its own partner.  So F(φ)·K is Hermitian and the filtered map is real.
    return m.to(dtype)


def lowpass_filter(phi, sigma: float, mask: str = "box", abs_input: bool = False,
                   abs_output: bool = False):
    """FORGrad: ``φ_σ = F⁻¹(F(φ) ⊙ K^σ)`` on the last two axes (torch or numpy, any leading dims).

    With ``abs_input=abs_output=False`` (our default) the filter is linear and idempotent.
    ``abs_input=True, abs_output=True, mask='disk'`` reproduces Xplique's ``forgrad`` on square,
    even-sized maps.
    """
    is_np = not isinstance(phi, torch.Tensor)
    t = torch.as_tensor(np.ascontiguousarray(phi)) if is_np else phi
    if t.ndim < 2:
        raise ShapeError(f"lowpass_filter needs at least 2-D maps, got shape {tuple(t.shape)}")
    x = t.abs() if abs_input else t
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    m = lowpass_mask(tuple(x.shape[-2:]), sigma, mask, device=x.device, dtype=work)
    y = torch.fft.ifft2(torch.fft.fft2(x.to(work)) * m).real.to(t.dtype)
    if abs_output:
        y = y.abs()
    return y.numpy() if is_np else y
