"""The one validator that turns arrays and stacks into image batches.

Layouts (docs/conventions.md): at the I/O boundary images are numpy ``float32`` arrays ``(N, H, W)``
(one image ``(H, W)``); models take torch tensors ``(B, 1, H, W)``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

__all__ = ["as_image_batch", "as_image_stack"]


def as_image_batch(images, *, name: str = "images", square: bool = False, finite: bool = True,
                   dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` numpy array or tensor → floating tensor ``(B, 1, H, W)``.

    No copy when the input is already a floating tensor of that layout (and ``dtype``/``device``
    do not change it).  Raises :class:`~cryoxplain.errors.ShapeError` for other layouts (or a
    non-square box with ``square=True``) and :class:`~cryoxplain.errors.ParameterError` for
    NaN/Inf values when ``finite``.  ``name`` names the argument in messages.
    """
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif t.ndim != 4 or t.shape[1] != 1:
        raise ShapeError(f"{name} must be an image (H, W), a stack (B, H, W) or a batch (B, 1, H, W); "
                         f"got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[-1] == 0 or t.shape[-2] == 0:
        raise ShapeError(f"{name} is empty (shape {tuple(t.shape)})")
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    if square and t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"{name} must be square boxes, got {t.shape[-2]}x{t.shape[-1]}")
    if finite and not torch.isfinite(t).all():
        raise ParameterError(f"{name} contain NaN or infinite values")
    return t


def as_image_stack(images, *, name: str = "images", dtype=np.float32, finite: bool = True) -> np.ndarray:
    """``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)`` array or tensor → contiguous numpy stack ``(N, H, W)``."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ShapeError(f"{name} must be an image (H, W) or a stack (N, H, W); got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=dtype)
    if finite and not np.all(np.isfinite(a)):
        raise ParameterError(f"{name} contain NaN or infinite values")
    return a
