"""Integrated Gradients.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (arXiv:1703.01365).

Along the straight line from a baseline ``b`` to the input ``x``, ``x(α) = b + α (x − b)``:

    IG_i(x) = (x_i − b_i) · ∫_0^1 ∂f/∂x_i(b + α (x − b)) dα
            ≈ (x_i − b_i) · Σ_k w_k ∂f/∂x_i(b + α_k (x − b))

with quadrature nodes ``α_k`` and weights ``w_k`` on [0, 1] (:func:`cryoxplain.explain.paths.quadrature`).
*Completeness*: ``Σ_i IG_i = f(x) − f(b)`` up to the quadrature error, which is returned per image
as ``extras["completeness_gap"] = Σ IG − (f(x) − f(b))`` (Captum's "convergence delta").

Defaults: ``steps=50``, ``rule=gauss_legendre`` (Captum's defaults; Gauss–Legendre is exact for
integrands polynomial of degree < 2·steps), ``baseline=zero``, ``internal_batch_size=64`` path
points per forward/backward pass.

Baselines (``baseline=``):

* ``zero`` — the all-zero image.  For particles normalised to zero mean this is "no contrast".
* ``mean`` — a flat image at each particle's own mean intensity.
* ``blur`` — the particle blurred by a Gaussian of ``blur_sigma`` pixels (reflecting borders):
  keeps the low-resolution envelope and asks which *details* matter.
* a path to an MRC image of the particles' size (one image used for the whole stack).

Sign: a positive ``IG_i`` means that moving pixel i from the baseline to its value raised ``f``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.explain.base import Explainer, Param, check_inputs, explained_function
from cryoxplain.explain.paths import RULES, StraightLinePath, canonical_rule, integrate_path, quadrature

BASELINES = ("zero", "mean", "blur")


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflecting borders (kernel radius ⌈truncate·σ⌉)."""
    if sigma <= 0:
        return x.clone()
    h, w = x.shape[-2:]
    r = max(1, min(int(math.ceil(truncate * sigma)), h - 1, w - 1))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class IntegratedGradients(Explainer):
    """Straight-line path integral of the gradient (Sundararajan et al. 2017)."""

    name = "integrated_gradients"
    reference = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017, arXiv:1703.01365"
    params = (
        Param("steps", int, 50, "number of quadrature nodes on the path", min=1),
        Param("rule", str, "gauss_legendre", "quadrature: " + ", ".join(RULES)),
        Param("baseline", str, "zero", "zero, mean, blur or the path of an MRC image"),
        Param("blur_sigma", float, 8.0, "Gaussian σ in pixels of the 'blur' baseline", min=0.0),
        Param("internal_batch_size", int, 64, "path points per forward/backward pass (bounds memory)", min=1),
    )

    def validate(self):
        self.config["rule"] = canonical_rule(self.rule)
        quadrature(self.steps, self.rule)  # raises for e.g. trapezoid with 1 step
        self._baseline_image = None
        if self.baseline not in BASELINES:
            p = Path(self.baseline)
            if not p.exists():
                raise ParameterError(f"baseline {self.baseline!r} is neither {', '.join(BASELINES)} nor an existing MRC file")
            from cryoxplain.io.mrc import read_mrc

            img, _ = read_mrc(p)
            if img.ndim == 3 and img.shape[0] == 1:
                img = img[0]
            if img.ndim != 2:
                raise ShapeError(f"baseline file {p} must hold one image, got shape {img.shape}")
            self._baseline_image = torch.from_numpy(np.array(img, dtype=np.float32))

    def baselines(self, inputs: torch.Tensor) -> torch.Tensor:
        """The baseline image of every input, ``(B, 1, H, W)``."""
        if self.baseline == "zero":
            return torch.zeros_like(inputs)
        if self.baseline == "mean":
            return inputs.mean(dim=(-2, -1), keepdim=True).expand_as(inputs).clone()
        if self.baseline == "blur":
            return gaussian_blur(inputs, self.blur_sigma)
        img = self._baseline_image
        if tuple(img.shape) != tuple(inputs.shape[-2:]):
            raise ShapeError(f"baseline image {self.baseline} is {img.shape[1]}×{img.shape[0]}, "
                             f"the particles are {inputs.shape[-1]}×{inputs.shape[-2]}")
        return img.to(inputs).expand_as(inputs).clone()

    def attribute(self, model, inputs, target):
        check_inputs(model, inputs)
        target = target.bind(model, inputs)
        f = explained_function(model, target)
        b = self.baselines(inputs)
        path = StraightLinePath(inputs, b)
        alphas, weights = quadrature(self.steps, self.rule)
        result = integrate_path(f, path, inputs.shape[0], alphas, weights,
                                internal_batch_size=self.internal_batch_size, dtype=inputs.dtype)
        with torch.no_grad():
            fx, fb = f(inputs).double(), f(b).double()
        gap = result.attribution.double().flatten(1).sum(1) - (fx - fb)
        return self.make_attribution(result.attribution, target, model, target_value=fx, baseline_value=fb,
                                     completeness_gap=gap)
