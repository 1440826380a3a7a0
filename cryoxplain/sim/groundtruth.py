"""Ground-truth designs for evaluating explanations (spec saliency_evaluation.md §6), reproducible
from their seeds.

* :func:`planted_disc` — P1: a 64² image with a bright planted blob; GT = the disc of radius 5 at
  (x, y) = (20, 40) (81 px) and the linear model ``f = ⟨1_G/|G|, x⟩``;
* :func:`conformation_pair` — D1: phantom A and A + one Gaussian domain (B); paired test particles
  (same orientation and noise) so ``Δ = clean_B − clean_A`` is the exact projection of the domain;
* :func:`shortcut_pair` — D2: the classes differ only by an image-space marker at pixel (10, 10);
* :func:`pixel_target_design` — D3a: a Gaussian-blur "denoiser" with a known point-spread support;
* :func:`rotation_pairs` — D4: grid pairs (x, rot90(x, k)) and clean off-grid pairs re-simulated
  with the in-plane rotation composed into each particle's orientation.

A design is a :class:`GTDesign`; :func:`write_design` stores it as HDF5 (:func:`cryoxplain.io.hdf5.write_h5`).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.masks import disc_mask

__all__ = ["GTDesign", "planted_disc", "conformation_pair", "shortcut_pair", "pixel_target_design",
           "rotation_pairs", "write_design", "read_design", "LinearModel", "BlurModel", "DESIGNS",
           "D1_NOISE_SIGMA", "D1_DOMAIN"]

D1_NOISE_SIGMA = 1.42073
D1_DOMAIN = (0.28 * 64 * 0.8, 0.28 * 64 * -0.5, 0.28 * 64 * 0.33)  # Å from the centre (x, y, z), box 64


@dataclass
class GTDesign:
    name: str
    inputs: np.ndarray  # (N, H, W) the images explained (noisy)
    gt: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,) int
    clean: np.ndarray | None = None
    gt_weight: np.ndarray | None = None
    particle: np.ndarray | None = None
    rotations: np.ndarray | None = None
    diff: np.ndarray | None = None  # (N,) bool: the centre map misses at τ = 4
    train: dict = field(default_factory=dict)  # optional training stacks {"A": (n,H,W), "B": ...}
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def datasets(self) -> dict:
        d = {k: getattr(self, k) for k in ("inputs", "gt", "labels", "clean", "gt_weight", "particle", "rotations", "diff")}
        d["gt"] = self.gt.astype(np.uint8)
        for k in ("particle", "diff"):
            if d[k] is not None:
                d[k] = d[k].astype(np.uint8)
        for k, v in self.train.items():
            d[f"train_{k}"] = v
        return d


def _diff_subset(gt: np.ndarray, tolerance: float = 4) -> np.ndarray:
    from ..explain.evaluation import pointing_game, reference_maps

    c = reference_maps(gt.astype(np.float32), kinds=("centre",))["centre"]
    return ~pointing_game(c, gt, tolerance).hits


class LinearModel(torch.nn.Module):
    """``f(x) = ⟨w, x⟩`` as a one-logit "classifier" (B, 1) (P1, P2, P3)."""

    task = "classify"

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(np.asarray(w, np.float64)).float())
        self.dummy = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x):
        return (x[:, 0] * self.w.to(x.dtype)).sum((-2, -1))[:, None] + 0 * self.dummy


class BlurModel(torch.nn.Module):
    """``y = γ_σ ⋆ x`` (reflect borders, :func:`cryoxplain.imaging.filters.gaussian_blur`): D3a."""

    task = "denoise"

    def __init__(self, sigma: float = 1.5):
        super().__init__()
        self.sigma = float(sigma)
        self.dummy = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    @property
    def receptive_radius(self) -> int:
        from ..imaging.filters import gaussian_radius

        return gaussian_radius(self.sigma)

    def forward(self, x):
        from ..imaging.filters import gaussian_blur

        return gaussian_blur(x, self.sigma) + 0 * self.dummy


def planted_disc(size: int = 64) -> GTDesign:
    """P1 (spec §6.5): x = 0.5·(disc r = 24 at the centre, smoothed σ = 1) + exp(−‖r − (20, 40)‖²/18);
    GT = disc of radius 5 at (x, y) = (20, 40).  ``params["w"]`` is the linear model's weight 1_G/|G|."""
    from ..imaging.filters import gaussian_blur
    from ..imaging.masks import radial_distance

    gt = disc_mask((size, size), 5.0, center=(40, 20)) > 0
    base = np.asarray(gaussian_blur(disc_mask((size, size), 24.0).astype(np.float64), 1.0))
    x = 0.5 * base + np.exp(-radial_distance((size, size), center=(40, 20)) ** 2 / 18.0)
    w = gt / gt.sum()
    return GTDesign("P1", x[None].astype(np.float32), gt[None], np.zeros(1, int), clean=x[None].astype(np.float32),
                    params={"w": w, "gt_centre_xy": (20, 40), "gt_radius": 5})


