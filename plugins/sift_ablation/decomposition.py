"""Feature cells and the linear decoder ``D(g) = c + Z̄·g`` (spec ``sift_ablation.md`` §6).

Per ablatable band l every pixel voxel ``(x, y, σ̄_l)`` goes to its nearest keypoint in
``d_η² = ‖Δr‖² + η²Δσ²`` (scale-space Voronoi, ties → lowest index); the cell indicators are
smoothed with the band's own Gaussian (Eq. 4.27), soft-truncated at ``sparsity`` (Eq. 4.37) and
renormalised by their mass with a guard (Eq. 4.39).  Pre-summing over bands gives the feature
images ``Z̄_i = Σ_l χ̃^{s,1}_{i,l} ⊙ T_l``; the fixed bands sum to ``c``.  So D(1) = x and
D(0) = c.  The footprints ``F_i`` (the same cells weighted by log band width) render feature
values as the "Voronoi" heatmap (§8.2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.imaging.filters import gaussian_blur_exact

from .keypoints import DetectConfig, ablatable_bands, detect_keypoints, estimate_noise_std
from .scale_space import bands, representative_sigmas, sigma_edges

__all__ = ["BasisConfig", "PYRAMIDS", "SiftDecoder", "build_decoder", "decode_batch", "level_factor", "pad_decoders"]

#: resolution schemes of the feature cells: one full-resolution level, or the thesis's Table 4.1
PYRAMIDS = ("none", "thesis")
#: Table 4.1 (reconstructed, spec §4.4): lower band edge < 4.5 px → full resolution, < 9 px → half, else quarter
PYRAMID_BOUNDARIES = (4.5, 9.0)


def level_factor(lower_edge: float, pyramid: str = "thesis") -> int:
    """Down-sampling factor f_l ∈ {1, 2, 4} of a band by its lower σ edge (spec §4.4)."""
    if pyramid == "none":
        return 1
    a, b = PYRAMID_BOUNDARIES
    return 1 if lower_edge < a else (2 if lower_edge < b else 4)


def _resize(a: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(..., h, w)`` to ``size`` (``align_corners=False``, no antialias: the
    thesis's "standard resizing routine", spec §4.4)."""
    if tuple(a.shape[-2:]) == tuple(size):
        return a
    lead = a.shape[:-2]
    out = torch.nn.functional.interpolate(a.reshape(-1, 1, *a.shape[-2:]), size=size, mode="bilinear",
                                          align_corners=False, antialias=False)
    return out.reshape(*lead, *size)


@dataclass(frozen=True)
class BasisConfig:
    """Everything that defines one image's feature basis (§9.1 defaults)."""

    sigma_min: float = 1.125
    octave_steps: int = 4
    sigma_max: float = 0.0
    keep_below: float = 1.6
    keep_above: float = 0.0
    noise_std: float | None = None    # None = auto (§5.3)
    contrast: float = 4.0
    contrast_floor: float = 0.03
    edge_ratio: float = 10.0
    max_keypoints: int = 256
    eta: float = 4.0
    cells: str = "smooth"             # smooth | hard
    sparsity: float = 0.05
    mass_guard: float = 1e-3
    border: str = "reflect"           # reflect (Neumann, spec default) | periodic
    chunk: int = 64                   # cells smoothed per FFT batch
    pyramid: str = "none"             # none (exact, one level) | thesis (Table 4.1 levels, §4.4)
    pyramid_fix: bool = True          # thesis pyramid: put x − D(1) back into the full-resolution level

    def __post_init__(self):
        if self.cells not in ("smooth", "hard"):
            raise ParameterError(f"cells must be smooth or hard, got {self.cells!r}")
        if not 0 <= self.sparsity < 0.5:
            raise ParameterError(f"sparsity must be in [0, 0.5), got {self.sparsity}")
        if not self.mass_guard > 0:
            raise ParameterError(f"mass_guard must be > 0, got {self.mass_guard}")
        if not self.eta > 0:
            raise ParameterError(f"eta must be > 0, got {self.eta}")
        if 0 < self.keep_above <= self.keep_below:
            raise ParameterError(f"keep_above ({self.keep_above}) must be 0 (off) or > keep_below ({self.keep_below})")
        if self.pyramid not in PYRAMIDS:
            raise ParameterError(f"pyramid must be one of {', '.join(PYRAMIDS)}, got {self.pyramid!r}")

    def detect_config(self) -> DetectConfig:
        return DetectConfig(contrast=self.contrast, contrast_floor=self.contrast_floor, edge_ratio=self.edge_ratio,
                            max_keypoints=self.max_keypoints, keep_below=self.keep_below,
                            keep_above=self.keep_above, octave_steps=self.octave_steps)


