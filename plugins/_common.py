"""Helpers shared by the frequency-aware plugins (not an explainer; not registered).

* :func:`accumulate_path` – the batched line integral ``Σ_j w_j ∇f(γ_j) ⊙ γ'_j`` over the path
  nodes of every image, evaluated ``internal_batch_size`` points at a time so memory stays bounded
  whatever the number of steps; it also returns the per-node scalar contribution (the "scale
  dimension" of Blur IG, the "component dimension" of Spectral IG).
* :func:`check_inputs` – shape/NaN checks every plugin runs first.
* :func:`spectrum_extras` – the attribution power spectrum extras every plugin returns.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.explain.base import gradient
from cryoxplain.explain.spectrum import attribution_spectrum


def check_inputs(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 1:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ShapeError(f"inputs must be a (B, 1, H, W) tensor, got {shape}")
    if not torch.isfinite(inputs).all():
        raise ParameterError("inputs contain NaN or infinite values")
    fixed = getattr(model, "input_shape", None)
    if fixed is not None and tuple(fixed) != tuple(inputs.shape[-2:]):
        raise ShapeError(f"model expects {tuple(fixed)} images, got {tuple(inputs.shape[-2:])}")


def accumulate_path(f: Callable[[torch.Tensor], torch.Tensor],
                    node_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                    n_images: int, n_nodes: int, image_shape: tuple[int, int],
                    internal_batch_size: int, keep_node_maps: bool = False,
                    dtype=torch.float32, device=None, on_gradient=None):
    """Evaluate ``Σ_j ∇f(γ_b(j)) ⊙ Δ_b(j)`` for all images ``b`` and nodes ``j``.

    ``node_fn(b_idx, j_idx)`` returns ``(points, steps)``, both ``(M, 1, H, W)``: the path points
    and the weighted path increments (``w_j γ'(t_j)`` or a chord ``γ(t_{j+1}) - γ(t_j)``) for the
    M (image, node) pairs requested.  Returns ``(maps (B,H,W), node_sums (B,J), node_maps or None)``
    where ``node_sums[b, j]`` is the total contribution of node j and sums over j to the map total.
    ``on_gradient(g, b_idx, j_idx)``, if given, is called with every chunk's gradients.
    """
    h, w = image_shape
    maps = torch.zeros(n_images, h, w, dtype=torch.float64, device=device)
    sums = torch.zeros(n_images, n_nodes, dtype=torch.float64, device=device)
    node_maps = torch.zeros(n_images, n_nodes, h, w, dtype=dtype, device=device) if keep_node_maps else None
    total = n_images * n_nodes
    flat = torch.arange(total, device=device)
    for start in range(0, total, internal_batch_size):
        idx = flat[start:start + internal_batch_size]
        b_idx, j_idx = idx // n_nodes, idx % n_nodes
        points, steps = node_fn(b_idx, j_idx)
        _, g = gradient(f, points.to(dtype))
        if on_gradient is not None:
            on_gradient(g, b_idx, j_idx)
        contrib = (g * steps).to(torch.float64)[:, 0]  # (M, H, W)
        maps.index_add_(0, b_idx, contrib)
        sums[b_idx, j_idx] = contrib.sum(dim=(1, 2))
        if node_maps is not None:
            node_maps[b_idx, j_idx] = contrib.to(dtype)
    return maps, sums, node_maps


@torch.no_grad()
def evaluate(f, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([f(x[i:i + batch]).detach() for i in range(0, x.shape[0], batch)])


def spectrum_extras(maps) -> dict:
    """Per-image radially averaged power spectrum of the returned maps (see ``attribution_spectrum``)."""
    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    spec = attribution_spectrum(m, average=False)
    n = m.shape[0]
    return {"spectrum": spec.power.astype(np.float32),
            "spectrum_frequencies": np.broadcast_to(spec.frequencies, (n, spec.frequencies.size)).astype(np.float32)}
