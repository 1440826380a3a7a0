"""Simulated particle stacks with exact ground truth (spec: docs/simulate.md).

Pipeline per particle ``i`` (all randomness from ``numpy.random.default_rng([seed, i, stream])``,
so any particle regenerates alone and changing e.g. the SNR keeps orientations and noise draws):

1. orientation: a Haar-uniform rotation ``A_i`` (stream 0), stored as RELION Euler angles;
2. projection along z of the density rotated by ``A_i`` into a ``box × box`` image;
3. optional CTF (stream 1 draws the defocus/astigmatism), applied on a 2× zero-padded grid;
   the result is ``clean`` (what a perfect denoiser should return);
4. optional Poisson shot noise at ``dose`` e⁻/Å² (streams 4/5);
5. additive white Gaussian noise (streams 2/3) with σ² = Var_disc(clean)/SNR, where Var_disc is
   the variance of the clean image over the disc inscribed in the box (radius box/2).
With ``paired=True`` a second, independent noisy copy ``noisy2`` is made (Noise2Noise).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ParameterError
from .ctf import CTFParams, apply_ctf, ctf_2d
from .density import Density, check_box, load_density
from .project import project
from .so3 import matrix_to_euler, random_rotations

STREAM_ORIENT, STREAM_CTF, STREAM_NOISE, STREAM_NOISE2, STREAM_SHOT, STREAM_SHOT2 = range(6)


def disc_mask(box: int, radius: float | None = None) -> np.ndarray:
    """Boolean ``(box, box)`` mask of the disc of ``radius`` (default box/2) around pixel box//2
    (:func:`cryoxplain.imaging.masks.disc_mask`)."""
    from ..imaging.masks import disc_mask as _disc

    return _disc(box, radius) > 0


def disc_variance(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Variance of each image (…, H, W) over the pixels in ``mask``.

    Computed image by image, so a particle's value never depends on which others share its batch
    (bit-identical results between in-memory and streamed simulations).
    """
    imgs = np.asarray(images)
    flat = imgs.reshape((-1,) + imgs.shape[-2:])
    out = np.array([img[mask].astype(np.float64).var() for img in flat])
    return out.reshape(imgs.shape[:-2])


@dataclass
class SimResult:
    """Simulated particles and everything needed to regenerate them.

    Arrays are float32 ``(n, box, box)``: ``clean`` is the noise-free image (CTF applied when a CTF
    was requested), ``noisy`` the observation, ``noisy2`` an independent second observation
    (``paired=True``, else ``None``), ``projection`` the plain projection without CTF (only when
    a CTF was applied, else ``None``).  ``metadata`` holds per-particle arrays (``euler`` (n, 3)
    RELION rot/tilt/psi in radians, ``rotation`` (n, 3, 3), ``noise_sigma``, ``snr_measured``,
    ``defocus_u``/``defocus_v``/``defocus_angle`` when a CTF was applied) and ``params`` the
    settings (seed, snr, pixel size, box, dose, CTF, source, version).
    """

    clean: np.ndarray
    noisy: np.ndarray
    noisy2: np.ndarray | None
    projection: np.ndarray | None
    metadata: dict
    params: dict = field(default_factory=dict)

    @property
    def pixel_size(self) -> float:
        return float(self.params["pixel_size"])

    def __len__(self) -> int:
        return int(self.clean.shape[0])


def _rng(seed: int, i: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(i), int(stream)])


