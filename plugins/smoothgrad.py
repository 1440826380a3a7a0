"""SmoothGrad and SmoothGrad².

Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017 (arXiv:1706.03825); the squared variant is Hooker, Erhan, Kindermans & Kim,
"A Benchmark for Interpretability Methods in Deep Neural Networks", NeurIPS 2019 (arXiv:1806.10758).

The gradient averaged over ``n`` noisy copies of the input:

    SG(x)  = 1/n Σ_j ∂f/∂x (x + ε_j)            ε_j ~ N(0, σ² I)
    SG²(x) = 1/n Σ_j (∂f/∂x (x + ε_j))²          (``squared=true``)

with ``σ = noise_level · (max x − min x)`` per image, the paper's noise level relative to the
input range (it recommends 10–20 %).  Defaults: ``samples=25``, ``noise_level=0.15`` (PAIR
saliency's ``nsamples`` and ``stdev_spread``), ``squared=false``, ``seed=0``,
``internal_batch_size=64`` noisy images per forward/backward pass.

The target is bound to the clean input first (``predicted`` means the class predicted for ``x``,
not for each noisy copy).  Image ``i`` of a stack draws its ``n`` noise images at once from its
own generator seeded with ``image_seed(seed, i)``, so results are reproducible and do not depend
on the batch size or on ``internal_batch_size``.  SG keeps the gradient's sign convention; SG²
is non-negative.
"""
from __future__ import annotations

import torch

from cryoxplain.explain.base import Explainer, Param, check_inputs, explained_function, image_seed


class SmoothGrad(Explainer):
    """Gradient averaged over Gaussian-noised copies of the input (Smilkov et al. 2017)."""

    name = "smoothgrad"
    reference = "Smilkov et al., SmoothGrad: removing noise by adding noise, ICML-W 2017, arXiv:1706.03825"
    params = (
        Param("samples", int, 25, "number of noisy copies n", min=1),
        Param("noise_level", float, 0.15, "noise σ as a fraction of each image's intensity range (max − min)", min=0.0),
        Param("squared", bool, False, "average squared gradients (SmoothGrad², Hooker et al. 2019)"),
        Param("seed", int, 0, "random seed of the noise (per image: image_seed(seed, index))"),
        Param("internal_batch_size", int, 64, "noisy images per forward/backward pass (bounds memory)", min=1),
    )

    def noise(self, inputs: torch.Tensor, i: int) -> torch.Tensor:
        """Standard-normal draws ``(n, 1, H, W)`` for image ``i`` of the batch (generator
        ``image_seed(seed, index_offset + i)``)."""
        g = torch.Generator(device=inputs.device).manual_seed(image_seed(self.seed, self.index_offset + i))
        return torch.randn((self.samples,) + tuple(inputs.shape[1:]), generator=g, device=inputs.device,
                           dtype=inputs.dtype)

    def attribute(self, model, inputs, target):
        check_inputs(model, inputs)
        target = target.bind(model, inputs)
        f = explained_function(model, target)
        B, n, chunk = inputs.shape[0], self.samples, self.internal_batch_size
        sigma = self.noise_level * (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3)))  # (B,)
        total = torch.zeros_like(inputs, dtype=torch.float64)
        img = torch.arange(B, device=inputs.device).repeat_interleave(n)   # image of each noisy copy
        smp = torch.arange(n, device=inputs.device).repeat(B)               # its sample number
        noise = {}  # image -> its n draws; at most ⌈chunk/n⌉ + 1 images are held at a time
        for start in range(0, B * n, chunk):
            bi, sj = img[start:start + chunk], smp[start:start + chunk]
            for b in bi.unique().tolist():
                if b not in noise:
                    noise[b] = self.noise(inputs, b) * sigma[b]
            eps = torch.stack([noise[b][j] for b, j in zip(bi.tolist(), sj.tolist())])
            noisy = (inputs[bi] + eps).detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(f(noisy, bi).sum(), noisy)
            g = g.double()
            total.index_add_(0, bi, g * g if self.squared else g)
            for b in [b for b in noise if (b + 1) * n <= start + chunk]:
                del noise[b]  # all samples of image b are done
        maps = (total / n).to(inputs.dtype)
        return self.make_attribution(maps, target, model, noise_sigma=sigma)
