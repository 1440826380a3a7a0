"""Blind-spot masking: the one home of the pixel masks of self-supervised (Noise2Self / Noise2Void)
training and of the J-invariant evaluation of any denoiser.

A blind-spot scheme hides a subset ``J`` of pixels from the network: the input values on ``J``
are replaced (:func:`replace_masked`) by something that does not depend on them, the network is
applied, and its output on ``J`` is compared with the hidden values.  Because the network never
sees ``x_J``, the noise on ``J`` is independent of the prediction there, and for pixel-wise
independent zero-mean noise

    E‖f_J(x) − x‖²_J = E‖f_J(x) − y‖²_J + E‖x − y‖²_J

(Batson & Royer 2019, "Noise2Self: blind denoising by self-supervision", ICML; Krull, Buchholz &
Jug 2019, "Noise2Void — learning denoising from single noisy images", CVPR): the loss against the
noisy image is the loss against the unknown clean image ``y`` plus the noise variance.

* :func:`random_pixel_mask` — training: a random subset (each pixel independently with
  probability ``fraction``), drawn per batch from the epoch's generator (reproducible, resumable);
* :func:`grid_masks` — evaluation: the partition of the box into ``spacing²`` interleaved grids
  (Noise2Self's ``J``), every pixel masked exactly once over the passes;
* :func:`replace_masked` — the replacement: ``"mean"``, the mean of the *unmasked* pixels among
  the 8 neighbours (zero where all neighbours are masked — zero is the mean of a normalised
  image); ``"noise"``, standard normal values (unit variance is the noise level of a normalised
  image); ``"zero"``.  None of them depends on a masked pixel, so the masked input carries no
  information about any pixel of ``J`` (tested: the gradient of the loss with respect to a masked
  input pixel is exactly zero).

Arrays are torch tensors ``(B, 1, H, W)`` in the normalised units of
:mod:`cryoxplain.imaging.normalize`; masks are boolean ``(B, 1, H, W)`` (or broadcastable).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ParameterError

__all__ = ["REPLACEMENTS", "grid_masks", "random_pixel_mask", "replace_masked"]

#: how masked pixels are filled (see the module docstring)
REPLACEMENTS = ("mean", "noise", "zero")

_DONUT = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])


def _check_fraction(fraction: float) -> float:
    f = float(fraction)
    if not 0 < f < 1:
        raise ParameterError(f"mask_fraction must be in (0, 1), got {fraction!r}")
    return f


def random_pixel_mask(shape, fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean mask of ``shape`` ``(B, 1, H, W)``: each pixel masked with probability ``fraction``,
    drawn from ``generator`` (CPU)."""
    f = _check_fraction(fraction)
    return torch.rand(tuple(shape), generator=generator) < f


def grid_masks(shape, spacing: int = 4) -> list[torch.Tensor]:
    """The ``spacing²`` boolean masks ``(H, W)`` of pixels ``(i, j)`` with ``(i mod s, j mod s) = (a, b)``:
    a partition of the box (every pixel in exactly one mask); neighbours of a masked pixel are never
    masked when ``spacing ≥ 2``."""
    s = int(spacing)
    if s < 2:
        raise ParameterError(f"grid spacing must be ≥ 2 pixels, got {spacing!r}")
    h, w = int(shape[-2]), int(shape[-1])
    ii = torch.arange(h)[:, None] % s
    jj = torch.arange(w)[None, :] % s
    return [(ii == a) & (jj == b) for a in range(s) for b in range(s)]


def replace_masked(x: torch.Tensor, mask: torch.Tensor, mode: str = "mean",
                   generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` with the masked pixels replaced (``mode`` one of :data:`REPLACEMENTS`, module docstring).

    ``x`` ``(B, 1, H, W)``; ``mask`` boolean, broadcastable to ``x``.  For ``"noise"`` the values
    are ``noise`` (a tensor like ``x``) or drawn from ``generator``.  Differentiable in ``x``; the
    result does not depend on any masked value of ``x``.
    """
    if mode not in REPLACEMENTS:
        raise ParameterError(f"unknown mask replacement {mode!r}; choose one of {', '.join(REPLACEMENTS)}")
    m = mask.to(device=x.device, dtype=torch.bool).expand_as(x)
    keep = (~m).to(x.dtype)
    if mode == "zero":
        fill = torch.zeros_like(x)
    elif mode == "noise":
        if noise is None:
            noise = torch.randn(tuple(x.shape), generator=generator, dtype=torch.float32)
        fill = noise.to(device=x.device, dtype=x.dtype)
    else:
        k = _DONUT.to(device=x.device, dtype=x.dtype)[None, None]
        c = x.shape[1]
        k = k.expand(c, 1, 3, 3)
        num = F.conv2d(x * keep, k, padding=1, groups=c)
        den = F.conv2d(keep, k, padding=1, groups=c)
        fill = torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))
    return torch.where(m, fill, x * keep)
