"""Contrast transfer function in RELION's convention.

For spatial frequency ``k`` (1/Å) at azimuth ``φ``, with defocus positive = underfocus (RELION's
rlnDefocusU/V/Angle):

    Δf(φ)  = (U + V)/2 + (U − V)/2 · cos(2 (φ − φ_astig))
    γ(k)   = −π λ Δf k² + (π/2) Cs λ³ k⁴ − φ_shift − atan(Q / √(1 − Q²))
    CTF(k) = −sin(γ(k)) · exp(−B k² / 4)

so ``CTF(0) = Q`` (the amplitude-contrast fraction) and the first lobe is positive: a particle
with positive density stays positive at low resolution.  λ is the relativistic electron
wavelength (Å) at the acceleration voltage, Cs is in mm (converted to Å).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ParameterError


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = float(voltage_kv) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v))  # RELION's constants


@dataclass(frozen=True)
class CTFParams:
    """Microscope and defocus settings for simulation.

    Defocus of each particle is drawn uniformly from ``[defocus_min, defocus_max]`` (Å,
    positive = underfocus); ``astigmatism`` (Å) is the difference U − V, with a uniformly random
    astigmatism angle.  ``voltage`` in kV, ``cs`` in mm, ``amplitude_contrast`` a fraction,
    ``phase_shift`` in radians, ``bfactor`` in Å² (envelope ``exp(−B k²/4)``).
    """

    defocus_min: float = 10000.0
    defocus_max: float = 25000.0
    astigmatism: float = 0.0
    voltage: float = 300.0
    cs: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift: float = 0.0
    bfactor: float = 0.0

    def __post_init__(self):
        if not (0 < self.defocus_min <= self.defocus_max):
            raise ParameterError(f"CTF defocus range must satisfy 0 < min ≤ max (Å), got {self.defocus_min}..{self.defocus_max}")
        if self.voltage <= 0:
            raise ParameterError(f"CTF voltage must be > 0 kV, got {self.voltage}")
        if self.cs < 0:
            raise ParameterError(f"CTF spherical aberration must be ≥ 0 mm, got {self.cs}")
        if not (0 <= self.amplitude_contrast < 1):
            raise ParameterError(f"amplitude contrast must be in [0, 1), got {self.amplitude_contrast}")
        if self.astigmatism < 0 or self.astigmatism >= 2 * self.defocus_min:
            raise ParameterError(f"astigmatism must be in [0, 2·defocus_min) Å, got {self.astigmatism}")

    def as_dict(self) -> dict:
        return asdict(self)


def ctf_2d(shape: tuple, pixel_size: float, defocus_u: float, defocus_v: float | None = None,
           astig_angle: float = 0.0, voltage: float = 300.0, cs: float = 2.7,
           amplitude_contrast: float = 0.1, phase_shift: float = 0.0, bfactor: float = 0.0) -> np.ndarray:
    """The CTF on the unshifted FFT grid of an image of ``shape`` (``np.fft.fftfreq`` layout).

    ``defocus_u``/``defocus_v`` in Å (positive = underfocus), ``astig_angle`` in radians
    (RELION's rlnDefocusAngle), ``voltage`` in kV, ``cs`` in mm.  Returns a float64 ``shape``
    array; multiply it with ``np.fft.fft2(image)``.
    """
    if pixel_size <= 0:
        raise ParameterError(f"pixel size must be > 0 Å, got {pixel_size}")
    defocus_v = defocus_u if defocus_v is None else defocus_v
    lam = electron_wavelength(voltage)
    ky = np.fft.fftfreq(shape[0], d=pixel_size)[:, None]
    kx = np.fft.fftfreq(shape[1], d=pixel_size)[None, :]
    k2 = kx * kx + ky * ky
    phi = np.arctan2(ky, kx)
    df = 0.5 * (defocus_u + defocus_v) + 0.5 * (defocus_u - defocus_v) * np.cos(2 * (phi - astig_angle))
    cs_a = cs * 1e7
    q = amplitude_contrast
    gamma = -np.pi * lam * df * k2 + 0.5 * np.pi * cs_a * lam ** 3 * k2 * k2 - phase_shift - np.arctan(q / np.sqrt(1 - q * q))
    ctf = -np.sin(gamma)
    if bfactor:
        ctf = ctf * np.exp(-bfactor * k2 / 4.0)
    return ctf


def apply_ctf(image: np.ndarray, ctf: np.ndarray, pad: int = 2) -> np.ndarray:
    """Convolve ``image`` (H, W) with a CTF given on the padded grid ``(pad·H, pad·W)``.

    The image is zero-padded by ``pad`` before filtering (avoids wrap-around of the CTF's
    delocalised signal) and cropped back to its centre.
    """
    h, w = image.shape
    ph, pw = ctf.shape
    big = np.zeros((ph, pw), dtype=np.float64)
    y0, x0 = (ph - h) // 2, (pw - w) // 2
    big[y0:y0 + h, x0:x0 + w] = image
    out = np.fft.ifft2(np.fft.fft2(big) * ctf).real
    return out[y0:y0 + h, x0:x0 + w]