@dataclass
class SiftDecoder:
    """One image's feature basis.  ``Z (K, H, W)`` feature images, ``c (H, W)`` fixed part,
    ``footprints (K, H, W)`` (Σ_i F_i = 1), ``keypoints (K_detected, 6)``."""

    Z: torch.Tensor
    c: torch.Tensor
    footprints: torch.Tensor
    keypoints: np.ndarray
    edges: np.ndarray
    sbar: np.ndarray
    ablatable: np.ndarray
    noise_std: float
    min_mass: float
    nonzero_fraction: float
    reconstruction_error: float
    too_few_keypoints: bool
    extra: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.Z.shape[0])

    def decode(self, g: torch.Tensor) -> torch.Tensor:
        """``D(g) = c + Σ_i g_i Z̄_i`` for gains ``g`` ``(..., K)`` → ``(..., H, W)`` (differentiable)."""
        K, H, W = self.Z.shape
        g = g.to(self.Z.dtype)
        return self.c + (g @ self.Z.reshape(K, H * W)).reshape(*g.shape[:-1], H, W)

    @property
    def energy(self) -> torch.Tensor:
        """W_i = ‖Z̄_i‖₂ (Eq. 4.45), ``(K,)``."""
        return self.Z.flatten(1).norm(dim=1)

    def to(self, dtype=None, device=None) -> "SiftDecoder":
        kw = {"dtype": dtype, "device": device}
        return SiftDecoder(self.Z.to(**kw), self.c.to(**kw), self.footprints.to(**kw), self.keypoints, self.edges,
                           self.sbar, self.ablatable, self.noise_std, self.min_mass, self.nonzero_fraction,
                           self.reconstruction_error, self.too_few_keypoints, dict(self.extra))


