"""Ablation paths over feature masks, on the pixel plugin's optimiser (spec §7).

The thesis's own trick (Eq. 4.43, read as ``[1 ^ 0]_φ = 1 − φ``): the pixel optimiser
:func:`cryoxplain_plugins.ablation_path.optimize.optimise_paths` runs unchanged on a *mask grid of
K × 1 "pixels"* with the dummy target ``1`` and dummy baseline ``0``, so its masked interpolation
``1 + φ(0 − 1) = 1 − φ`` is the gain vector, and the explained score decodes it first:
``F(D(1 − φ))``.  With ``blur_sigma = 0`` and ``mask_size = K`` the pixel code's up-sampling and
blur are identities; its Algorithm 1 monotonisation, clamping, Lemma-7 re-parametrisation
(uniform mass = the ``euclidean`` metric, ω_i = 1/K; ``l2`` passes the energy weights
ω_i ∝ ‖Z̄_i‖₂ to its weighted step, re-parametrisation and saturation), saturation, pinching, objectives and
stopping rule are used as they are.  Images are grouped by K (each group has no padding);
results are padded to a common feature count with the padded entries on the affine path t_j.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from cryoxplain_plugins.ablation_path.optimize import PathConfig, PathResult, optimise_paths, path_values_and_grads
from cryoxplain_plugins.ablation_path.projection import t_grid

from .decomposition import decode_batch

__all__ = ["sat_max", "effective_target", "mass_weights", "FeatureScore", "optimise_feature_paths", "feature_values_and_grads",
           "pad_path"]


def sat_max(K: int, n: int) -> float:
    """Largest saturation (Eq. 2.31) of a constant-speed path with K features and n samples (§7.5)."""
    t = t_grid(n)
    f = np.mod(K * t, 1.0)
    return float(np.mean((K - 1 + np.abs(2 * f - 1)) / K))


def effective_target(target: float, K: int, n: int) -> float:
    """``min(target_saturation, sat_max(K, n) − 0.02)`` (§7.5)."""
    return min(float(target), sat_max(K, n) - 0.02)


class FeatureScore:
    """``score(G, idx)`` on gain "images" ``G (N, 1, K, 1)`` of the images ``images[idx]``: decodes
    with the padded batch decoder ``(Z (B, K_max, H, W), c (B, H, W))`` and calls the image score."""

    def __init__(self, score: Callable, Z: torch.Tensor, c: torch.Tensor, images: torch.Tensor):
        self.score, self.Z, self.c, self.images = score, Z, c, images

    def __call__(self, G: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        gi = self.images[idx]
        g = G.reshape(G.shape[0], -1)
        k = g.shape[1]
        X = decode_batch(self.Z[:, :k], self.c, g, gi)
        return self.score(X, gi)


def _ones_zeros(b: int, K: int, dtype, device):
    return (torch.ones(b, 1, K, 1, dtype=dtype, device=device), torch.zeros(b, 1, K, 1, dtype=dtype, device=device))


def feature_values_and_grads(score: Callable, Z: torch.Tensor, c: torch.Tensor, images: torch.Tensor, K: int,
                             phi: torch.Tensor, eval_batch: int = 64, need_grad: bool = True):
    """F(D(1 − φ)) and ∂F/∂φ for feature masks ``phi (b, n, K, 1)`` of the images ``images (b,)``."""
    fs = FeatureScore(score, Z, c, images)
    one, zero = _ones_zeros(phi.shape[0], K, torch.float64, phi.device)
    return path_values_and_grads(fs, one, zero, phi, eval_batch, need_grad)


def pad_path(phi: np.ndarray, kmax: int, n_t: int) -> np.ndarray:
    """``(b, n, K, 1)`` → ``(b, n, kmax, 1)`` with the padded entries on the affine path t_j."""
    b, n, K, _ = phi.shape
    out = np.broadcast_to(t_grid(n_t).reshape(1, -1, 1, 1), (b, n, kmax, 1)).copy()
    out[:, :, :K] = phi
    return out


def mass_weights(Z: torch.Tensor, n_features: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """The feature mass weights ω ``(B, K_max)`` of spec §7.2: ``euclidean`` ω_i = 1/K, ``l2``
    ω_i = W_i / Σ_k W_k with the feature energies W_i = ‖Z̄_i‖₂ (Eq. 4.45); 0 on padding.  An
    image whose features all have zero energy falls back to the uniform weights."""
    nf = np.asarray(n_features)
    B, kmax = Z.shape[:2]
    valid = np.arange(kmax)[None] < nf[:, None]
    uniform = np.where(valid, 1.0 / np.maximum(nf[:, None], 1), 0.0)
    if metric == "euclidean":
        return uniform
    if metric != "l2":
        raise ValueError(f"unknown metric {metric!r}")
    W = np.where(valid, Z.detach().to(torch.float64).flatten(2).norm(dim=2).cpu().numpy(), 0.0)
    tot = W.sum(1, keepdims=True)
    return np.where(tot > 0, W / np.where(tot > 0, tot, 1.0), uniform)


def optimise_feature_paths(score: Callable, Z: torch.Tensor, c: torch.Tensor, n_features: np.ndarray,
                           cfg: PathConfig, callback: Callable | None = None, weights: np.ndarray | None = None):
    """Optimise one feature path per image.  ``Z (B, K_max, H, W)``, ``c (B, H, W)`` padded
    decoders, ``n_features (B,)``.  Returns ``(PathResult with (B, n, K_max, 1) paths, targets)``
    where ``targets (B,)`` are the effective saturation targets.  ``callback(K, it, phi, phi_down,
    obj)`` sees every iterate of every K-group (unpadded).  ``weights (B, K_max)``: the mass
    weights ω (:func:`mass_weights`); None = uniform (the ``euclidean`` metric, exactly the pixel
    optimiser's mean)."""
    B, kmax = Z.shape[:2]
    n = cfg.n_t
    dev = Z.device
    phi = np.zeros((B, n, kmax, 1))
    phi_down = np.zeros((B, n, kmax, 1)) if cfg.objective == "straddle" else None
    trace = np.full((B, cfg.max_iters + 1), np.nan)
    sat = np.zeros(B)
    iters = np.zeros(B, np.int64)
    conv = np.zeros(B, bool)
    targets = np.zeros(B)
    for K in sorted(set(int(k) for k in n_features)):
        rows = np.nonzero(np.asarray(n_features) == K)[0]
        img = torch.as_tensor(rows, device=dev)
        tgt = effective_target(cfg.target_saturation, K, n)
        kcfg = replace(cfg, mask_size=K, blur_sigma=0.0, target_saturation=tgt)
        fs = FeatureScore(score, Z, c, img)
        one, zero = _ones_zeros(rows.size, K, torch.float64, dev)
        cb = None if callback is None else (lambda it, p, pd, v, _K=K: callback(_K, it, p, pd, v))
        w = None if weights is None else torch.as_tensor(np.asarray(weights)[rows, :K], dtype=torch.float64,
                                                          device=dev).reshape(rows.size, K, 1)
        res: PathResult = optimise_paths(fs, one, zero, kcfg, callback=cb, weights=w)
        phi[rows] = pad_path(res.phi, kmax, n)
        if phi_down is not None:
            phi_down[rows] = pad_path(res.phi_down, kmax, n)
        trace[rows] = res.objective_trace
        sat[rows], iters[rows], conv[rows] = res.saturation, res.iterations, res.converged
        targets[rows] = tgt
    return PathResult(phi=phi, phi_down=phi_down, objective_trace=trace, saturation=sat, iterations=iters,
                      converged=conv), targets