def _prepare(density, n, box, pixel_size, snr, dose, contrast, noise_scale, ctf, noise_sigma):
    if not isinstance(density, Density):
        is_phantom = str(density).lower() == "phantom"
        density = load_density(density, pixel_size, box=box if is_phantom else None)
    n = int(n)
    if n < 1:
        raise ParameterError(f"number of particles must be ≥ 1, got {n}")
    if pixel_size is not None:
        from ..checks import check_pixel_size

        density = density.resampled(check_pixel_size(pixel_size))
    box = density.size if box is None else check_box(box)
    if snr is not None and not (snr > 0 and math.isfinite(snr)):
        raise ParameterError(f"SNR must be a positive number, got {snr}")
    if noise_sigma is not None and not (noise_sigma >= 0 and math.isfinite(noise_sigma)):
        raise ParameterError(f"noise sigma must be ≥ 0, got {noise_sigma}")
    if dose is not None and not (dose > 0 and math.isfinite(dose)):
        raise ParameterError(f"dose must be > 0 e⁻/Å², got {dose}")
    if not (0 < contrast <= 1):
        raise ParameterError(f"contrast must be in (0, 1], got {contrast}")
    if noise_scale not in ("image", "stack"):
        raise ParameterError(f"noise_scale must be 'image' or 'stack', got {noise_scale!r}")
    if snr is None and dose is None and not noise_sigma:
        warnings.warn("neither snr, noise_sigma nor dose given: the 'noisy' images equal the clean ones")
    if ctf is not None and not isinstance(ctf, CTFParams):
        raise ParameterError("ctf must be a CTFParams instance or None")
    return density, n, box


def _clean_images(density: Density, first: int, n: int, box: int, seed: int, ctf, device, batch_size):
    """Orientations, projections and (optionally) CTF-modulated clean images of particles
    ``first … first+n−1``."""
    idx = range(first, first + n)
    rotations = np.stack([random_rotations(1, _rng(seed, i, STREAM_ORIENT))[0] for i in idx])
    proj = project(density.data, rotations, box, device=device, batch_size=batch_size)
    meta: dict = {"euler": matrix_to_euler(rotations), "rotation": rotations}
    if ctf is None:
        return proj, None, meta
    clean = np.empty_like(proj)
    du, dv, da = np.empty(n), np.empty(n), np.empty(n)
    for j, i in enumerate(idx):
        r = _rng(seed, i, STREAM_CTF)
        u = r.uniform(ctf.defocus_min, ctf.defocus_max)
        du[j], dv[j], da[j] = u, u - ctf.astigmatism, r.uniform(0.0, np.pi)
        h = ctf_2d((2 * box, 2 * box), density.pixel_size, du[j], dv[j], da[j], ctf.voltage, ctf.cs,
                   ctf.amplitude_contrast, ctf.phase_shift, ctf.bfactor)
        clean[j] = apply_ctf(proj[j], h)
    meta.update(defocus_u=du, defocus_v=dv, defocus_angle=da)
    return clean, proj, meta


def _disc_var(clean: np.ndarray, box: int, first: int) -> np.ndarray:
    var = disc_variance(clean, disc_mask(box))
    if np.any(var <= 0):
        bad = first + int(np.argmax(var <= 0))
        raise ParameterError(f"particle {bad} has no signal inside the disc (box {box} too small or density empty)")
    return var


def _observe(clean, first, sigma, seed, noise_stream, shot_stream, dose, pixel_size, contrast, c_ref):
    out = np.empty_like(clean)
    for j in range(clean.shape[0]):
        i = first + j
        img = clean[j].astype(np.float64)
        if dose is not None:
            per_px = dose * pixel_size ** 2
            lam = np.clip(per_px * (1.0 + contrast * img / c_ref), 0.0, None)
            counts = _rng(seed, i, shot_stream).poisson(lam)
            img = (counts / per_px - 1.0) * c_ref / contrast
        if sigma[j] > 0:
            img = img + sigma[j] * _rng(seed, i, noise_stream).standard_normal(img.shape)
        out[j] = img
    return out


def _chunk(density, first, n, box, snr, seed, ctf, dose, paired, noise_scale, contrast, device, batch_size,
           noise_sigma, c_ref, params) -> SimResult:
    clean, projection, meta = _clean_images(density, first, n, box, seed, ctf, device, batch_size)
    var = _disc_var(clean, box, first)
    if noise_sigma is not None:
        sigma = np.full(n, float(noise_sigma))
    elif snr is not None:
        sigma = np.sqrt(var / snr) if noise_scale == "image" else np.full(n, math.sqrt(var.mean() / snr))
    else:
        sigma = np.zeros(n)
    args = (seed, dose, density.pixel_size, contrast, c_ref)
    noisy = _observe(clean, first, sigma, args[0], STREAM_NOISE, STREAM_SHOT, *args[1:])
    noisy2 = _observe(clean, first, sigma, args[0], STREAM_NOISE2, STREAM_SHOT2, *args[1:]) if paired else None
    mask = disc_mask(box)
    err = np.array([np.mean(np.square((noisy[j] - clean[j])[mask].astype(np.float64))) for j in range(n)])
    meta["noise_sigma"] = sigma
    meta["snr_measured"] = var / np.maximum(err, 1e-300)
    return SimResult(clean=clean, noisy=noisy, noisy2=noisy2, projection=projection, metadata=meta, params=params)


