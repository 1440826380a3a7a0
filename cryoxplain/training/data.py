"""Reading a task's training images: an MRC file (:mod:`cryoxplain.io.mrc`), a particle file
(RELION ``.star`` / cryoSPARC ``.cs``, :mod:`cryoxplain.io.particles`) or an array, validated
by :func:`cryoxplain.imaging.batch.as_image_stack` into a ``float32`` stack ``(N, H, W)``."""
from __future__ import annotations

import os

import numpy as np

from ..imaging.batch import as_image_stack

__all__ = ["load_images"]


def load_images(src, name: str = "images", *, project_dir=None) -> tuple[np.ndarray, float | None]:
    """``(stack (N, H, W) float32, voxel size in Å/px or None)`` from a path or an array/tensor.

    A ``.star``/``.cs`` path reads the particles it lists in file order (stacks resolved against
    ``project_dir``, default the current directory, then the file's folder; pixel size from the
    STAR optics table or ``blob/psize_A``).  ``name`` names the argument in error messages
    (ShapeError for other layouts, ParameterError for NaN/Inf values, InputFileError for
    unreadable files)."""
    if isinstance(src, (str, os.PathLike)):
        from ..io.particles import is_particle_file, open_particles

        if is_particle_file(src):
            ps = open_particles(src, project_dir)
            return as_image_stack(ps.read(), name=f"{name} ({src})"), ps.pixel_size
        from ..errors import InputFileError
        from ..io.mrc import read_mrc, sniff

        if sniff(src).kind == "volume":
            raise InputFileError(f"{src}: is a 3D volume, not a particle stack (rename a stack to .mrcs)")
        data, voxel = read_mrc(src)
        return as_image_stack(data, name=f"{name} ({src})"), voxel
    return as_image_stack(src, name=name), None
