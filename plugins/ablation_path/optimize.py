"""Projected gradient ascent over ablation paths (thesis Part II, Algorithm 2).

``optimise_paths`` works on a batch of images at once: every image has its own path tensor
``Φ[b] (n, h_m, w_m)``; one batched forward/backward evaluates all time samples of all active
images (in chunks of ``eval_batch`` images).  Images that have reached the stopping rule are
frozen while the others continue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as tnf

from .projection import path_saturation, pinch, repair, saturate, t_grid

OBJECTIVES = ("retain", "dissipate", "contrastive", "straddle")


@dataclass
class PathConfig:
    """Hyper-parameters of the optimisation (defaults: spec §10 / thesis §2.8)."""

    objective: str = "contrastive"
    n_t: int = 14                     # interior time samples (Eq. 2.30)
    mask_size: int = 64               # mask grid (square); capped at the image size
    blur_sigma: float = 6.0           # σ_reguBlur in image pixels (Eq. 2.24)
    regularise: str = "state"         # blur the state (thesis) or only the update
    saturation: float = 0.8           # ζ_sat (Eq. 2.26); 0 = off
    pinch: float = 0.1                # ζ_pinch (Eq. 2.29), straddle only
    step_sup: float = 0.5             # L∞ norm of each step
    target_saturation: float = 0.8    # stopping rule (Eq. 2.31)
    min_iters: int = 6
    max_iters: int = 100
    monotonise: str = "exact"         # Algorithm 1 ("exact") or cummax/cummin ("fast")
    eval_batch: int = 64              # images per forward/backward pass
    border: str = "mirror"            # boundary of the regulariser blur: mirror (as always) or periodic

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")


@dataclass
class PathResult:
    """Outcome for a batch of B images (numpy arrays, first axis = image)."""

    phi: np.ndarray                    # (B, n, h_m, w_m) interior samples of the (main / up) path
    phi_down: np.ndarray | None        # (B, n, h_m, w_m) the φ↓ path (straddle only)
    objective_trace: np.ndarray        # (B, max_iters+1) objective before each step, NaN-padded
    saturation: np.ndarray             # (B,) final Eq. 2.31
    iterations: np.ndarray             # (B,) gradient steps taken
    converged: np.ndarray              # (B,) saturation rule met (else: stopped at the cap)
    extra: dict = field(default_factory=dict)


def upsample(phi: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(..., h_m, w_m) -> (..., H, W)`` bilinear (align_corners=False); identity when equal."""
    if tuple(phi.shape[-2:]) == tuple(size):
        return phi
    lead = phi.shape[:-2]
    out = tnf.interpolate(phi.reshape(-1, 1, *phi.shape[-2:]), size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def blur2d(a: torch.Tensor, sigma: float, border: str = "mirror") -> torch.Tensor:
    """Gaussian regularisation of the last two axes (Eq. 2.24): :func:`cryoxplain.imaging.filters.gaussian_blur`
    with ``border="mirror"`` (torch's ``reflect`` pad, the border this optimiser always used) or
    ``"periodic"`` (commutes with the package's quarter turn about N//2)."""
    from cryoxplain.imaging.filters import gaussian_blur

    return a if sigma <= 0 else gaussian_blur(a, sigma, border=border)


def interpolate_images(x_tg: torch.Tensor, x_bl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked interpolation (Eq. 1.12/2.2): ``x_Tg + φ ⊙ (x_BL − x_Tg)`` (mask at image size)."""
    return x_tg + mask * (x_bl - x_tg)


def path_values_and_grads(score: Callable, x_tg: torch.Tensor, x_bl: torch.Tensor, phi: torch.Tensor,
                          eval_batch: int = 64, need_grad: bool = True):
    """Evaluate ``F`` at every mask of the paths and (optionally) ``∂F(x(φ_j))/∂φ_j``.

    ``score(X, idx) -> (N,)`` is the explained scalar, ``idx`` the image index of each row.
    ``x_tg, x_bl`` are ``(b, C, H, W)``; ``phi`` ``(b, n, h_m, w_m)``.  Returns values ``(b, n)``
    and gradients ``(b, n, h_m, w_m)`` (autograd through the bilinear up-sampling: this is
    Lemma 4's ``(x_BL − x_Tg) ⊙ ∇F``, channel-summed, pulled back to the mask grid).
    """
    b, n = phi.shape[:2]
    size = tuple(x_tg.shape[-2:])
    flat = phi.reshape(b * n, *phi.shape[2:])
    img_idx = torch.arange(b, device=phi.device).repeat_interleave(n)
    vals, grads = [], []
    for s in range(0, b * n, eval_batch):
        sl = slice(s, min(s + eval_batch, b * n))
        ii = img_idx[sl]
        m = flat[sl].detach().to(x_tg.dtype)
        if need_grad:
            m.requires_grad_(True)
        with torch.set_grad_enabled(need_grad):
            x = interpolate_images(x_tg[ii], x_bl[ii], upsample(m, size).unsqueeze(1))
            v = score(x, ii)
            if need_grad:
                (g,) = torch.autograd.grad(v.sum(), m)
                grads.append(g.detach().to(phi.dtype))
        vals.append(v.detach().to(torch.float64))
    vals = torch.cat(vals).reshape(b, n)
    return vals, (torch.cat(grads).reshape(phi.shape) if need_grad else None)


def _objective_and_grad(cfg: PathConfig, score, x_tg, x_bl, phi, phi_down, need_grad=True):
    """Objective value per image and the ascent direction(s) for the chosen objective."""
    n = phi.shape[1]
    obj = cfg.objective
    v, g = path_values_and_grads(score, x_tg, x_bl, phi, cfg.eval_batch, need_grad)
    if obj == "retain":
        return v.mean(1), (g / n if need_grad else None), None
    if obj == "dissipate":
        return 1 - v.mean(1), (-g / n if need_grad else None), None
    if obj == "contrastive":
        vc, gc = path_values_and_grads(score, x_tg, x_bl, 1 - phi, cfg.eval_batch, need_grad)
        # P↕ = P↑(φ) + P↓(1−φ);  d/dφ of −F(1−φ) = +∂F/∂ψ at ψ = 1−φ
        val = v.mean(1) + 1 - vc.mean(1)
        return val, ((g + gc) / n if need_grad else None), None
    # straddle: φ↑ ascends P↑, φ↓ ascends P↓, independently
    vd, gd = path_values_and_grads(score, x_tg, x_bl, phi_down, cfg.eval_batch, need_grad)
    val = v.mean(1) + 1 - vd.mean(1)
    return val, (g / n if need_grad else None), (-gd / n if need_grad else None)


def _step(phi: torch.Tensor, g: torch.Tensor, cfg: PathConfig, sigma_m: float,
          weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mass-neutral, L∞-normalised ascent step followed by the regularisation blur.

    With mass weights ω ``(b, h, w)`` (summing to 1 per image) the gradient is the Riesz
    representative in ⟨u, v⟩_ω (``g/ω``) made mass-neutral in that metric (``g − Σ ω g``);
    ω = 1/(hw) gives the uniform rule up to the constant factor the L∞ normalisation removes."""
    if weights is not None:
        w = weights.unsqueeze(1).to(g.dtype)
        g = torch.where(w > 0, g / w.clamp_min(1e-300), torch.zeros_like(g))
        g = g - (w * g).sum(dim=(-2, -1), keepdim=True)
    else:
        g = g - g.mean(dim=(-2, -1), keepdim=True)                 # Alg. 2 line 6
    if cfg.regularise == "update":
        g = blur2d(g, sigma_m, cfg.border)
        g = g - g.mean(dim=(-2, -1), keepdim=True)
    sup = g.flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, 1, 1, 1)
    phi = phi + (cfg.step_sup / sup) * g                        # ascent (spec errata on line 7)
    if cfg.regularise == "state":
        phi = blur2d(phi, sigma_m, cfg.border)                  # Eq. 2.24
    return phi


def initial_path(b: int, cfg: PathConfig, hm: int, wm: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The affine start φ(t) = t everywhere (Eq. 2.17)."""
    t = torch.as_tensor(t_grid(cfg.n_t), dtype=dtype, device=device)
    return t.view(1, -1, 1, 1).expand(b, cfg.n_t, hm, wm).clone()


def mask_grid(cfg: PathConfig, size: tuple[int, int]) -> tuple[int, int]:
    """Mask resolution: ``mask_size`` along the longer side, never above the image size."""
    h, w = size
    s = min(cfg.mask_size, max(h, w))
    return (max(1, round(h * s / max(h, w))), max(1, round(w * s / max(h, w))))


def optimise_paths(score: Callable, x_tg: torch.Tensor, x_bl: torch.Tensor, cfg: PathConfig,
                   callback: Callable | None = None, weights: torch.Tensor | None = None) -> PathResult:
    """Run Algorithm 2 for a batch.  ``x_tg``, ``x_bl``: ``(B, C, H, W)``.

    ``score(X, idx)`` returns the explained scalar ``F`` for the images ``X`` whose source image
    indices are ``idx``.  ``callback(iteration, phi, phi_down, objective)`` is called after each
    repair (the tests use it to check the path axioms on every iterate).  ``weights`` ``(B, hm, wm)``:
    mass weights of the mask entries (each image's sum 1; the SIFT plugin's ``metric=l2``) used by
    the step, the re-parametrisation and the saturation; None = the uniform mean (pixels).
    """
    B = x_tg.shape[0]
    H, W = x_tg.shape[-2:]
    hm, wm = mask_grid(cfg, (H, W))
    sigma_m = cfg.blur_sigma * math.sqrt((hm * wm) / (H * W))  # image px -> mask px [C]
    dev = x_tg.device
    phi = initial_path(B, cfg, hm, wm, device=dev)
    phi_down = phi.clone() if cfg.objective == "straddle" else None
    trace = np.full((B, cfg.max_iters + 1), np.nan)
    iters = np.zeros(B, dtype=np.int64)
    converged = np.zeros(B, dtype=bool)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    it = 0
    while True:
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        p = phi[idx]
        pd = phi_down[idx] if phi_down is not None else None

        def sub_score(X, ii, _idx=idx):
            return score(X, _idx[ii])

        val, g, gd = _objective_and_grad(cfg, sub_score, x_tg[idx], x_bl[idx], p, pd,
                                         need_grad=it < cfg.max_iters)
        trace[idx.cpu().numpy(), it] = val.cpu().numpy()
        if it >= cfg.max_iters:
            break
        w = None if weights is None else weights[idx]
        p = _step(p, g, cfg, sigma_m, w)
        p = saturate(p, cfg.saturation)
        if pd is not None:
            pd = _step(pd, gd, cfg, sigma_m, w)
            pd = saturate(pd, cfg.saturation)
            pd = pinch(p, pd, cfg.pinch)
            pd = repair(pd, cfg.monotonise, w)
        p = repair(p, cfg.monotonise, w)
        phi[idx] = p
        if pd is not None:
            phi_down[idx] = pd
        it += 1
        iters[idx.cpu().numpy()] = it
        sat = path_saturation(p, w)
        if pd is not None:
            sat = 0.5 * (sat + path_saturation(pd, w))
        if callback is not None:
            callback(it, p, pd, val)
        done = (sat > cfg.target_saturation) & torch.tensor(it >= cfg.min_iters, device=dev)
        if done.any():
            converged[idx[done].cpu().numpy()] = True
            active[idx[done]] = False
    # objective of the final path for images that stopped by the saturation rule
    idx = torch.nonzero(~active).flatten()
    if idx.numel():
        def sub_score(X, ii, _idx=idx):
            return score(X, _idx[ii])
        val, _, _ = _objective_and_grad(cfg, sub_score, x_tg[idx], x_bl[idx], phi[idx],
                                        phi_down[idx] if phi_down is not None else None, need_grad=False)
        for k, b in enumerate(idx.cpu().numpy()):
            trace[b, iters[b]] = float(val[k])
    sat = path_saturation(phi, weights)
    if phi_down is not None:
        sat = 0.5 * (sat + path_saturation(phi_down, weights))
    return PathResult(phi=phi.cpu().numpy(), phi_down=None if phi_down is None else phi_down.cpu().numpy(),
                      objective_trace=trace, saturation=sat.cpu().numpy(), iterations=iters,
                      converged=converged)
