"""Per-image intensity normalisation, identical in training, inference, metrics and explanation.

Policy (the string :data:`NORMALIZATION` is recorded in model files, histories and results):

* each image — one particle of a stack, or one whole micrograph — is shifted and scaled by the
  mean μ and standard deviation σ (population, over all its pixels) **of the input image**:
  ``x̃ = (x − μ) / σ``;
* a training target (the clean image, or the second noisy copy for Noise2Noise) is mapped with
  the *same* μ, σ as its input, so a denoiser learns an affine-equivariant map in normalised units;
* a denoiser's output is mapped back with ``y = ỹ·σ + μ``, so results are in the input's units;
* micrographs denoised in tiles use one μ, σ for the whole micrograph (never per tile);
* a constant image (σ = 0) uses σ = 1.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["NORMALIZATION", "image_stats", "normalize", "denormalize", "normalize_images", "looks_normalized"]

NORMALIZATION = "per-image mean/std of the noisy input (micrographs: one per micrograph)"


def image_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over the last two axes of ``(..., H, W)`` images, shaped to broadcast
    (``(..., 1, 1)``); σ = 0 is replaced by 1."""
    mu = x.mean(dim=(-2, -1), keepdim=True)
    sd = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return mu, torch.where(sd > 0, sd, torch.ones_like(sd))


def normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x̃, μ, σ)`` for ``(..., H, W)`` images (module policy)."""
    mu, sd = image_stats(x)
    return (x - mu) / sd, mu, sd


def denormalize(y: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``y·σ + μ``."""
    return y * sd + mu


def normalize_images(x):
    """Normalised ``(..., H, W)`` images only (numpy array → ``float32`` array, tensor → tensor)."""
    if isinstance(x, torch.Tensor):
        return normalize(x)[0]
    a = np.asarray(x, dtype=np.float64)
    mu = a.mean(axis=(-2, -1), keepdims=True)
    sd = a.std(axis=(-2, -1), keepdims=True)
    return ((a - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def looks_normalized(x, tol: float = 1e-3) -> bool:
    """True when every image of ``(..., H, W)`` has mean within ``tol`` of 0 and std within ``10·tol`` of 1."""
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    mu, sd = a.mean(axis=(-2, -1)), a.std(axis=(-2, -1))
    return bool(np.all(np.abs(mu) < tol) and np.all(np.abs(sd - 1) < 10 * tol))
