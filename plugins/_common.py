"""Helpers shared by the frequency-aware plugins (not an explainer; not registered).

* :func:`batched_gradients` – ∇f at many points (rows belong to images ``idx``), at most
  ``internal_batch_size`` per forward/backward pass.
* :func:`check_inputs` – the core's shape/NaN checks (re-exported).
* :func:`spectrum_extras` – the attribution power spectrum extras every plugin returns.
"""
from __future__ import annotations

import numpy as np
import torch

from cryoxplain.explain.base import gradient
from cryoxplain.explain.spectrum import attribution_spectrum

from cryoxplain.explain.base import check_inputs, image_seed  # noqa: F401  (re-exported for the plugins)


def image_generators(explainer, inputs: torch.Tensor, seed: int) -> list:
    """One torch.Generator per image, seeded from (seed, index_offset + i) as the core does."""
    off = int(getattr(explainer, "index_offset", 0) or 0)
    return [torch.Generator(device=inputs.device).manual_seed(image_seed(seed, off + i)) for i in range(inputs.shape[0])]


def image_noise(gens: list, n: int, inputs: torch.Tensor) -> torch.Tensor:
    """``n`` standard-normal draws per image, image-major: rows i·n … i·n+n-1 belong to image i."""
    shape = (n,) + tuple(inputs.shape[1:])
    return torch.cat([torch.randn(shape, generator=g, device=inputs.device, dtype=inputs.dtype) for g in gens])


@torch.no_grad()
def evaluate(f, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``f`` on the images of a bound batch (row i is image i), ``batch`` at a time."""
    idx = torch.arange(x.shape[0], device=x.device)
    return torch.cat([f(x[i:i + batch], idx[i:i + batch]).detach() for i in range(0, x.shape[0], batch)])


def batched_gradients(f, points: torch.Tensor, idx: torch.Tensor, internal_batch_size: int) -> torch.Tensor:
    """∇f at ``points`` (N, 1, H, W) whose row j belongs to image ``idx[j]`` of the bound batch."""
    out = torch.empty_like(points)
    for i in range(0, points.shape[0], internal_batch_size):
        sl = slice(i, i + internal_batch_size)
        ii = idx[sl]
        _, out[sl] = gradient(lambda z: f(z, ii), points[sl])
    return out


def spectrum_extras(maps) -> dict:
    """Per-image radially averaged power spectrum of the returned maps (see ``attribution_spectrum``)."""
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    spec = attribution_spectrum(m, average=False)
    n = m.shape[0]
    return {"spectrum": spec.power.astype(np.float32),
            "spectrum_frequencies": np.broadcast_to(spec.frequencies, (n, spec.frequencies.size)).astype(np.float32)}