def _labels(H: int, W: int, sigma_bar: float, kp: torch.Tensor, eta: float, torus: bool,
            grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Nearest keypoint (d_η) of every pixel voxel of a band at σ̄; ``(h, w)`` long, ties → lowest index.

    ``grid = (h, w)``: the voxels of a down-sampled level, whose centres lie at
    ``x_full = (x_low + 0.5)·W/w − 0.5`` (spec §4.4, the mapping of a bilinear resize); distances
    stay in full-resolution pixels.  Default: the full grid."""
    dt = kp.dtype
    h, w = (H, W) if grid is None else grid
    ys = (torch.arange(h, dtype=dt) + 0.5) * (H / h) - 0.5
    xs = (torch.arange(w, dtype=dt) + 0.5) * (W / w) - 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    dx = xx.reshape(-1, 1) - kp[None, :, 0]
    dy = yy.reshape(-1, 1) - kp[None, :, 1]
    if torus:
        dx = torch.remainder(dx + W / 2, W) - W / 2
        dy = torch.remainder(dy + H / 2, H) - H / 2
    ds = eta * (sigma_bar - kp[None, :, 2])
    d2 = dx * dx + dy * dy + ds * ds
    return d2.argmin(dim=1).reshape(h, w)


def build_decoder(x, cfg: BasisConfig = BasisConfig(), keypoints: np.ndarray | None = None) -> SiftDecoder:
    """Build the feature basis of one image ``x`` ``(H, W)`` in float64 (§6.8).

    ``keypoints`` ``(K, ≥3)`` rows ``(x, y, σ, …)`` replace the detector (tests inject them).
    With fewer than 2 keypoints one synthetic feature owns all ablatable bands:
    ``D(g) = c + g·(x − c)`` and ``too_few_keypoints`` is set.
    """
    xt = torch.as_tensor(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x),
                         dtype=torch.float64)
    if xt.ndim != 2:
        raise ParameterError(f"build_decoder takes one (H, W) image, got shape {tuple(xt.shape)}")
    H, W = xt.shape
    edges = sigma_edges(H, W, cfg.sigma_min, cfg.octave_steps, cfg.sigma_max)
    T = bands(xt, edges, border=cfg.border)
    sbar = representative_sigmas(edges)
    abl = ablatable_bands(edges, cfg.keep_below, cfg.keep_above)
    fixed = torch.as_tensor(~abl)
    c = T[fixed].sum(0) if bool(fixed.any()) else torch.zeros_like(xt)
    if cfg.noise_std is None:
        d = torch.zeros(H, W, dtype=torch.float64)
        d[H // 2, W // 2] = 1.0
        k0 = float(bands(d, edges, border=cfg.border)[0].norm())
        s_n = estimate_noise_std(xt.numpy(), T[0].numpy(), k0)
    else:
        s_n = float(cfg.noise_std)
    if keypoints is None:
        kp = detect_keypoints(T, edges, s_n, cfg.detect_config(), border=cfg.border)
    else:
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[1] < 3:
            raise ParameterError("keypoints must be (K, ≥3) rows (x, y, sigma, ...)")
        if kp.shape[1] < 6:
            kp = np.concatenate([kp, np.full((kp.shape[0], 6 - kp.shape[1]), np.nan)], axis=1)
    K = kp.shape[0]
    abl_idx = np.nonzero(abl)[0]
    min_mass, nnz = 1.0, 0
    if K < 2 or abl_idx.size == 0:
        Z = (xt - c)[None].clone()
        F = torch.ones(1, H, W, dtype=torch.float64)
        too_few = True
        nnz = int((Z != 0).sum())
        level_elements = {1: int(Z.numel())}
    else:
        too_few = False
        Z = torch.zeros(K, H, W, dtype=torch.float64)
        F = torch.zeros(K, H, W, dtype=torch.float64)
        kpt = torch.as_tensor(kp[:, :3], dtype=torch.float64)
        wlog = np.log(np.concatenate([edges[1:], [np.inf]]) / np.where(edges > 0, edges, np.nan))
        wlog[0] = wlog[-1] = math.log(2.0) / cfg.octave_steps          # open bands: one grid step
        wsum = 0.0
        levels = {}  # factor -> (Z level (K, h, w), F level (K, h, w))
        last_full = None  # normalised cells of the last full-resolution band (pyramid_fix)
        for l in abl_idx:
            f = level_factor(float(edges[l]), cfg.pyramid)
            size = (max(1, H // f), max(1, W // f))
            Tl = _resize(T[l], size)
            lab = _labels(H, W, float(sbar[l]), kpt, cfg.eta, cfg.border == "periodic", grid=size)
            cells = torch.unique(lab)
            parts = []
            for s in range(0, cells.numel(), cfg.chunk):
                ch = cells[s:s + cfg.chunk]
                Y = (lab[None] == ch[:, None, None]).to(torch.float64)
                if cfg.cells == "smooth":
                    Y = gaussian_blur_exact(Y, float(sbar[l]) / f, border=cfg.border)
                    if cfg.sparsity > 0:
                        Y = torch.where(Y > cfg.sparsity, (Y - cfg.sparsity) / (1 - cfg.sparsity), torch.zeros_like(Y))
                    else:
                        Y = Y.clamp_min(0.0)
                parts.append(Y)
            Ys = torch.cat(parts)
            m = Ys.sum(0)
            min_mass = min(min_mass, float(m.min()))
            Yn = Ys / m.clamp_min(cfg.mass_guard)
            if f not in levels:
                levels[f] = (torch.zeros(K, *size, dtype=torch.float64), torch.zeros(K, *size, dtype=torch.float64))
            Zf, Ff = levels[f]
            Zf[cells] += Yn * Tl
            Ff[cells] += float(wlog[l]) * Yn
            wsum += float(wlog[l])
            if f == 1:
                last_full = (cells, Yn)
        for f, (Zf, Ff) in levels.items():  # D(g) = Σ_ρ up_ρ(Z̄^ρ·g) = (Σ_ρ up_ρ Z̄^ρ)·g (Eq. 4.41)
            Z += _resize(Zf, (H, W))
            F += _resize(Ff, (H, W))
        F /= wsum
        level_elements = {int(f): int(Zf.numel()) for f, (Zf, _) in levels.items()}
        if cfg.pyramid != "none" and cfg.pyramid_fix:
            # put the resampling loss E = x − D(1) back, weighted by the cells of the last
            # full-resolution band (or the finest ablatable band, up-sampled, if none is full-res)
            E = xt - c - Z.sum(0)
            if last_full is None:
                l0 = int(abl_idx[0])
                lab = _labels(H, W, float(sbar[l0]), kpt, cfg.eta, cfg.border == "periodic")
                cells = torch.unique(lab)
                Y = (lab[None] == cells[:, None, None]).to(torch.float64)
                if cfg.cells == "smooth":
                    Y = gaussian_blur_exact(Y, float(sbar[l0]), border=cfg.border)
                last_full = (cells, Y / Y.sum(0).clamp_min(cfg.mass_guard))
            cells, Yn = last_full
            Z[cells] += Yn * E
        nnz = int((Z != 0).sum())
    rec = Z.sum(0) + c
    scale = float(xt.abs().max())
    err = float((rec - xt).abs().max()) / scale if scale > 0 else float((rec - xt).abs().max())
    return SiftDecoder(Z=Z, c=c, footprints=F, keypoints=kp, edges=edges, sbar=sbar, ablatable=abl, noise_std=s_n,
                       min_mass=min_mass, nonzero_fraction=nnz / Z.numel(), reconstruction_error=err,
                       too_few_keypoints=too_few,
                       extra={"bands": None, "pyramid": cfg.pyramid,
                              "level_elements": level_elements})


def pad_decoders(decs: list[SiftDecoder], dtype=torch.float32, device=None):
    """Stack a batch's decoders: ``Z (B, K_max, H, W)`` (zero padding), ``c (B, H, W)``,
    ``valid (B, K_max)`` bool."""
    kmax = max(d.n_features for d in decs)
    B = len(decs)
    H, W = decs[0].c.shape
    Z = torch.zeros(B, kmax, H, W, dtype=dtype, device=device)
    valid = torch.zeros(B, kmax, dtype=torch.bool, device=device)
    for b, d in enumerate(decs):
        Z[b, :d.n_features] = d.Z.to(dtype=dtype, device=device)
        valid[b, :d.n_features] = True
    c = torch.stack([d.c.to(dtype=dtype, device=device) for d in decs])
    return Z, c, valid


def decode_batch(Z: torch.Tensor, c: torch.Tensor, g: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Decode rows of gains ``g`` ``(N, K_max)`` of images ``idx`` ``(N,)`` with the padded batch
    ``Z (B, K_max, H, W)``, ``c (B, H, W)`` → ``(N, 1, H, W)``; rows are grouped by image so no
    ``N·K·H·W`` gather is formed.  Differentiable in ``g``."""
    B, K, H, W = Z.shape
    out = torch.empty(g.shape[0], H * W, dtype=Z.dtype, device=Z.device)
    pieces = []
    for b in torch.unique(idx).tolist():
        rows = torch.nonzero(idx == b).flatten()
        pieces.append((rows, c[b].reshape(1, -1) + g[rows].to(Z.dtype) @ Z[b].reshape(K, -1)))
    out = torch.zeros(g.shape[0], H * W, dtype=Z.dtype, device=Z.device)
    for rows, val in pieces:
        out = out.index_copy(0, rows, val)
    return out.reshape(-1, 1, H, W)
