"""Deletion and Insertion faithfulness curves (Petsiuk, Das, Saenko, "RISE", BMVC 2018).

Used by the ``lowpass_gradient`` plugin to choose the FORGrad cutoff as in Muzellec et al.
("Gradient strikes back", seed 002, §3.4): σ* maximises the mean of Insertion − Deletion.

For an attribution map φ of image x and the explained function f (a :class:`Target` of the
model's output, so this works for denoisers as well as classifiers):

* pixels are ordered by decreasing φ (most relevant first; ties keep raster order);
* step k = 0 … K replaces the first ⌊k·N/K⌋ pixels by the baseline (Deletion) or, starting from the
  baseline image, inserts them from x (Insertion), and records f;
* the score is the trapezoid area under the curve over the fraction of pixels changed, i.e.
  ``mean_k (s_k + s_{k+1}) / 2`` (Xplique's normalisation; K = 10 and baseline 0 by default).

Lower Deletion and higher Insertion are better.  The values are in the units of f (the paper uses
class probabilities; with a logit or a denoiser target they are logits or intensities).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ShapeError


@dataclass
class FaithfulnessCurves:
    fractions: np.ndarray  # (K+1,)
    deletion_curve: np.ndarray  # (B, K+1)
    insertion_curve: np.ndarray  # (B, K+1)

    @property
    def deletion(self) -> np.ndarray:
        c = self.deletion_curve
        return ((c[:, 1:] + c[:, :-1]) / 2).mean(1)

    @property
    def insertion(self) -> np.ndarray:
        c = self.insertion_curve
        return ((c[:, 1:] + c[:, :-1]) / 2).mean(1)


@torch.no_grad()
def deletion_insertion(f, inputs: torch.Tensor, maps, steps: int = 10, baseline: float = 0.0,
                       batch: int = 64) -> FaithfulnessCurves:
    """Deletion and Insertion curves of ``maps`` (B, H, W) for images ``inputs`` (B, 1, H, W).

    ``f`` is called as ``f(points, idx)`` with ``idx`` the image each row belongs to (see
    :func:`cryoxplain.explain.base.explained_function`).
    """
    x = inputs.detach()
    m = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).to(x.device)
    b, _, h, w = x.shape
    if m.shape != (b, h, w):
        raise ShapeError(f"maps must be {(b, h, w)}, got {tuple(m.shape)}")
    n = h * w
    order = torch.argsort(-m.reshape(b, n).double(), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=x.device).expand(b, n))
    counts = [(k * n) // steps for k in range(steps + 1)]
    flat = x.reshape(b, n)
    base = torch.full_like(flat, float(baseline))
    dele, ins = [], []
    for c in counts:
        top = rank < c  # (B, N) the first c pixels of each image's order
        dele.append(torch.where(top, base, flat))
        ins.append(torch.where(top, flat, base))
    pts = torch.stack(dele + ins, 1).reshape(-1, 1, h, w)  # (B * 2(K+1), 1, H, W)
    idx = torch.arange(b, device=x.device).repeat_interleave(2 * (steps + 1))
    vals = torch.cat([f(pts[i:i + batch], idx[i:i + batch]) for i in range(0, pts.shape[0], batch)])
    vals = vals.double().reshape(b, 2, steps + 1).cpu().numpy()
    return FaithfulnessCurves(np.asarray(counts) / n, vals[:, 0], vals[:, 1])