def _params(density, n, box, snr, seed, ctf, dose, paired, noise_scale, contrast, noise_sigma) -> dict:
    return {
        "seed": int(seed), "n": int(n), "box": int(box), "pixel_size": density.pixel_size, "snr": snr,
        "snr_definition": "Var(clean over disc of radius box/2) / noise variance",
        "noise_scale": noise_scale, "noise_sigma": noise_sigma, "dose": dose, "contrast": contrast,
        "paired": bool(paired), "ctf": ctf.as_dict() if ctf is not None else None,
        "source": density.source, "density_meta": density.meta, "density_box": density.size,
        "density_pixel_size": density.pixel_size,
        "projection": "real-space trilinear on 2x spline-upsampled density, sum along z (RELION Euler convention)",
        "cryoxplain_version": __version__,
    }


def _c_ref(density: Density, box: int, dose) -> float:
    if dose is None:
        return 0.0
    return float(np.abs(project(density.data, np.eye(3)[None], box)[0]).max())


def simulate_particles(density: Density | str | os.PathLike, n: int, box: int | None = None,
                       pixel_size: float | None = None, snr: float | None = 0.25, seed: int = 0,
                       ctf: CTFParams | None = None, dose: float | None = None, paired: bool = False, *,
                       noise_scale: str = "image", noise_sigma: float | None = None, contrast: float = 0.1,
                       device: str = "cpu", batch_size: int = 16) -> SimResult:
    """Simulate ``n`` particle images of ``density`` with exact ground truth (in memory).

    Parameters
    ----------
    density : a :class:`Density`, or a path / ``"phantom"`` passed to :func:`load_density`.
    n : number of particles (≥ 1).
    box : image size in pixels (default: the density's box).
    pixel_size : image pixel size in Å; default the density's.  A different value resamples the
        density first.
    snr : target signal-to-noise ratio of the additive Gaussian noise, Var_disc(clean)/σ²
        (``None``: no Gaussian noise).  Typical: 0.25 (1/4) or 1/64.
    seed : the seed every random draw derives from (same seed → identical output on CPU).
    ctf : :class:`CTFParams` to apply a CTF (per-particle random defocus), or ``None``.
    dose : electron dose in e⁻/Å² for Poisson shot noise (``None``: none).  The expected count
        per pixel is ``dose·pixel_size²·(1 + contrast·clean/c_ref)`` with ``c_ref`` the maximum of
        the density's projection along z; counts are mapped back to the clean image's units.
    paired : also return ``noisy2``, an independent noisy copy (Noise2Noise training).
    noise_scale : ``"image"`` (σ per image: every image has exactly the requested SNR in
        expectation) or ``"stack"`` (one σ for the whole stack from the mean disc variance, as on a
        real detector; the SNR is then met on average).
    noise_sigma : a fixed Gaussian noise σ (in the clean image's units) instead of ``snr``.
    contrast : image contrast used by the Poisson model (see ``dose``).
    device : torch device for the projections (``"cpu"`` is bit-reproducible).
    batch_size : orientations projected at once (also capped by a ~256 MB sampling-grid budget).

    All arrays are held in memory; :func:`simulate_to_files` streams large sets to disk.
    """
    from ..checks import check_seed

    seed = check_seed(seed)
    density, n, box = _prepare(density, n, box, pixel_size, snr, dose, contrast, noise_scale, ctf, noise_sigma)
    params = _params(density, n, box, snr, seed, ctf, dose, paired, noise_scale, contrast, noise_sigma)
    return _chunk(density, 0, n, box, snr, seed, ctf, dose, paired, noise_scale, contrast, device, batch_size,
                  noise_sigma, _c_ref(density, box, dose), params)


