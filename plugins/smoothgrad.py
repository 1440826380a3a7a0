"""SmoothGrad and SmoothGrad².

Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017 (arXiv:1706.03825); the squared variant is Hooker, Erhan, Kindermans & Kim,
"A Benchmark for Interpretability Methods in Deep Neural Networks", NeurIPS 2019 (arXiv:1806.10758).

The gradient averaged over ``n`` noisy copies of the input:

    SG(x)  = 1/n Σ_j ∂f/∂x (x + ε_j)            ε_j ~ N(0, σ² I)
    SG²(x) = 1/n Σ_j (∂f/∂x (x + ε_j))²          (``squared=true``)

with ``σ = noise_level · (max x − min x)`` per image, the paper's noise level relative to the
input range (it recommends 10–20 %).  Defaults: ``n_samples=25``, ``noise_level=0.15`` (PAIR
saliency's ``nsamples`` and ``stdev_spread``), ``noise_reference=range``, ``squared=false``, ``seed=0``,
``internal_batch_size=64`` noisy images per forward/backward pass.

The target is bound to the clean input first (``predicted`` means the class predicted for ``x``,
not for each noisy copy).  Image ``i`` of a stack draws its ``n`` noise images at once from its
own generator seeded with ``image_seed(seed, i)``, so results are reproducible and do not depend
on the batch size or on ``internal_batch_size``.  SG keeps the gradient's sign convention; SG²
is non-negative.  The computation is :func:`cryoxplain.explain.sampling.smoothgrad_moments`.

On noisy particles the range is set by the pixel noise, so 15 % of it is about the particle's own
noise σ; ``noise_reference=std`` makes σ = ``noise_level`` × the image's std instead (see
docs/methods-gradients.md for what this changes on the shipped denoiser).

``extras``: ``noise_std`` (B,), the σ of each image's noise.  ``samples`` is the deprecated name
of ``n_samples``.
"""
from __future__ import annotations

from cryoxplain.explain.base import Explainer, Param
from cryoxplain.explain.sampling import NOISE_REFERENCES, noise_std, smoothgrad_moments


class SmoothGrad(Explainer):
    """Gradient averaged over Gaussian-noised copies of the input (Smilkov et al. 2017)."""

    name = "smoothgrad"
    reference = "Smilkov et al., SmoothGrad: removing noise by adding noise, ICML-W 2017, arXiv:1706.03825"
    params = (
        Param("n_samples", int, 25, "number of noisy copies n", min=1),
        Param("noise_level", float, 0.15, "noise σ as a fraction of each image's intensity range (max − min), "
              "or of its std with noise_reference=std", min=0.0),
        Param("noise_reference", str, "range", "what noise_level is relative to: range (paper) or std",
              choices=NOISE_REFERENCES),
        Param("squared", bool, False, "average squared gradients (SmoothGrad², Hooker et al. 2019)"),
        Param("seed", int, 0, "random seed of the noise (per image: image_seed(seed, index))"),
        Param("internal_batch_size", int, 64, "noisy images per forward/backward pass (bounds memory)", min=1),
    )
    renamed = {"samples": "n_samples"}

    def _attribute(self, f, inputs, ctx):
        sigma = noise_std(inputs, self.noise_level, self.noise_reference)  # (B,)
        m1, m2 = smoothgrad_moments(f, inputs, sigma, ctx.generators(inputs), self.n_samples,
                                    self.internal_batch_size, squares=self.squared)
        return (m2 if self.squared else m1).to(inputs.dtype), {"noise_std": sigma}
