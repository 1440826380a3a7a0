"""Noise for explanations: per-image random streams, noisy inputs and SmoothGrad (the one
implementation; the ``smoothgrad`` plugin, FORGrad's smoothgrad/vargrad base maps and any third
party plugin call it).

SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825) averages gradients over noisy copies of the
input, ``x̃_j = x + σ ε_j`` with ``ε_j ~ N(0, I)``::

    mean   = 1/n Σ_j ∂f/∂x (x̃_j)          (SmoothGrad)
    square = 1/n Σ_j (∂f/∂x (x̃_j))²       (SmoothGrad², Hooker et al. 2019)
    VarGrad = square − mean²                (Adebayo et al. 2018)

Noise level: ``σ = noise_level · (max x − min x)`` per image (:func:`noise_std`), the paper's
noise relative to the input range, or ``noise_level · std x`` (``reference="std"``).  Seeding: image ``i`` draws all its ``n`` noise images at once
from its own generator (``ExplainContext.generators``: ``image_seed(seed, stack index)``), so
results depend neither on batching nor on ``internal_batch_size``.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import ParameterError
from .base import gradient

__all__ = ["NOISE_REFERENCES", "image_noise", "noise_std", "perturb", "smoothgrad_moments"]


def image_noise(generators: list, n: int, like: torch.Tensor) -> torch.Tensor:
    """``n`` standard-normal images per generator, image-major: rows ``i·n … i·n+n−1`` belong to
    image ``i``.  ``like`` gives the image shape ``(…, 1, H, W)``, dtype and device."""
    shape = (n,) + tuple(like.shape[1:])
    return torch.cat([torch.randn(shape, generator=g, device=like.device, dtype=like.dtype) for g in generators])


NOISE_REFERENCES = ("range", "std")


def noise_std(inputs: torch.Tensor, noise_level: float, reference: str = "range") -> torch.Tensor:
    """SmoothGrad's noise σ per image, ``(B,)``: ``noise_level · (max − min)`` of each image
    (``reference="range"``, the paper's rule) or ``noise_level · std`` of each image (``"std"``).

    On cryo-EM particles the range is set by the pixel noise: at SNR 1/16 it is ≈ 7.5 image stds,
    so the paper's 15–20 % of the range adds noise 1.1–1.6× the particle's own noise σ (3.7× the
    signal std at the sample's SNR).  ``"std"`` ties the added noise to the image's own spread.
    """
    if noise_level < 0:
        raise ParameterError(f"noise_level must be ≥ 0, got {noise_level}")
    if reference == "range":
        return noise_level * (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3)))
    if reference == "std":
        return noise_level * inputs.flatten(1).std(dim=1)
    raise ParameterError(f"noise_reference must be one of {', '.join(NOISE_REFERENCES)}, got {reference!r}")


def perturb(x: torch.Tensor, eps: torch.Tensor, level, combination: str = "additive") -> torch.Tensor:
    """A noisy input: ``x + level·ε`` (``additive``, SmoothGrad) or ``(1 − level)·x + level·ε``
    (``convex``, SpectralLens); ``level`` is a number or broadcasts against ``x``."""
    if combination == "additive":
        return x + level * eps
    if combination == "convex":
        return (1 - level) * x + level * eps
    raise ParameterError(f"combination must be additive or convex, got {combination!r}")


def smoothgrad_moments(f: Callable[..., torch.Tensor], inputs: torch.Tensor, sigma: torch.Tensor,
                       generators: list, n_samples: int, internal_batch_size: int = 64,
                       squares: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SmoothGrad's first and second gradient moments, float64 ``(B, 1, H, W)`` each.

    ``f`` is the explained function of the bound batch ``inputs`` (``f(points, idx)``); ``sigma``
    ``(B,)`` the noise std of each image; ``generators`` one per image.  At most
    ``internal_batch_size`` noisy images are differentiated at a time and at most
    ``⌈internal_batch_size / n_samples⌉ + 1`` images' noise is held in memory.  Returns
    ``(mean, square)`` (``square`` is None unless ``squares``).
    """
    if n_samples < 1:
        raise ParameterError(f"n_samples must be ≥ 1, got {n_samples}")
    b, n, chunk = inputs.shape[0], int(n_samples), int(internal_batch_size)
    m1 = torch.zeros_like(inputs, dtype=torch.float64)
    m2 = torch.zeros_like(m1) if squares else None
    img = torch.arange(b, device=inputs.device).repeat_interleave(n)   # image of each noisy copy
    smp = torch.arange(n, device=inputs.device).repeat(b)              # its sample number
    noise = {}  # image -> its n draws (scaled)
    for start in range(0, b * n, chunk):
        bi, sj = img[start:start + chunk], smp[start:start + chunk]
        for k in bi.unique().tolist():
            if k not in noise:
                noise[k] = image_noise([generators[k]], n, inputs[k:k + 1]) * sigma[k]
        eps = torch.stack([noise[k][j] for k, j in zip(bi.tolist(), sj.tolist())])
        _, g = gradient(lambda z: f(z, bi), perturb(inputs[bi], eps, 1.0))
        g = g.double()
        m1.index_add_(0, bi, g)
        if squares:
            m2.index_add_(0, bi, g * g)
        for k in [k for k in noise if (k + 1) * n <= start + chunk]:
            del noise[k]  # all samples of image k are done
    return m1 / n, (m2 / n if squares else None)
