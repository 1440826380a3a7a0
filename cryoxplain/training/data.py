"""Reading a task's training images: an MRC file (:mod:`cryoxplain.io.mrc`) or an array, validated
by :func:`cryoxplain.imaging.batch.as_image_stack` into a ``float32`` stack ``(N, H, W)``."""
from __future__ import annotations

import os

import numpy as np

from ..imaging.batch import as_image_stack

__all__ = ["load_images"]


def load_images(src, name: str = "images") -> tuple[np.ndarray, float | None]:
    """``(stack (N, H, W) float32, voxel size in Å/px or None)`` from a path or an array/tensor.

    ``name`` names the argument in error messages (ShapeError for other layouts, ParameterError
    for NaN/Inf values, InputFileError for unreadable files)."""
    if isinstance(src, (str, os.PathLike)):
        from ..io.mrc import read_mrc

        data, voxel = read_mrc(src)
        return as_image_stack(data, name=f"{name} ({src})"), voxel
    return as_image_stack(src, name=name), None
