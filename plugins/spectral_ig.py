"""Spectral Integrated Gradients: IG along an SVD coarse-to-fine path.

Kim et al., "Spectral Integrated Gradients" (arXiv 2605.19607, 2026; code ``leekwoon/sig``;
seed 003).  Not a Fourier method: "spectral" refers to the singular spectrum of the
input-minus-baseline difference ``D = x - x' = Σ_k s_k u_k v_kᵀ`` (s_1 ≥ s_2 ≥ …).  The path
switches the rank-one components on from the largest singular value to the smallest (Eckart–Young:
each truncated SVD is the best approximation of D at its rank), with a linear ramp per component::

    a_k = (1 - β)(1 - s_k / s_1),   g_k(t) = clip((t - a_k) / β, 0, 1)
    γ(t) = x' + Σ_k s_k g_k(t) u_k v_kᵀ,   t ∈ [0, 1]

γ(0) = x' (all gates closed; a_1 = 0) and γ(1) = x (a_k + β ≤ 1), so completeness holds as for IG:
``Σ SIG = f(x) - f(x')``.  β → 1 recovers the straight IG path; β → 0 the hard truncated-SVD path.

The integral is the discrete line integral of the authors' code:
``Σ_i ∇f(γ(t_i)) ⊙ (γ(t_{i+1}) - γ(t_i))`` over ``steps`` path points ``t_i = i/(steps-1)``
(``riemann_left``); ``riemann_middle`` evaluates the gradient at the chord midpoints
``γ((t_i + t_{i+1})/2)`` (second order; better completeness for the same cost) and
``riemann_trapezoid`` averages both ends.  Because the increments are chords of the path, their
sum telescopes to ``x - x'`` exactly.

``extras["component_attribution"][b, k]`` is the part of the total carried by singular component k
(it sums over k to the map total) and ``extras["singular_values"]`` the s_k.

Defaults
--------
=====================  ================  ============================================================
parameter              default           source
=====================  ================  ============================================================
``overlap`` (β)        0.4               authors' code and config (``configs/spectral_ig.yaml``,
                                         ``overlap: 0.4``; the value in the seed text was lost in
                                         extraction; the paper's App. E finds 0.3–0.5 robust)
``steps``              200               paper App. B ("200 integration steps"); path points as in the
                                         authors' code (199 intervals)
``rule``               ``riemann_left``  authors' ``compute_ig`` (gradient at each interval's start)
``baseline``           ``zero``          paper ("zero baseline"); ``mean``: the image mean (constant)
channel handling       per channel       paper default (one SVD per channel; our images have one)
gating                 linear ramp       paper Eq. 6 (App. J: cosine ≈ linear > sigmoid > step)
=====================  ================  ============================================================

The paper explains the post-softmax probability of the class; in cryoxplain the target decides
(a logit or probability for classifiers, a pixel/ROI/energy/reference target for denoisers).
"""
from __future__ import annotations

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.base import Explainer, Param, explained_function

from ._common import accumulate_path, check_inputs, evaluate, spectrum_extras

RULES = ("riemann_left", "riemann_middle", "riemann_trapezoid")


def svd_difference(inputs: torch.Tensor, baselines: torch.Tensor):
    """Per-image (and per-channel) SVD of ``inputs - baselines`` (B, C, H, W): U, s, Vh (float64)."""
    d = (inputs - baselines).to(torch.float64)
    return torch.linalg.svd(d, full_matrices=False)


def gates(s: torch.Tensor, t: torch.Tensor, overlap: float) -> torch.Tensor:
    """Gate values g_k(t) for singular values ``s`` (..., K) at path progress ``t`` (M,) → (M, ..., K)."""
    if not 0.0 < overlap <= 1.0:
        raise ParameterError(f"overlap must be in (0, 1], got {overlap}")
    s1 = s[..., :1]
    rel = torch.where(s1 > 0, s / torch.where(s1 > 0, s1, torch.ones_like(s1)), torch.zeros_like(s))
    start = (1.0 - overlap) * (1.0 - rel)
    tt = t.reshape((-1,) + (1,) * s.ndim).to(s.dtype)
    return ((tt - start) / overlap).clamp(0.0, 1.0)


def spectral_path(inputs: torch.Tensor, baselines: torch.Tensor, t, overlap: float = 0.4) -> torch.Tensor:
    """Points γ(t) of the SIG path for every image: (len(t), B, C, H, W).

    ``t`` is a 1-D sequence in [0, 1]; γ(0) = baseline, γ(1) = input.
    """
    u, s, vh = svd_difference(inputs, baselines)
    tt = torch.as_tensor(np.asarray(t, dtype=np.float64), device=inputs.device)
    g = gates(s, tt, overlap)  # (M, B, C, K)
    d = torch.einsum("bcik,mbck,bckj->mbcij", u, s * g, vh)
    return (baselines.to(torch.float64) + d).to(inputs.dtype)