def simulation_paths(out_prefix: str | os.PathLike, paired: bool = False, ctf: bool = False) -> dict:
    """The files :func:`write_simulation` writes for ``out_prefix``."""
    p = str(out_prefix)
    paths = {"clean": Path(p + "_clean.mrcs"), "noisy": Path(p + "_noisy.mrcs")}
    if paired:
        paths["noisy2"] = Path(p + "_noisy2.mrcs")
    if ctf:
        paths["projection"] = Path(p + "_clean_noctf.mrcs")
    paths["star"] = Path(p + ".star")
    paths["h5"] = Path(p + ".h5")
    return paths


def simulation_star_blocks(result: SimResult, image_file: str) -> dict:
    """RELION 3.1 STAR blocks (optics, particles, simulation) describing ``result``."""
    return _star_blocks(result.metadata, result.params, image_file)


def _star_blocks(metadata: dict, p: dict, image_file: str) -> dict:
    from ..io.star import StarTable

    n = int(metadata["euler"].shape[0])
    ctf = p.get("ctf") or {}
    optics = StarTable(
        rlnOpticsGroup=np.array([1]), rlnOpticsGroupName=np.array(["opticsGroup1"]),
        rlnImagePixelSize=np.array([float(p["pixel_size"])]), rlnImageSize=np.array([int(p["box"])]),
        rlnImageDimensionality=np.array([2]),
        rlnVoltage=np.array([float(ctf.get("voltage", 300.0))]),
        rlnSphericalAberration=np.array([float(ctf.get("cs", 2.7))]),
        rlnAmplitudeContrast=np.array([float(ctf.get("amplitude_contrast", 0.1))]),
    )
    eul = np.degrees(metadata["euler"])
    parts = StarTable(
        rlnImageName=np.array([f"{i + 1:06d}@{image_file}" for i in range(n)]),
        rlnAngleRot=eul[:, 0], rlnAngleTilt=eul[:, 1], rlnAnglePsi=eul[:, 2],
        rlnOriginXAngst=np.zeros(n), rlnOriginYAngst=np.zeros(n),
    )
    if "defocus_u" in metadata:
        parts["rlnDefocusU"] = metadata["defocus_u"]
        parts["rlnDefocusV"] = metadata["defocus_v"]
        parts["rlnDefocusAngle"] = np.degrees(metadata["defocus_angle"])
        parts["rlnPhaseShift"] = np.full(n, np.degrees(ctf.get("phase_shift", 0.0)))
        parts["rlnCtfBFactor"] = np.full(n, float(ctf.get("bfactor", 0.0)))
    parts["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    sim = {
        "cryoxplainVersion": p["cryoxplain_version"], "cryoxplainSeed": p["seed"],
        "cryoxplainSnr": p["snr"] if p["snr"] is not None else "none",
        "cryoxplainNoiseScale": p["noise_scale"], "cryoxplainDose": p["dose"] if p["dose"] is not None else "none",
        "cryoxplainPixelSize": p["pixel_size"], "cryoxplainBox": p["box"], "cryoxplainSource": p["source"],
        "cryoxplainPaired": int(p["paired"]),
    }
    return {"optics": optics, "particles": parts, "simulation": sim}


def write_simulation(result: SimResult, out_prefix: str | os.PathLike, force: bool = False, *,
                     dtype: str = "float32", inputs: tuple = ()) -> dict:
    """Write ``result`` as ``<prefix>_clean.mrcs``, ``<prefix>_noisy.mrcs`` (``_noisy2.mrcs`` when
    paired, ``_clean_noctf.mrcs`` when a CTF was applied), ``<prefix>.star`` (RELION 3.1: optics +
    particles with rlnAngleRot/Tilt/Psi in degrees, plus a ``data_simulation`` block) and
    ``<prefix>.h5`` (every per-particle array and the parameters).

    All or nothing: every output is checked first (existing files need ``force``) and written to a
    temporary file; they are renamed into place only after all were written.  Returns the paths.
    """
    import contextlib

    from ..io.atomic import atomic_path, check_output
    from ..io.mrc import write_mrc

    paths = simulation_paths(out_prefix, paired=result.noisy2 is not None, ctf=result.projection is not None)
    for p in paths.values():
        check_output(p, force=force, inputs=inputs)
    vs = result.pixel_size
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p, force=force, inputs=inputs)) for k, p in paths.items()}
        for key in ("clean", "noisy", "noisy2", "projection"):
            if key in tmp:
                write_mrc(tmp[key], getattr(result, key), vs, kind="stack", dtype=dtype, force=True)
        _write_metadata(tmp, paths, result.metadata, result.params)
    return paths


