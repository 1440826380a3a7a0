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

``extras``: ``component_attribution`` (B, K), the part of the total carried by singular component
k (sums over k to the map total); ``singular_values`` (B, K); ``path_t``, ``step_attribution`` and
``path_values`` (B, nodes): the path progress, each node's contribution and f along the path;
``target_value``, ``baseline_value``, ``completeness_gap`` (B,); ``spectrum``/``spectrum_frequencies``.

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
from cryoxplain.explain.base import Explainer, Param, batched_values
from cryoxplain.explain.baselines import make_baseline
from cryoxplain.explain.extras import spectrum_extras
from cryoxplain.explain.paths import RULES as PATH_RULES, integrate_path

#: the rules of :func:`cryoxplain.explain.paths.quadrature` that have a chord form on the SIG path
RULES = tuple(r for r in PATH_RULES if r in ("riemann_left", "riemann_middle", "riemann_trapezoid"))


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


class SpectralIG(Explainer):
    __doc__ = __doc__
    name = "spectral_ig"
    completeness = True
    reference = "Kim et al. Spectral Integrated Gradients (SVD coarse-to-fine paths), arXiv:2605.19607 (2026)"
    params = (
        Param("steps", int, 200, "path points (paper: 200); steps-1 gradient intervals", min=2),
        Param("overlap", float, 0.4, "gate overlap β in (0, 1] (authors' default 0.4; 1 = straight IG path)",
              min=1e-6, max=1.0),
        Param("rule", str, "riemann_left", "riemann_left (authors), riemann_middle or riemann_trapezoid",
              choices=RULES),
        Param("baseline", str, "zero", "baseline image: zero (paper) or mean (flat at each image's mean; "
              "cryoxplain.explain.baselines)", choices=("zero", "mean")),
        Param("internal_batch_size", int, 64, "path points per forward/backward pass", min=1),
    )

    def _attribute(self, f, inputs, ctx):
        x = inputs
        b = x.shape[0]
        base = make_baseline(self.baseline, x)
        path = _SVDPath(x, base, self.steps, self.overlap, self.rule)
        comp = torch.zeros(b, path.s.shape[-1], dtype=torch.float64, device=x.device)

        def f_tracked(points, idx):
            # Record each chunk's gradient to split the total by singular component:
            # contribution_k = Σ_i s_k Δg_ik · u_kᵀ ∇f(γ_i) v_k.  integrate_path calls the path's
            # velocity and then f on the same rows, so the node indices stashed by velocity() match.
            nodes = path.last_nodes

            def hook(g):
                comp.index_add_(0, idx, path.component_terms(g, nodes, idx))  # returns None: g unchanged

            if points.requires_grad:
                points.register_hook(hook)
            return f(points, idx)

        res = integrate_path(f_tracked, path, b, np.arange(path.n_nodes, dtype=np.float64),
                             np.ones(path.n_nodes), internal_batch_size=self.internal_batch_size,
                             device=x.device, dtype=x.dtype)
        maps = res.attribution[:, 0].to(torch.float64)
        f_in = batched_values(f, x, self.internal_batch_size)
        f_base = batched_values(f, base, self.internal_batch_size)
        extras = {"singular_values": path.s[:, 0].to(torch.float32),
                  "component_attribution": comp.to(torch.float32),
                  "path_t": np.broadcast_to(path.t_nodes, (b, path.n_nodes)).astype(np.float32),
                  "step_attribution": res.step_contributions.to(torch.float32),
                  "path_values": res.values.to(torch.float32),
                  "target_value": f_in, "baseline_value": f_base,
                  "completeness_gap": (maps.sum(dim=(1, 2)).cpu() - (f_in - f_base).cpu().double()).to(torch.float32)}
        extras.update(spectrum_extras(maps))
        return maps.to(torch.float32), extras


class _SVDPath:
    """The SIG path for :func:`cryoxplain.explain.paths.integrate_path`.

    Position argument = node index j; the "velocity" of node j is the chord increment of its
    interval(s) (``riemann_left``/``riemann_middle``: γ(t_{j+1}) - γ(t_j); ``riemann_trapezoid``:
    the mean of the two chords meeting at t_j), so with unit weights the sum telescopes to x - x'.
    """

    def __init__(self, inputs, baselines, steps, overlap, rule):
        self.dtype = inputs.dtype
        self.base = baselines.to(torch.float64)
        self.u, self.s, self.vh = svd_difference(inputs, baselines)  # (B,C,H,K) (B,C,K) (B,C,K,W)
        self.overlap = overlap
        t = np.linspace(0.0, 1.0, steps)
        g = gates(self.s, torch.as_tensor(t, device=inputs.device), overlap)  # (n, B, C, K)
        dg = (g[1:] - g[:-1]).permute(1, 0, 2, 3)  # (B, n-1, C, K) gate increments per interval
        if rule == "riemann_left":
            self.t_nodes, self.dgate = t[:-1], dg
        elif rule == "riemann_middle":
            self.t_nodes, self.dgate = (t[:-1] + t[1:]) / 2, dg
        else:  # trapezoid: node j carries half of each adjacent chord
            z = torch.zeros_like(dg[:, :1])
            self.t_nodes, self.dgate = t, 0.5 * (torch.cat([dg, z], 1) + torch.cat([z, dg], 1))
        self.n_nodes = len(self.t_nodes)
        self.g_nodes = gates(self.s, torch.as_tensor(self.t_nodes, device=inputs.device), overlap).permute(1, 0, 2, 3)
        self.last_nodes = None

    def _j(self, alpha):
        return torch.round(alpha.detach().to(torch.float64)).long().to(self.s.device)

    def _compose(self, coef, idx):
        return torch.einsum("mcik,mck,mckj->mcij", self.u[idx], coef, self.vh[idx])

    def __call__(self, alpha, idx):
        j = self._j(alpha)
        return (self.base[idx] + self._compose(self.s[idx] * self.g_nodes[idx, j], idx)).to(self.dtype)

    def velocity(self, alpha, idx):
        j = self._j(alpha)
        self.last_nodes = j
        return self._compose(self.s[idx] * self.dgate[idx, j], idx).to(self.dtype)

    def component_terms(self, grad, j, idx):
        proj = torch.einsum("mcik,mcij,mckj->mck", self.u[idx], grad.to(torch.float64), self.vh[idx])
        return (self.s[idx] * self.dgate[idx, j] * proj).sum(1)  # (M, K), summed over channels