def make_baseline(inputs: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return inputs.mean(dim=(-2, -1), keepdim=True).expand_as(inputs).clone()
    raise ParameterError(f"baseline must be 'zero' or 'mean', got {kind!r}")


class SpectralIG(Explainer):
    __doc__ = __doc__
    name = "spectral_ig"
    reference = "Kim et al. Spectral Integrated Gradients (SVD coarse-to-fine paths), arXiv:2605.19607 (2026)"
    params = (
        Param("steps", int, 200, "path points (paper: 200); steps-1 gradient intervals", min=2),
        Param("overlap", float, 0.4, "gate overlap β in (0, 1] (authors' default 0.4; 1 = straight IG path)",
              min=1e-6, max=1.0),
        Param("rule", str, "riemann_left", "riemann_left (authors), riemann_middle or riemann_trapezoid",
              choices=RULES),
        Param("baseline", str, "zero", "baseline image: zero (paper) or mean (image mean)", choices=("zero", "mean")),
        Param("internal_batch_size", int, 64, "path points per forward/backward pass", min=1),
    )

    def attribute(self, model, inputs, target):
        check_inputs(model, inputs)
        f = explained_function(model, target)
        x = inputs.detach()
        b, c, h, w = x.shape
        base = make_baseline(x, self.baseline)
        u, s, vh = svd_difference(x, base)  # (B,1,H,K), (B,1,K), (B,1,K,W)
        n = self.steps
        t = torch.linspace(0.0, 1.0, n, dtype=torch.float64, device=x.device)
        g_nodes = gates(s, t, self.overlap)  # (n, B, 1, K)
        if self.rule == "riemann_left":
            eval_t, eval_w = [t[:-1]], [1.0]
        elif self.rule == "riemann_middle":
            eval_t, eval_w = [(t[:-1] + t[1:]) / 2], [1.0]
        else:
            eval_t, eval_w = [t[:-1], t[1:]], [0.5, 0.5]
        dg = (g_nodes[1:] - g_nodes[:-1]).permute(1, 0, 2, 3)  # (B, n-1, 1, K): gate increments
        base64 = base.to(torch.float64)

        maps = torch.zeros(b, h, w, dtype=torch.float64, device=x.device)
        comp = torch.zeros(b, s.shape[-1], dtype=torch.float64, device=x.device)
        for tv, wv in zip(eval_t, eval_w):
            g_eval = gates(s, tv, self.overlap).permute(1, 0, 2, 3)  # (B, n-1, 1, K)

            def node_fn(b_idx, j_idx, g_eval=g_eval):
                sg = s[b_idx] * g_eval[b_idx, j_idx]  # (M, 1, K)
                pts = base64[b_idx] + torch.einsum("mcik,mck,mckj->mcij", u[b_idx], sg, vh[b_idx])
                step = torch.einsum("mcik,mck,mckj->mcij", u[b_idx], s[b_idx] * dg[b_idx, j_idx], vh[b_idx])
                return pts.to(x.dtype), (wv * step).to(x.dtype)

            def on_gradient(grad, b_idx, j_idx, wv=wv):
                # contribution of component k: w · s_k Δg_k · u_kᵀ ∇f v_k
                proj = torch.einsum("mcik,mcij,mckj->mck", u[b_idx], grad.to(torch.float64), vh[b_idx])
                comp.index_add_(0, b_idx, (wv * s[b_idx] * dg[b_idx, j_idx] * proj)[:, 0])

            m, _, _ = accumulate_path(f, node_fn, b, n - 1, (h, w), self.internal_batch_size,
                                      dtype=x.dtype, device=x.device, on_gradient=on_gradient)
            maps += m
        f_in = evaluate(f, x, self.internal_batch_size)
        f_base = evaluate(f, base, self.internal_batch_size)
        extras = {"singular_values": s[:, 0].to(torch.float32),
                  "component_attribution": comp.to(torch.float32),
                  "f_input": f_in, "f_baseline": f_base,
                  "delta": (maps.sum(dim=(1, 2)) - (f_in - f_base).to(torch.float64)).to(torch.float32)}
        extras.update(spectrum_extras(maps))
        return self.make_attribution(maps.to(torch.float32), target, model, **extras)
