"""Denoising metrics against ground truth: SNR (linear, dB), PSNR and the Fourier ring correlation.

Definitions (docs/metrics.md gives the derivations and references):

* **SNR** of an estimate ``e`` of the clean image ``s`` inside a mask ``M`` (default: the disc
  inscribed in the box)::

      SNR = Σ_i Σ_{p∈M} (s_ip − s̄_i)²  /  Σ_i Σ_{p∈M} (e_ip − s_ip)²

  with ``s̄_i`` the mean of clean image ``i`` inside ``M``.  For one image this is
  Var_M(s)/mean_M((e − s)²), the spec's SNR_out; for a stack numerator and denominator are pooled
  over images (so large stacks can be accumulated batch by batch).  ``SNR_in`` is the same with the
  noisy input as the estimate.  dB = 10·log10(linear).
* **PSNR** = 10·log10(R² / mean_M((e − s)²)) per image, with the data range R given explicitly or,
  by default, each clean image's own max − min inside ``M``; a stack reports the mean over images.
* **FRC** (Saxton & Baumeister 1982; van Heel & Schatz 2005)::

      FRC(r) = Re Σ_{k∈ring r} F1(k) F2*(k) / sqrt(Σ|F1|² Σ|F2|²)

  over 1-pixel-wide rings r = 0 … N/2 (N = min(H, W); ring index = round(|k|·N) with |k| in
  cycles/pixel: the rings of :mod:`cryoxplain.imaging.fourier`), after multiplying both images by a
  soft (raised-cosine) disc mask (:func:`soft_disc_mask`).  For a stack,
  the three ring sums are pooled over images.  The resolution at a threshold t is where the curve
  first drops below t (linear interpolation between rings); reported as spatial frequency (1/Å)
  and resolution (Å) when the pixel size is known.  Use t = 0.5 against ground truth and t = 0.143
  between independent half-sets (Rosenthal & Henderson 2003).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, ShapeError
from ..imaging.batch import as_image_stack
from ..imaging.fourier import n_rings, rfft_weights, ring_index, ring_sums
from ..imaging.masks import disc_mask as _disc, resolve_mask

__all__ = ["DenoiseMetrics", "FRCResult", "disc_mask", "frc", "frc_resolution", "psnr", "snr",
           "snr_db", "soft_disc_mask"]


def __getattr__(name):  # deprecated location, use cryoxplain.evaluate.evaluate_snr_files (lazy: no I/O import)
    if name == "evaluate_files":
        from ..evaluate import evaluate_snr_files

        return evaluate_snr_files
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def disc_mask(shape: tuple, radius: float | None = None) -> np.ndarray:
    """Deprecated location: use ``cryoxplain.imaging.masks.disc_mask(shape, radius) > 0`` (boolean disc)."""
    return _disc(shape, radius) > 0


def soft_disc_mask(shape: tuple, radius: float | None = None, edge: float | None = None) -> np.ndarray:
    """The FRC's default mask: :func:`cryoxplain.imaging.masks.disc_mask` with a raised-cosine edge,
    1 inside ``radius − edge``, 0 outside ``radius`` (``float64 (H, W)``).

    Defaults: ``radius`` = min(H, W)/2 − 1, ``edge`` = max(2, min(H, W)/16) pixels.
    """
    n = min(int(shape[-2]), int(shape[-1]))
    r = n / 2.0 - 1 if radius is None else float(radius)
    e = max(2.0, n / 16.0) if edge is None else float(edge)
    return _disc(shape, r, taper=min(e, r)).astype(np.float64)


def _selection_mask(mask, shape) -> np.ndarray | None:
    """A mask argument (``"disc"``, ``"none"``/None or an (H, W) array) → boolean pixel selection or None."""
    m = resolve_mask(mask, shape)
    if m is None:
        return None
    if not m.any():
        raise ParameterError("mask selects no pixel")
    return m > 0


def _as_stack(a, name: str) -> np.ndarray:
    return as_image_stack(a, name=name, dtype=np.float64, finite=False)


@dataclass
class FRCResult:
    """An FRC curve with its threshold crossings."""

    frc: np.ndarray  # (R,) correlation per ring
    ring: np.ndarray  # (R,) ring index r (ring r ↔ frequency r/N cycles/pixel)
    box: int  # N = min(H, W)
    pixel_size: float | None  # Å/pixel
    n_per_ring: np.ndarray = field(default=None)  # Fourier coefficients per ring (per image)

    @property
    def frequency(self) -> np.ndarray:
        """Ring frequency in cycles/pixel (×1/pixel_size for 1/Å)."""
        f = self.ring / self.box
        return f / self.pixel_size if self.pixel_size else f

    def crossing(self, threshold: float) -> dict:
        """Where the curve first drops below ``threshold``.

        Returns ``{"threshold", "ring", "frequency_per_px", "frequency_per_A", "resolution_A",
        "crossed"}``; ``crossed`` is False when the curve stays above the threshold up to
        Nyquist (the values then give Nyquist: the resolution is at least that good).
        """
        return frc_resolution(self, threshold)

    def as_dict(self) -> dict:
        return {"ring": self.ring.tolist(), "frequency_per_px": (self.ring / self.box).tolist(),
                "frequency_per_A": (self.ring / self.box / self.pixel_size).tolist() if self.pixel_size else None,
                "frc": [float(v) for v in self.frc], "box": self.box, "pixel_size_A": self.pixel_size}


def frc_resolution(result: FRCResult, threshold: float) -> dict:
    """See :meth:`FRCResult.crossing`."""
    c = np.asarray(result.frc, dtype=np.float64)
    r_cross = None
    for i in range(1, len(c)):
        if c[i] < threshold:
            # linear interpolation between ring i-1 (above) and ring i (below)
            c0, c1 = c[i - 1], c[i]
            t = 0.0 if c0 == c1 else (c0 - threshold) / (c0 - c1)
            r_cross = (i - 1) + min(max(t, 0.0), 1.0)
            break
    crossed = r_cross is not None
    if not crossed:
        r_cross = float(result.ring[-1])
    f_px = r_cross / result.box
    out = {"threshold": float(threshold), "crossed": crossed, "ring": float(r_cross), "frequency_per_px": float(f_px),
           "frequency_per_A": None, "resolution_A": None}
    if result.pixel_size:
        f = f_px / result.pixel_size
        out["frequency_per_A"] = float(f)
        # a curve below the threshold from the lowest ring has no resolution (None, never inf)
        out["resolution_A"] = float(1.0 / f) if f > 0 else None
    return out


class DenoiseMetrics:
    """Accumulate SNR_in/SNR_out/PSNR/FRC over batches of (clean, estimate[, noisy]) images.

    Memory stays bounded by one batch plus O(N images) scalars, so any stack size can be
    evaluated with :meth:`cryoxplain.io.ImageStack.batches`.

    Parameters
    ----------
    shape : (H, W) of the images.
    mask : ``"disc"`` (default), ``"none"``/None or a boolean (H, W) array; used for SNR and PSNR.
    pixel_size : Å/pixel for FRC frequencies (None: cycles/pixel only).
    data_range : explicit PSNR data range; None → each clean image's max − min inside the mask.
    frc_mask : soft mask multiplied into both images before the FFT (default: :func:`soft_disc_mask`;
        ``"none"`` for no mask).
    """

    def __init__(self, shape: tuple, mask="disc", pixel_size: float | None = None,
                 data_range: float | None = None, frc_mask="soft"):
        self.shape = (int(shape[-2]), int(shape[-1]))
        self.mask = _selection_mask(mask, self.shape)
        self.mask_name = mask if isinstance(mask, str) or mask is None else "custom"
        from ..checks import check_pixel_size

        self.pixel_size = check_pixel_size(pixel_size)
        if data_range is not None and not data_range > 0:
            raise ParameterError(f"data_range must be > 0, got {data_range}")
        self.data_range = None if data_range is None else float(data_range)
        if isinstance(frc_mask, str):
            if frc_mask == "soft":
                self.frc_mask = soft_disc_mask(self.shape)
            elif frc_mask == "none":
                self.frc_mask = None
            else:
                raise ParameterError(f"frc_mask must be 'soft', 'none' or an (H, W) array, got {frc_mask!r}")
        else:
            self.frc_mask = None if frc_mask is None else np.asarray(frc_mask, dtype=np.float64)
        self.box = min(self.shape)
        self.n_rings = n_rings(self.shape)
        self._ring = ring_index(self.shape, rfft=True)  # corners beyond Nyquist: -1, not used
        self._wgt = rfft_weights(self.shape)
        self._count = ring_sums(np.ones(self._ring.shape), self._ring, self.n_rings, weights=self._wgt)
        self.n = 0
        self._sig = 0.0
        self._err_out = 0.0
        self._err_in = 0.0
        self._has_noisy = None
        self.psnr_per_image: list[float] = []
        self.snr_out_per_image: list[float] = []
        self.snr_in_per_image: list[float] = []
        self._num = np.zeros(self.n_rings)
        self._d1 = np.zeros(self.n_rings)
        self._d2 = np.zeros(self.n_rings)

    def _sel(self, a: np.ndarray) -> np.ndarray:
        return a[:, self.mask] if self.mask is not None else a.reshape(a.shape[0], -1)

    def update(self, clean, estimate, noisy=None) -> None:
        """Add a batch: arrays (N, H, W) or (H, W)."""
        clean, est = _as_stack(clean, "clean"), _as_stack(estimate, "estimate")
        if clean.shape != est.shape:
            raise ShapeError(f"clean {clean.shape} and estimate {est.shape} have different shapes")
        if clean.shape[1:] != self.shape:
            raise ShapeError(f"images of shape {clean.shape[1:]} given to metrics set up for {self.shape}")
        if noisy is not None:
            noisy = _as_stack(noisy, "noisy")
            if noisy.shape != clean.shape:
                raise ShapeError(f"noisy {noisy.shape} and clean {clean.shape} have different shapes")
        if self._has_noisy is None:
            self._has_noisy = noisy is not None
        elif self._has_noisy != (noisy is not None):
            raise ParameterError("give the noisy input for every batch or for none")
        s, e = self._sel(clean), self._sel(est)
        sig = ((s - s.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        err = ((e - s) ** 2).sum(axis=1)
        self._sig += float(sig.sum())
        self._err_out += float(err.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            self.snr_out_per_image.extend((sig / err).tolist())
            if noisy is not None:
                errn = ((self._sel(noisy) - s) ** 2).sum(axis=1)
                self._err_in += float(errn.sum())
                self.snr_in_per_image.extend((sig / errn).tolist())
            rng = np.full(len(s), self.data_range) if self.data_range else s.max(axis=1) - s.min(axis=1)
            mse = err / s.shape[1]
            self.psnr_per_image.extend((10 * np.log10(rng ** 2 / mse)).tolist())
        # FRC ring sums
        m = self.frc_mask if self.frc_mask is not None else 1.0
        f1 = np.fft.rfft2(clean * m)
        f2 = np.fft.rfft2(est * m)
        r, w, k = self._ring, self._wgt, self.n_rings
        self._num += ring_sums((f1 * np.conj(f2)).real.sum(axis=0), r, k, weights=w)
        self._d1 += ring_sums((np.abs(f1) ** 2).sum(axis=0), r, k, weights=w)
        self._d2 += ring_sums((np.abs(f2) ** 2).sum(axis=0), r, k, weights=w)
        self.n += len(clean)

    # ---- results -------------------------------------------------------------------------------
    def snr_out(self) -> float:
        return _ratio(self._sig, self._err_out)

    def snr_in(self) -> float | None:
        return _ratio(self._sig, self._err_in) if self._has_noisy else None

    def psnr(self) -> float:
        vals = np.asarray(self.psnr_per_image)
        return float(np.mean(vals)) if len(vals) else math.nan

    def frc(self) -> FRCResult:
        den = np.sqrt(self._d1 * self._d2)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(den > 0, self._num / den, 0.0)
        return FRCResult(frc=c, ring=np.arange(self.n_rings), box=self.box, pixel_size=self.pixel_size,
                         n_per_ring=self._count)

    def result(self) -> dict:
        """All metrics as a JSON-ready dict."""
        if self.n == 0:
            raise ParameterError("no images were evaluated")
        curve = self.frc()
        out = {
            "n_images": self.n,
            "mask": self.mask_name if isinstance(self.mask_name, str) else "none",
            "snr_out": self.snr_out(),
            "snr_out_db": snr_db(self.snr_out()),
            "psnr_db": self.psnr(),
            "psnr_data_range": self.data_range if self.data_range else "per-image max-min of clean (in mask)",
            "frc_0.5": curve.crossing(0.5),
            "frc_0.143": curve.crossing(0.143),
            "frc_curve": curve.as_dict(),
        }
        if self._has_noisy:
            out["snr_in"] = self.snr_in()
            out["snr_in_db"] = snr_db(self.snr_in())
            out["snr_gain_db"] = out["snr_out_db"] - out["snr_in_db"]
        return out


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return math.inf
    return float(a / b)


def snr_db(x: float) -> float:
    """10·log10(x), with +inf for infinite and −inf for 0."""
    if x == math.inf:
        return math.inf
    if x <= 0:
        return -math.inf
    return 10.0 * math.log10(x)


def snr(clean, estimate, mask="disc") -> float:
    """Pooled linear SNR of ``estimate`` against ``clean`` (see the module docstring)."""
    clean = _as_stack(clean, "clean")
    m = DenoiseMetrics(clean.shape[1:], mask=mask, frc_mask="none")
    m.update(clean, estimate)
    return m.snr_out()


def psnr(clean, estimate, data_range: float | None = None, mask="disc") -> float:
    """Mean PSNR (dB) over images; ``data_range`` None → each clean image's max − min in the mask."""
    clean = _as_stack(clean, "clean")
    m = DenoiseMetrics(clean.shape[1:], mask=mask, data_range=data_range, frc_mask="none")
    m.update(clean, estimate)
    return m.psnr()


def frc(image1, image2, pixel_size: float | None = None, mask="soft") -> FRCResult:
    """FRC between two images (or two stacks, ring sums pooled); ``mask``: 'soft', 'none' or an array."""
    a = _as_stack(image1, "image1")
    m = DenoiseMetrics(a.shape[1:], mask=None, pixel_size=pixel_size, frc_mask=mask)
    m.update(a, image2)
    return m.frc()
