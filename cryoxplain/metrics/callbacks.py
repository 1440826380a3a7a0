"""Training callbacks that add metric columns to a model's per-epoch history.

* :class:`EquivarianceCallback` — equivariance columns of a denoiser (used by
  ``cryoxplain train --task denoise`` and :func:`cryoxplain.denoise.train.train_denoiser`).
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .equivariance import (GRID_ANGLES_DEG, as_image_function, equivariance_error, isotropic_reference,
                           offgrid_angles, rotation_floor)

__all__ = ["EquivarianceCallback"]


class EquivarianceCallback:
    """Training callback adding equivariance columns to a denoiser's per-epoch history.

    Called as ``cb(model, epoch, val_noisy, val_clean) -> dict`` by
    :func:`cryoxplain.denoise.train.train_denoiser` (eval mode, no gradients) with the normalised validation
    inputs.  It measures the network itself on the first ``n_images`` validation images, always with
    the same angles (so the curves are comparable across epochs), and returns

    * ``equivariance``: mean E(θ) over ``n_offgrid`` fixed random off-grid angles (seeded) — the
      error under arbitrary in-plane rotations, what the thesis' Fig 7.7–7.9 plot;
    * ``equivariance_grid``: mean E over 90°, 180°, 270° (exact rotations: the network alone);
    * ``equivariance_floor``: the rotation operator's mean round-trip floor on the same images and
      off-grid angles (constant over epochs);
    * ``equivariance_reference``: E of an exactly equivariant isotropic blur on the same images and
      angles (constant; the level below which a model's off-grid E is measurement error).
    """

    def __init__(self, n_images: int = 16, n_offgrid: int = 4, seed: int = 0, method: str = "fft"):
        if n_images < 1 or n_offgrid < 1:
            raise ParameterError("the equivariance callback needs n_images >= 1 and n_offgrid >= 1")
        self.n_images, self.method = int(n_images), method
        self.angles = offgrid_angles(int(n_offgrid), seed)
        self._floor: float | None = None
        self._ref: float | None = None

    def __call__(self, model, epoch, val_noisy, val_clean=None) -> dict:
        if val_noisy is None or len(val_noisy) == 0 or val_noisy.shape[-1] != val_noisy.shape[-2]:
            return {}  # nothing to measure on (no validation split, or non-square boxes)
        x = val_noisy[: self.n_images]
        f = as_image_function(model)
        y = f(x)
        off = equivariance_error(f, x, self.angles, method=self.method, outputs=y)
        grid = equivariance_error(f, x, GRID_ANGLES_DEG, method=self.method, outputs=y)
        if self._floor is None:
            self._floor = float(np.mean(list(rotation_floor(x, self.angles, method=self.method).values())))
            self._ref = float(np.mean(list(isotropic_reference(x, self.angles, method=self.method).values())))
        return {"equivariance": float(np.mean(list(off.values()))),
                "equivariance_grid": float(np.mean(list(grid.values()))),
                "equivariance_floor": self._floor, "equivariance_reference": self._ref}
