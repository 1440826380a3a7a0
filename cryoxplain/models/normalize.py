"""The intensity normalisation every denoiser sees, identical in training and in ``denoise``.

Policy (``NORMALIZATION`` is recorded in each trained model's ``training`` metadata):

* each image — one particle of a stack, or one whole micrograph — is shifted and scaled by the
  mean and standard deviation **of the noisy input image** over all its pixels:
  ``x̃ = (x − μ) / σ``;
* a training target (the clean image, or the second noisy copy for Noise2Noise) is mapped with the
  *same* μ, σ as its input, so the network learns an affine-equivariant map in normalised units;
* the network output is mapped back with ``y = ỹ·σ + μ``, so the result is in the input's units;
* micrographs denoised in tiles use one μ, σ for the whole micrograph (never per tile), so tiles
  agree where they overlap;
* a constant image (σ = 0) uses σ = 1.
"""
from __future__ import annotations

import torch

NORMALIZATION = "per-image mean/std of the noisy input (micrographs: one per micrograph)"


def image_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean and std of a (B, 1, H, W) or (B, H, W) tensor, shaped to broadcast (B, 1, 1[, 1])."""
    dims = tuple(range(1, x.ndim))
    mu = x.mean(dim=dims, keepdim=True)
    sd = x.std(dim=dims, keepdim=True, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return mu, sd


def normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(x̃, μ, σ)`` with per-image statistics (see the module docstring)."""
    mu, sd = image_stats(x)
    return (x - mu) / sd, mu, sd


def denormalize(y: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    return y * sd + mu
