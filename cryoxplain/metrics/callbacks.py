"""Training callbacks that add metric columns to a model's per-epoch history.

* :class:`EquivarianceCallback` — equivariance columns of a denoiser (used by
  ``cryoxplain train --task denoise`` and :func:`cryoxplain.denoise.train.train_denoiser`).
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .equivariance import (DEFAULT_N_IMAGES, DEFAULT_N_OFFGRID, GRID_ANGLES_DEG, as_image_function,
                           equivariance_error, isotropic_reference, offgrid_angles, output_window, rotation_floor,
                           window_radius)

__all__ = ["EquivarianceCallback"]


class EquivarianceCallback:
    """Training callback adding equivariance columns to a denoiser's per-epoch history.

    Called as ``cb(model, epoch, val_noisy, val_clean) -> dict`` by
    :func:`cryoxplain.denoise.train.train_denoiser` (eval mode, no gradients) with the normalised validation
    inputs.  It measures the network itself on the first ``n_images`` validation images, always with
    the same angles (so the curves are comparable across epochs), and returns

    * ``equivariance``: mean E(θ) over ``n_offgrid`` fixed stratified off-grid angles (seeded) — the
      error under arbitrary in-plane rotations, what the thesis' Fig 7.7–7.9 plot;
    * ``equivariance_std``: its spread (standard deviation over those angles);
    * ``equivariance_grid``: mean E over 90°, 180°, 270° (exact rotations: the network alone);
    * ``equivariance_floor``: the rotation operator's mean round-trip floor on the same images and
      off-grid angles (constant over epochs);
    * ``equivariance_reference``: E of an exactly equivariant isotropic blur on the same images and
      angles (constant; the level below which a model's off-grid E is measurement error).

    All with the output window of :mod:`cryoxplain.metrics.equivariance`: a smooth disc of radius
    ``radius`` px (default: the model's valid radius, the box for cartesian models; pass the same
    ``radius`` to callbacks of models that are compared), fixed at the first call.
    """

    def __init__(self, n_images: int = DEFAULT_N_IMAGES, n_offgrid: int = DEFAULT_N_OFFGRID, seed: int = 0,
                 method: str = "fft", radius: float | None = None):
        if n_images < 1 or n_offgrid < 1:
            raise ParameterError("the equivariance callback needs n_images >= 1 and n_offgrid >= 1")
        if radius is not None and not radius > 0:
            raise ParameterError(f"the equivariance callback needs radius > 0 pixels, got radius={radius}")
        self.n_images, self.method, self.radius = int(n_images), method, radius
        self.angles = offgrid_angles(int(n_offgrid), seed)
        self._window = None
        self._floor: float | None = None
        self._ref: float | None = None

    def __call__(self, model, epoch, val_noisy, val_clean=None) -> dict:
        if val_noisy is None or len(val_noisy) == 0 or val_noisy.shape[-1] != val_noisy.shape[-2]:
            return {}  # nothing to measure on (no validation split, or non-square boxes)
        x = val_noisy[: self.n_images]
        h = x.shape[-1]
        if self._window is None or self._window.shape != (h, h):
            r = window_radius(h, model) if self.radius is None else self.radius
            self._window = output_window(h, h, r)
            self._floor = None
        kw = dict(method=self.method, window=self._window)
        f = as_image_function(model)
        y = f(x)
        off = equivariance_error(f, x, self.angles, outputs=y, **kw)
        grid = equivariance_error(f, x, GRID_ANGLES_DEG, outputs=y, **kw)
        if self._floor is None:
            self._floor = float(np.mean(list(rotation_floor(x, self.angles, **kw).values())))
            self._ref = float(np.mean(list(isotropic_reference(x, self.angles, **kw).values())))
        return {"equivariance": float(np.mean(list(off.values()))),
                "equivariance_std": float(np.std(list(off.values()))),
                "equivariance_grid": float(np.mean(list(grid.values()))),
                "equivariance_floor": self._floor, "equivariance_reference": self._ref}
