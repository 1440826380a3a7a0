"""A training distribution for general denoisers: many structures, CTF, both contrast signs,
pixel sizes around a nominal one, a wide SNR range, white and real-looking coloured noise.

:func:`simulate_training_distribution` draws ``(noisy, clean)`` pairs from this distribution
(used by ``scripts/train_default_model.py`` for the shipped ``default`` and ``default-spiral``
models).  Per group of ``group_size`` particles (one structure, one pixel size, one astigmatism)
the clean images come from :func:`cryoxplain.sim.simulate_particles` (Haar-uniform orientations,
CTF in RELION's convention, :mod:`cryoxplain.sim.ctf`; the clean target is the CTF-modulated
projection: denoising, not CTF correction).  Each clean image is then observed ``noise_draws``
times, each draw with its own

* contrast sign ±1 (protein bright or dark, probability 1/2),
* SNR, log-uniform in ``snr_range`` (SNR = Var of the clean image over the box-inscribed disc /
  noise variance, as everywhere in :mod:`cryoxplain.sim`),
* noise colour: white, or (probability ``coloured_fraction``) Gaussian noise with the radial power
  spectrum measured on the background of a real micrograph (:func:`noise_spectrum`, shipped in
  ``cryoxplain/data/noise/``, made by ``scripts/measure_noise_spectrum.py``).

All randomness derives from ``seed``: the same call returns bit-identical arrays on CPU.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .ctf import CTFParams
from .density import Density, load_density
from .simulate import disc_mask, disc_variance, simulate_particles

__all__ = ["NOISE_SPECTRUM", "Structure", "TrainingSet", "coloured_noise", "noise_spectrum",
           "simulate_training_distribution"]

#: the shipped background spectrum of the real EPU micrograph (5.12 Å/px)
NOISE_SPECTRUM = Path(__file__).resolve().parent.parent / "data" / "noise" / "fei_extended_bin6_background.json"


@dataclass(frozen=True)
class Structure:
    """One density source: a path (map or atomic model) and, for maps whose header has none, the
    voxel size to assume (``pixel_size``, Å)."""

    path: str
    pixel_size: float | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name


@dataclass
class TrainingSet:
    """``noisy``, ``clean`` float32 ``(N, box, box)``; ``meta`` per-image arrays (``structure``,
    ``pixel_size``, ``snr``, ``sign``, ``coloured``, ``defocus_u``, ``defocus_v``) and ``params``
    the distribution (JSON-able, recorded in model files)."""

    noisy: np.ndarray
    clean: np.ndarray
    meta: dict
    params: dict = field(default_factory=dict)


def noise_spectrum(path: str | Path = NOISE_SPECTRUM) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(frequency cycles/px, relative power, record)`` of a stored radial noise spectrum."""
    rec = json.loads(Path(path).read_text())
    return np.asarray(rec["frequency_cycles_per_px"], float), np.asarray(rec["power"], float), rec


def coloured_noise(shape: tuple, rng: np.random.Generator, freq: np.ndarray, power: np.ndarray) -> np.ndarray:
    """Stationary Gaussian noise ``shape = (H, W)`` with radial power spectrum ``power(freq)``
    (cycles/px; linear interpolation, constant beyond the last ring), scaled to unit variance."""
    from ..imaging.fourier import frequency_radius

    white = rng.standard_normal(shape)
    amp = np.sqrt(np.interp(frequency_radius(shape), freq, power))
    out = np.fft.ifft2(np.fft.fft2(white) * amp).real
    return out / out.std()


def _density(s: Structure, pixel_size: float, cache: dict) -> Density:
    key = (s.path, round(pixel_size, 4))
    if key not in cache:
        base = cache.get((s.path, None))
        if base is None:
            suffix = "".join(Path(s.path).suffixes).lower()
            is_model = any(x in suffix for x in (".pdb", ".cif", ".ent"))
            if is_model:
                cache[key] = load_density(s.path, pixel_size=pixel_size)
                return cache[key]
            base = cache[(s.path, None)] = load_density(s.path, pixel_size=s.pixel_size)
        cache[key] = base.resampled(pixel_size)
    return cache[key]


