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
points per forward/backward pass.  The integral is :func:`cryoxplain.explain.paths.integrated_gradients`.

Baselines (``baseline=``, meanings of :mod:`cryoxplain.explain.baselines`):

* ``zero`` — the all-zero image.  For particles normalised to zero mean this is "no contrast".
* ``mean`` — a flat image at each particle's own mean intensity (over all its pixels).
* ``blur`` — the particle blurred by a Gaussian of ``baseline_sigma`` pixels (default 8; scipy's
  ``reflect`` border): keeps the low-resolution envelope and asks which *details* matter.
* ``noise`` — noise with the particle background's mean and std (seeded per image by ``seed``).
* ``file`` — the image(s) of the MRC file ``baseline_path`` (one for the whole stack, or one per
  particle); ``mean_image`` — the mean image of that stack.

Deprecated for one release: ``blur_sigma`` (now ``baseline_sigma``) and ``baseline=PATH`` (now
``baseline=file baseline_path=PATH``).

``extras``: ``target_value``, ``baseline_value``, ``completeness_gap`` (B,).

Sign: a positive ``IG_i`` means that moving pixel i from the baseline to its value raised ``f``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from cryoxplain.errors import ParameterError
from cryoxplain.explain.base import Explainer, Param
from cryoxplain.explain.baselines import BASELINES, load_baseline_images, make_baseline
from cryoxplain.explain.paths import RULES, canonical_rule, integrated_gradients, quadrature


class IntegratedGradients(Explainer):
    """Straight-line path integral of the gradient (Sundararajan et al. 2017)."""

    name = "integrated_gradients"
    reference = "Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017, arXiv:1703.01365"
    completeness = True
    params = (
        Param("steps", int, 50, "number of quadrature nodes on the path", min=1),
        Param("rule", str, "gauss_legendre", "quadrature: " + ", ".join(RULES)),
        Param("baseline", str, "zero", "baseline: " + ", ".join(BASELINES) + " (docs: cryoxplain.explain.baselines)"),
        Param("baseline_sigma", float, 8.0, "Gaussian σ in pixels of the 'blur' baseline", min=0.0),
        Param("baseline_path", str, "", "MRC image/stack for baseline=file or mean_image"),
        Param("seed", int, 0, "seed of the noise baseline (per image: image_seed(seed, index))"),
        Param("internal_batch_size", int, 64, "path points per forward/backward pass (bounds memory)", min=1),
    )
    renamed = {"blur_sigma": "baseline_sigma"}

    def validate(self):
        self.config["rule"] = canonical_rule(self.rule)
        quadrature(self.steps, self.rule)  # raises for e.g. trapezoid with 1 step
        self._images = None
        if self.baseline not in BASELINES:
            if not Path(self.baseline).is_file():
                raise ParameterError(f"baseline {self.baseline!r} is neither {', '.join(BASELINES)} nor an existing MRC file")
            warnings.warn("integrated_gradients: baseline=PATH is deprecated, use baseline=file baseline_path=PATH",
                          DeprecationWarning, stacklevel=4)
            self.config["baseline"], self.config["baseline_path"] = "file", self.baseline
        if self.baseline in ("file", "mean_image"):
            self._images = load_baseline_images(self.baseline_path)

    def baselines(self, inputs, generators=None):
        """The baseline image of every input, ``(B, 1, H, W)``."""
        return make_baseline(self.baseline, inputs, sigma=self.baseline_sigma, generators=generators,
                             images=self._images, path=self.baseline_path)

    def _attribute(self, f, inputs, ctx):
        b = self.baselines(inputs, ctx.generators(inputs) if self.baseline == "noise" else None)
        r = integrated_gradients(f, inputs, b, self.steps, self.rule, self.internal_batch_size)
        return r.attribution, {"target_value": r.target_value, "baseline_value": r.baseline_value,
                               "completeness_gap": r.completeness_gap}
