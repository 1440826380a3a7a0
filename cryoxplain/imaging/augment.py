"""Random symmetries of particle images for training (the one augmentation of both trainings).

Every transformation is about the box centre ``N // 2`` (docs/conventions.md) and is applied
identically to each tensor passed together (an input and its target).  Modes:

* ``"none"``;
* ``"flip"`` — a mirror image (x → −x) with probability 1/2;
* ``"rot90"`` — a random quarter turn (exact pixel permutation, :func:`~cryoxplain.geometry.rotate.rot90`);
* ``"d4"`` — a random one of the 8 symmetries of the square: mirror with probability 1/2, then a
  random quarter turn;
* ``"rotate"`` — mirror with probability 1/2, then a uniform random angle in [0, 2π) by the
  band-limited rotation (:func:`~cryoxplain.geometry.rotate.rotate`), which keeps the variance and
  spectrum of white noise (bilinear interpolation would remove up to half its variance, so augmented
  inputs would not look like the data).

Non-square boxes have only the half turn among the quarter turns (``rot90``/``d4`` draw k ∈ {0, 2});
``rotate`` needs square boxes.  Random numbers come from the given ``torch.Generator`` (on the CPU),
drawn in a fixed order (mirror, quarter turn, angle), so a seeded run is reproducible.
"""
from __future__ import annotations

import math

import torch

from ..errors import ParameterError, ShapeError

__all__ = ["AUGMENTATIONS", "random_symmetry"]

AUGMENTATIONS = ("none", "flip", "rot90", "d4", "rotate")


def random_symmetry(tensors, mode: str, generator: torch.Generator):
    """Apply one random symmetry per image to each ``(B, C, H, W)`` tensor of ``tensors`` (all the same
    B, H, W); returns a list (or a tensor when one tensor is given).  See the module docstring."""
    from ..geometry.rotate import mirror, rot90, rotate

    single = isinstance(tensors, torch.Tensor)
    ts = [tensors] if single else list(tensors)
    if mode not in AUGMENTATIONS:
        raise ParameterError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {mode!r}")
    if mode == "none" or not ts:
        return ts[0] if single else ts
    b, h, w = ts[0].shape[0], ts[0].shape[-2], ts[0].shape[-1]
    for t in ts:
        if t.ndim != 4 or t.shape[0] != b or tuple(t.shape[-2:]) != (h, w):
            raise ShapeError(f"augmentation needs (B, C, H, W) tensors of one shape, got {tuple(t.shape)}")
    square = h == w
    if mode == "rotate" and not square:
        raise ShapeError(f"augmentation 'rotate' needs square boxes, got {h}x{w}")
    flip = torch.rand(b, generator=generator) < 0.5
    if mode in ("rot90", "d4"):
        k = torch.randint(0, 4, (b,), generator=generator)
        if not square:
            k = (k // 2) * 2
    else:
        k = torch.zeros(b, dtype=torch.long)
    if mode == "rot90":
        flip = torch.zeros(b, dtype=torch.bool)
    angles = torch.rand(b, generator=generator, dtype=torch.float64) * (2 * math.pi) if mode == "rotate" else None
    out = []
    for t in ts:
        y = t
        if flip.any():
            f = flip.to(t.device)
            y = torch.where(f.view(-1, 1, 1, 1), mirror(y, -1), y)
        if (k != 0).any():
            y = y.clone()
            for kk in (1, 2, 3):
                sel = torch.nonzero(k == kk).flatten()
                if sel.numel():
                    sel = sel.to(t.device)
                    y[sel] = rot90(y[sel], kk)
        if angles is not None:
            y = rotate(y, angles.numpy())
        out.append(y)
    return out[0] if single else out