def _domain_density(A, weight=150.0, sigma=3.2):
    from .density import Density, gaussian_density

    box = A.size
    p = np.asarray(D1_DOMAIN) * box / 64.0
    return Density(A.data + gaussian_density(p[None], np.array([weight]), A.pixel_size, sigma * box / 64, box),
                   A.pixel_size, source="phantom+domain")


def conformation_pair(n_test: int = 300, n_train: int = 0, n_val: int = 0, box: int = 64,
                      noise_sigma: float = D1_NOISE_SIGMA, seed: int = 3, train_seeds=(11, 12), val_seed: int = 4,
                      phantom_seed: int = 0) -> GTDesign:
    """D1 (spec §6.1): B test particles (label 1) with GT = {|Δ| ≥ 0.1 max|Δ|}, Δ = clean_B − clean_A
    (paired: same ``seed`` → same orientation and noise); soft GT |Δ|; particle = clean_B ≥ 0.1 max,
    dilated 1 px; ``diff`` = the centre map misses at τ = 4.  ``n_train``/``n_val`` > 0 also simulate
    the training stacks (seeds 11/12) and validation stacks (seed 4) of both classes."""
    from scipy.ndimage import binary_dilation

    from .density import phantom
    from .simulate import simulate_particles

    A = phantom(box, pixel_size=1.0, seed=phantom_seed)
    B = _domain_density(A)
    kw = dict(snr=None, noise_sigma=noise_sigma)
    ra = simulate_particles(A, n_test, seed=seed, **kw)
    rb = simulate_particles(B, n_test, seed=seed, **kw)
    d = rb.clean.astype(np.float64) - ra.clean
    mx = np.abs(d).reshape(n_test, -1).max(1)[:, None, None]
    gt = np.abs(d) >= 0.1 * mx
    cmax = rb.clean.reshape(n_test, -1).max(1)[:, None, None]
    part = np.stack([binary_dilation(c >= 0.1 * m) for c, m in zip(rb.clean, cmax)])
    train = {}
    if n_train:
        train["A"] = simulate_particles(A, n_train, seed=train_seeds[0], **kw).noisy
        train["B"] = simulate_particles(B, n_train, seed=train_seeds[1], **kw).noisy
    if n_val:
        train["val_A"] = simulate_particles(A, n_val, seed=val_seed, **kw).noisy
        train["val_B"] = simulate_particles(B, n_val, seed=val_seed, **kw).noisy
    params = {"design": "D1", "box": box, "noise_sigma": noise_sigma, "seed": seed, "n_test": n_test,
              "train_seeds": list(train_seeds), "val_seed": val_seed, "phantom_seed": phantom_seed,
              "domain_A": list(D1_DOMAIN), "domain_weight": 150.0, "domain_sigma": 3.2,
              "snr_A": float(np.mean(ra.metadata["snr_measured"])), "snr_B": float(np.mean(rb.metadata["snr_measured"]))}
    return GTDesign("D1", rb.noisy, gt, np.ones(n_test, int), clean=rb.clean, gt_weight=np.abs(d).astype(np.float32),
                    particle=part, rotations=rb.metadata["rotation"], diff=_diff_subset(gt), train=train,
                    params=params)


def _marker(box: int, amplitude: float, xy=(10, 10), sigma: float = 1.5) -> np.ndarray:
    from ..imaging.masks import radial_distance

    return amplitude * np.exp(-radial_distance((box, box), center=(xy[1], xy[0])) ** 2 / (2 * sigma ** 2))


def shortcut_pair(n_test: int = 300, n_train: int = 0, box: int = 64, noise_sigma: float = D1_NOISE_SIGMA,
                  seed: int = 3, train_seeds=(11, 12), marker_xy=(10, 10)) -> GTDesign:
    """D2 (spec §6.2): B = the same phantom particles plus a Gaussian marker (σ 1.5 px, peak 2·noise σ)
    at pixel ``marker_xy``; GT = the disc of radius 3 about it.  Train with ``augment="none"``."""
    from .density import phantom
    from .simulate import simulate_particles

    A = phantom(box, pixel_size=1.0, seed=0)
    mk = _marker(box, 2.0 * noise_sigma, marker_xy).astype(np.float32)
    rb = simulate_particles(A, n_test, seed=seed, snr=None, noise_sigma=noise_sigma)
    gt = np.broadcast_to(disc_mask((box, box), 3.0, center=(marker_xy[1], marker_xy[0])) > 0, rb.noisy.shape).copy()
    train = {}
    if n_train:
        train["A"] = simulate_particles(A, n_train, seed=train_seeds[0], snr=None, noise_sigma=noise_sigma).noisy
        train["B"] = simulate_particles(A, n_train, seed=train_seeds[1], snr=None, noise_sigma=noise_sigma).noisy + mk
    return GTDesign("D2", rb.noisy + mk, gt, np.ones(n_test, int), clean=rb.clean + mk,
                    gt_weight=np.broadcast_to(mk, rb.noisy.shape).copy(), rotations=rb.metadata["rotation"],
                    diff=_diff_subset(gt), train=train,
                    params={"design": "D2", "box": box, "noise_sigma": noise_sigma, "seed": seed,
                            "marker_xy": list(marker_xy), "marker_sigma": 1.5, "marker_peak": 2.0 * noise_sigma})