def _write_metadata(tmp: dict, paths: dict, metadata: dict, params: dict) -> None:
    from ..io.hdf5 import write_h5
    from ..io.star import write_star

    write_star(tmp["star"], _star_blocks(metadata, params, paths["noisy"].name), force=True)
    files = {k: p.name for k, p in paths.items()}
    write_h5(tmp["h5"], {f"particles/{k}": v for k, v in metadata.items()}, dict(params, files=files), force=True)


def simulate_to_files(density: Density | str | os.PathLike, n: int, out_prefix: str | os.PathLike,
                      box: int | None = None, pixel_size: float | None = None, snr: float | None = 0.25,
                      seed: int = 0, ctf: CTFParams | None = None, dose: float | None = None,
                      paired: bool = False, *, noise_scale: str = "image", noise_sigma: float | None = None,
                      contrast: float = 0.1, device: str = "cpu", batch_size: int = 16, chunk: int = 1024,
                      dtype: str = "float32", force: bool = False, inputs: tuple = (),
                      progress=None) -> tuple[dict, dict, dict]:
    """Simulate like :func:`simulate_particles` but stream the images to disk ``chunk`` particles
    at a time, so memory stays bounded for any ``n``.  Writes the same files as
    :func:`write_simulation` (all or nothing) with identical contents to
    ``write_simulation(simulate_particles(...))``.

    With ``noise_scale="stack"`` the clean images are computed twice (a first pass measures the
    stack's mean disc variance).  ``progress`` is an optional callable ``progress(done, n)``.
    Returns ``(paths, metadata, params)`` (per-particle metadata arrays, settings).
    """
    import contextlib

    from ..io.atomic import atomic_path, check_output
    from ..io.mrc import StackWriter

    from ..checks import check_seed

    seed = check_seed(seed)
    density, n, box = _prepare(density, n, box, pixel_size, snr, dose, contrast, noise_scale, ctf, noise_sigma)
    if int(chunk) < 1:
        raise ParameterError(f"chunk must be ≥ 1, got {chunk}")
    chunk = int(chunk)
    params = _params(density, n, box, snr, seed, ctf, dose, paired, noise_scale, contrast, noise_sigma)
    paths = simulation_paths(out_prefix, paired=paired, ctf=ctf is not None)
    for p in paths.values():
        check_output(p, force=force, inputs=inputs)
    c_ref = _c_ref(density, box, dose)
    sigma = noise_sigma
    if sigma is None and snr is not None and noise_scale == "stack":
        var = np.concatenate([
            _disc_var(_clean_images(density, s, min(chunk, n - s), box, seed, ctf, device, batch_size)[0], box, s)
            for s in range(0, n, chunk)])
        sigma = math.sqrt(var.mean() / snr)
    parts: list[dict] = []
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(p, force=force, inputs=inputs)) for k, p in paths.items()}
        keys = [k for k in ("clean", "noisy", "noisy2", "projection") if k in tmp]
        writers = {k: stack.enter_context(StackWriter(tmp[k], (n, box, box), density.pixel_size, kind="stack",
                                                       dtype=dtype, force=True)) for k in keys}
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            res = _chunk(density, s, m, box, snr, seed, ctf, dose, paired, noise_scale, contrast, device,
                         batch_size, sigma, c_ref, params)
            for k, w in writers.items():
                w.write(s, getattr(res, k))
            parts.append(res.metadata)
            if progress is not None:
                progress(s + m, n)
        metadata = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        _write_metadata(tmp, paths, metadata, params)
    return paths, metadata, params