def simulate_training_distribution(structures, n_clean: int, box: int = 64, *, seed: int = 0,
                                   pixel_sizes=(4.2, 4.6, 5.0, 5.4, 5.8, 6.2),
                                   defocus=(5000.0, 35000.0), astigmatism=(0.0, 1500.0),
                                   snr_range=(1 / 100, 1 / 2), noise_draws: int = 2,
                                   coloured_fraction: float = 0.5, spectrum: str | Path = NOISE_SPECTRUM,
                                   group_size: int = 25, voltage: float = 300.0, cs: float = 2.7,
                                   amplitude_contrast: float = 0.1, bfactor: float = 0.0,
                                   progress=None) -> TrainingSet:
    """Simulate ``n_clean`` clean particles (``× noise_draws`` noisy observations) from the
    training distribution described in the module docstring.

    Parameters
    ----------
    structures : sequence of :class:`Structure` (or paths): cycled over the groups.
    n_clean : clean images (rounded up to whole groups of ``group_size``).
    box : image size (px).
    pixel_sizes : Å/px values, one drawn per group (densities are resampled to it, so a structure's
        size in pixels varies).
    defocus : (min, max) underfocus in Å (RELION convention), uniform per particle.
    astigmatism : (min, max) of ``U − V`` in Å, uniform per group; the angle is uniform per particle.
    snr_range : (min, max) SNR, log-uniform per noisy image.
    noise_draws : noisy observations per clean image (each with its own sign, SNR and colour).
    coloured_fraction : probability of coloured (measured) noise instead of white.
    spectrum : the stored spectrum file (:func:`noise_spectrum`).
    """
    structs = [s if isinstance(s, Structure) else Structure(str(s)) for s in structures]
    if not structs:
        raise ParameterError("structures must name at least one density")
    if n_clean < 1 or noise_draws < 1 or group_size < 1:
        raise ParameterError(f"n_clean, noise_draws and group_size must be ≥ 1, got {n_clean}, {noise_draws}, {group_size}")
    lo, hi = float(snr_range[0]), float(snr_range[1])
    if not (0 < lo <= hi):
        raise ParameterError(f"snr_range must satisfy 0 < min ≤ max, got {snr_range}")
    if not (0 <= coloured_fraction <= 1):
        raise ParameterError(f"coloured_fraction must be in [0, 1], got {coloured_fraction}")
    freq, power, rec = noise_spectrum(spectrum)
    n_groups = math.ceil(n_clean / group_size)
    mask = disc_mask(box)
    cache: dict = {}
    noisy, clean = [], []
    meta = {k: [] for k in ("structure", "pixel_size", "snr", "sign", "coloured", "defocus_u", "defocus_v")}
    for g in range(n_groups):
        rg = np.random.default_rng([int(seed), g, 0])
        s_idx = g % len(structs)
        px = float(pixel_sizes[int(rg.integers(len(pixel_sizes)))])
        astig = float(rg.uniform(*astigmatism))
        ctf = CTFParams(defocus_min=float(defocus[0]), defocus_max=float(defocus[1]),
                        astigmatism=min(astig, 2 * float(defocus[0]) - 1.0), voltage=voltage, cs=cs,
                        amplitude_contrast=amplitude_contrast, bfactor=bfactor)
        dens = _density(structs[s_idx], px, cache)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no noise": the noise is added below
            r = simulate_particles(dens, group_size, box=box, snr=None, seed=int(seed) * 100003 + g, ctf=ctf)
        var = disc_variance(r.clean, mask)
        for d in range(noise_draws):
            rn = np.random.default_rng([int(seed), g, 1 + d])
            for j in range(group_size):
                sign = 1.0 if rn.random() < 0.5 else -1.0
                snr = float(math.exp(rn.uniform(math.log(lo), math.log(hi))))
                col = bool(rn.random() < coloured_fraction)
                z = coloured_noise((box, box), rn, freq, power) if col else rn.standard_normal((box, box))
                c = sign * r.clean[j].astype(np.float64)
                clean.append(c.astype(np.float32))
                noisy.append((c + math.sqrt(var[j] / snr) * z).astype(np.float32))
                meta["structure"].append(s_idx)
                meta["pixel_size"].append(px)
                meta["snr"].append(snr)
                meta["sign"].append(sign)
                meta["coloured"].append(col)
                meta["defocus_u"].append(float(r.metadata["defocus_u"][j]))
                meta["defocus_v"].append(float(r.metadata["defocus_v"][j]))
        if progress is not None:
            progress(g + 1, n_groups)
    params = {
        "structures": [s.label for s in structs], "n_clean": n_groups * group_size, "noise_draws": int(noise_draws),
        "box": int(box), "seed": int(seed), "pixel_sizes_A": [float(p) for p in pixel_sizes],
        "defocus_A": [float(x) for x in defocus], "astigmatism_A": [float(x) for x in astigmatism],
        "ctf": {"voltage_kV": voltage, "cs_mm": cs, "amplitude_contrast": amplitude_contrast, "bfactor": bfactor,
                "convention": "RELION (cryoxplain.sim.ctf); clean target = CTF-modulated projection"},
        "snr_range": [lo, hi], "snr_distribution": "log-uniform, Var(clean over disc)/noise variance",
        "contrast_signs": "+1/-1 with probability 1/2", "coloured_fraction": float(coloured_fraction),
        "noise_spectrum": {"file": Path(spectrum).name, "source": rec.get("source", ""),
                           "script": rec.get("script", "")},
        "group_size": int(group_size), "generator": "cryoxplain.sim.training.simulate_training_distribution",
    }
    arr = {k: np.asarray(v) for k, v in meta.items()}
    return TrainingSet(np.stack(noisy), np.stack(clean), arr, params)