def pixel_target_design(n: int = 1, box: int = 64, sigma: float = 1.5, pixel=(32, 20), seed: int = 3) -> GTDesign:
    """D3a (spec §6.3): A test particles of D1, the analytic denoiser :class:`BlurModel` (σ_d = 1.5) and
    a pixel target ``pixel`` (x, y); ``gt`` = the exact PSF support (kernel taps), ``particle`` the
    particle mask; ``params["model"]`` is the model."""
    from scipy.ndimage import binary_dilation

    from ..imaging.filters import gaussian_radius
    from .density import phantom
    from .simulate import simulate_particles

    A = phantom(box, pixel_size=1.0, seed=0)
    r = simulate_particles(A, n, seed=seed, snr=None, noise_sigma=D1_NOISE_SIGMA)
    rad = gaussian_radius(sigma)
    from ..explain.evaluation import square_support

    sup = np.broadcast_to(square_support((box, box), pixel, rad), r.noisy.shape).copy()
    cmax = r.clean.reshape(n, -1).max(1)[:, None, None]
    part = np.stack([binary_dilation(c >= 0.1 * m) for c, m in zip(r.clean, cmax)])
    return GTDesign("D3a", r.noisy, sup, np.zeros(n, int), clean=r.clean, particle=part,
                    rotations=r.metadata["rotation"],
                    params={"design": "D3a", "sigma": sigma, "pixel": list(pixel), "support_radius": rad,
                            "model": BlurModel(sigma), "target": f"pixel:{pixel[0]},{pixel[1]}"})


def rotation_pairs(density=None, n: int = 8, angles_deg=(30.0,), box: int = 64, seed: int = 3) -> dict:
    """D4 (spec §6.4): ``{"images": (n,H,W) clean, "grid": {k: rot90(images, k)}, "offgrid": {deg: (n,H,W)}}``.

    Off-grid members are re-simulated (no noise) at the orientation composed with the in-plane rotation
    ``rotation_z(θ)``, so both members are exact projections, without interpolation.
    """
    from ..geometry.rotate import rot90
    from .density import phantom
    from .project import project
    from .so3 import rotation_z
    from .simulate import simulate_particles

    dens = phantom(box, pixel_size=1.0, seed=0) if density is None else density
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # clean pairs on purpose
        r = simulate_particles(dens, n, seed=seed, snr=None)
    rots = r.metadata["rotation"]
    out = {"images": r.clean, "grid": {k: rot90(r.clean, k) for k in (1, 2, 3)}, "offgrid": {},
           "rotations": rots}
    for deg in angles_deg:
        # the image turns by +θ (geometry.rotate's sense) when the orientation is composed with Rz(−θ)
        rz = rotation_z(-math.radians(float(deg)))
        out["offgrid"][float(deg)] = project(dens.data, np.einsum("ij,njk->nik", rz, rots), box).astype(np.float32)
    return out


DESIGNS = {"p1": planted_disc, "d1": conformation_pair, "d2": shortcut_pair, "d3a": pixel_target_design}


def write_design(design: GTDesign, path: str | os.PathLike, force: bool = False):
    """Write a design (stacks, GT masks, soft GT, rotations, parameters) to HDF5 atomically."""
    from ..io.hdf5 import write_h5

    params = {k: v for k, v in design.params.items() if not isinstance(v, (torch.nn.Module, np.ndarray))}
    ds = design.datasets()
    ds.update({f"param_{k}": v for k, v in design.params.items() if isinstance(v, np.ndarray)})
    return write_h5(path, ds, {"design": design.name, "params": params}, force=force)


def read_design(path: str | os.PathLike) -> GTDesign:
    from ..io.hdf5 import read_h5

    ds, attrs = read_h5(path)
    if "gt" not in ds or "inputs" not in ds:
        raise ParameterError(f"{path} is not a ground-truth design file (needs datasets inputs and gt)")
    train = {k[6:]: v for k, v in ds.items() if k.startswith("train_")}
    params = dict(attrs.get("params", {}))
    params.update({k[6:]: v for k, v in ds.items() if k.startswith("param_")})
    if ds["gt"].shape != ds["inputs"].shape:
        raise ShapeError(f"{path}: the ground truth is {ds['gt'].shape} but the images are {ds['inputs'].shape}")
    opt = lambda k, t=None: None if k not in ds else (ds[k].astype(t) if t else ds[k])  # noqa: E731
    return GTDesign(attrs.get("design", "file"), ds["inputs"], ds["gt"].astype(bool), ds["labels"],
                    clean=opt("clean"), gt_weight=opt("gt_weight"), particle=opt("particle", bool),
                    rotations=opt("rotations"), diff=opt("diff", bool), train=train, params=params)
