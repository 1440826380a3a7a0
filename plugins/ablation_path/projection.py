"""Projection of mask paths onto the ablation-path axioms (Sagemüller, thesis Part II §2.6.2).

A batch of discretised paths is a tensor ``Φ`` of shape ``(..., n, h, w)``: ``n`` interior time
samples at ``t_j = (j+1)/(n+1)``; the end points ``φ(0) = 0`` and ``φ(1) = 1`` are implicit and
never stored (Eq. 2.30).  The repair after every gradient step is

1. per-pixel L∞-optimal monotonisation in t (Algorithm 1, "descent flattening"),
2. clamping to [0, 1],
3. re-parametrisation to constant speed, ``mean(Φ[j]) = t_j`` (Lemma 7).

Also here: artificial saturation (Eq. 2.26), boundary pinching (Eq. 2.27–2.29) and a checker of
the path axioms used by the tests.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = [
    "t_grid", "monotonise_linf", "monotonise_columns", "monotonise", "monotonise_fast",
    "reparametrise", "repair", "saturate", "pinch", "path_saturation", "check_path_axioms",
    "linf_lower_bound",
]


def t_grid(n: int) -> np.ndarray:
    """The interior time samples ``(j+1)/(n+1)``, ``j = 0..n-1`` (Eq. 2.30)."""
    return np.arange(1, n + 1, dtype=np.float64) / (n + 1)


# --------------------------------------------------------------------------------------------
# Algorithm 1: L∞-optimal monotonisation of one sequence ("descent flattening")
# --------------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _monotonise_1d(p, out):
    """Make ``p`` non-decreasing with the smallest possible max-deviation, writing into ``out``.

    Discrete form of thesis Algorithm 1: find the maximal runs of strict decrease ("cores"),
    grow each core from its centre line ``m = (ymax + ymin)/2`` until the original sequence
    meets the line non-decreasingly, merge grown intervals that overlap or touch with centre
    lines out of order (and re-grow from the merged centre line), then flatten every grown
    interval to its centre line.  Samples outside all grown intervals are left unchanged.
    """
    n = p.shape[0]
    for i in range(n):
        out[i] = p[i]
    # cores: (l, r, ymax, ymin)
    cl = np.empty(n, np.int64)
    cr = np.empty(n, np.int64)
    chi = np.empty(n, np.float64)
    clo = np.empty(n, np.float64)
    nc = 0
    i = 0
    while i < n - 1:
        if p[i] > p[i + 1]:
            r = i
            while r < n - 1 and p[r] > p[r + 1]:
                r += 1
            cl[nc] = i
            cr[nc] = r
            chi[nc] = p[i]
            clo[nc] = p[r]
            nc += 1
            i = r
        else:
            i += 1
    if nc == 0:
        return
    gl = np.empty(n, np.int64)
    gr = np.empty(n, np.int64)
    while True:
        # grow every core from its centre line, never past the neighbouring cores
        for k in range(nc):
            m = 0.5 * (chi[k] + clo[k])
            llim = cr[k - 1] if k > 0 else 0
            rlim = cl[k + 1] if k < nc - 1 else n - 1
            a = cl[k]
            while a > llim and p[a - 1] > m:
                a -= 1
            b = cr[k]
            while b < rlim and p[b + 1] < m:
                b += 1
            gl[k] = a
            gr[k] = b
        # merge consecutive grown intervals that overlap or touch with centre lines out of order
        merged = False
        w = 0
        k = 0
        while k < nc:
            l0, r0, h0, lo0 = cl[k], cr[k], chi[k], clo[k]
            g0, g1 = gl[k], gr[k]
            k2 = k + 1
            while k2 < nc:
                m_cur = 0.5 * (h0 + lo0)
                m_nxt = 0.5 * (chi[k2] + clo[k2])
                if gl[k2] <= g1 + 1 and m_nxt < m_cur:
                    r0 = cr[k2]
                    h0 = max(h0, chi[k2])
                    lo0 = min(lo0, clo[k2])
                    g1 = max(g1, gr[k2])
                    merged = True
                    k2 += 1
                else:
                    break
            cl[w], cr[w], chi[w], clo[w] = l0, r0, h0, lo0
            gl[w], gr[w] = g0, g1
            w += 1
            k = k2
        nc = w
        if not merged:
            break
    for k in range(nc):
        m = 0.5 * (chi[k] + clo[k])
        for j in range(gl[k], gr[k] + 1):
            out[j] = m


def monotonise_linf(p) -> np.ndarray:
    """Algorithm 1 on one 1-D sequence; returns a new float64 array (the reference routine)."""
    p = np.ascontiguousarray(p, dtype=np.float64)
    out = np.empty_like(p)
    _monotonise_1d(p, out)
    return out


@numba.njit(cache=True, parallel=False)
def _monotonise_cols(a, out):
    n, m = a.shape
    col = np.empty(n, np.float64)
    res = np.empty(n, np.float64)
    for c in range(m):
        for i in range(n):
            col[i] = a[i, c]
        _monotonise_1d(col, res)
        for i in range(n):
            out[i, c] = res[i]


def monotonise_columns(a: np.ndarray) -> np.ndarray:
    """Algorithm 1 applied to every column of a ``(n, m)`` array (time along axis 0)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    out = np.empty_like(a)
    _monotonise_cols(a, out)
    return out


def linf_lower_bound(p) -> float:
    """``max_{s<t} (p_s - p_t)/2``: the smallest L∞ error any non-decreasing fit can have."""
    p = np.asarray(p, dtype=np.float64)
    return float(max(0.0, np.max(np.maximum.accumulate(p) - p) / 2)) if p.size else 0.0


def monotonise_fast(phi: torch.Tensor) -> torch.Tensor:
    """Vectorised L∞-optimal monotonisation along dim −3: ``½(cummax_{s≤t} + cummin_{s≥t})``.

    Also L∞-optimal, but less local than Algorithm 1 (it may change samples next to a violation
    that Algorithm 1 keeps); offered as the ``monotonise="fast"`` option for large GPU batches.
    """
    up = torch.cummax(phi, dim=-3).values
    down = torch.flip(torch.cummin(torch.flip(phi, dims=(-3,)), dim=-3).values, dims=(-3,))
    return 0.5 * (up + down)


def monotonise(phi: torch.Tensor, method: str = "exact") -> torch.Tensor:
    """Monotonise every pixel's time series of ``phi`` ``(..., n, h, w)``.

    ``method="exact"``: Algorithm 1 (numba, on the CPU); ``"fast"``: :func:`monotonise_fast`.
    """
    if method == "fast":
        return monotonise_fast(phi)
    if method != "exact":
        raise ValueError(f"unknown monotonisation {method!r}")
    shape = phi.shape
    n = shape[-3]
    a = phi.detach().to("cpu", torch.float64).reshape(-1, n, shape[-2] * shape[-1])
    a = a.permute(1, 0, 2).reshape(n, -1).numpy()
    out = torch.from_numpy(monotonise_columns(a))
    out = out.reshape(n, -1, shape[-2] * shape[-1]).permute(1, 0, 2).reshape(shape)
    return out.to(device=phi.device, dtype=phi.dtype)


# --------------------------------------------------------------------------------------------
# Lemma 7: re-parametrisation to constant speed
# --------------------------------------------------------------------------------------------

def _weighted_mass(a: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mass of masks ``(b, k, hw)``: the plain mean, or ``Σ ω·a`` with weights ``(b, hw)`` summing to 1."""
    if weights is None:
        return a.to(torch.float64).mean(dim=2)
    return (a.to(torch.float64) * weights.to(torch.float64).reshape(a.shape[0], 1, -1)).sum(dim=2)


def reparametrise(phi: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Re-parametrise monotone, clamped paths ``(..., n, h, w)`` so that ``mean(Φ[j]) = t_j``.

    ``weights`` ``(..., h, w)`` (each summing to 1): the mass is the ω-weighted sum instead of the
    mean (the SIFT plugin's ``metric=l2``, spec sift_ablation §7.2); None = uniform.

    With the implicit end points ``E[0] = 0`` and ``E[n+1] = 1`` and masses ``M[k] = mean(E[k])``
    (non-decreasing), the mask for target mass ``w = t_j`` is ``(1−η)E[il] + ηE[il+1]`` where
    ``il`` is the last index with ``M ≤ w`` and ``η = (w − M[il])/(M[il+1] − M[il])``; the mass
    is linear, so the result has mass ``w`` exactly.  A path that already has constant speed is
    returned unchanged (``η = 0``), so the operation is idempotent.
    """
    shape = phi.shape
    n, h, w = shape[-3:]
    flat = phi.reshape(-1, n, h * w)
    b = flat.shape[0]
    zeros = torch.zeros(b, 1, h * w, dtype=phi.dtype, device=phi.device)
    ext = torch.cat([zeros, flat, torch.ones_like(zeros)], dim=1)            # (b, n+2, hw)
    mass = _weighted_mass(ext, None if weights is None else weights.reshape(b, h * w))  # (b, n+2)
    mass[:, 0], mass[:, -1] = 0.0, 1.0
    mass = torch.cummax(mass, dim=1).values.contiguous()
    wt = torch.as_tensor(t_grid(n), dtype=torch.float64, device=phi.device).expand(b, n).contiguous()
    il = (torch.searchsorted(mass, wt, right=True) - 1).clamp(0, n)           # last M <= w
    ir = il + 1
    m_l = torch.gather(mass, 1, il)
    m_r = torch.gather(mass, 1, ir)
    eta = ((wt - m_l) / (m_r - m_l).clamp_min(1e-300)).clamp(0.0, 1.0).to(phi.dtype)
    e_l = torch.gather(ext, 1, il.unsqueeze(-1).expand(b, n, h * w))
    e_r = torch.gather(ext, 1, ir.unsqueeze(-1).expand(b, n, h * w))
    out = (1 - eta).unsqueeze(-1) * e_l + eta.unsqueeze(-1) * e_r
    return out.reshape(shape)


def repair(phi: torch.Tensor, method: str = "exact", weights: torch.Tensor | None = None) -> torch.Tensor:
    """Hard projection of Algorithm 2, lines 12–15: monotonise, clamp to [0,1], re-parametrise
    (with the mass weights ``weights``, see :func:`reparametrise`)."""
    return reparametrise(monotonise(phi, method).clamp(0.0, 1.0), weights)


# --------------------------------------------------------------------------------------------
# Soft constraints
# --------------------------------------------------------------------------------------------

def saturate(phi: torch.Tensor, zeta: float) -> torch.Tensor:
    """Artificial saturation Π_sat (Eq. 2.26): ½(tanh((2φ−1)ζ)/tanh(ζ) + 1); identity at ζ = 0.

    0, ½ and 1 are fixpoints; 0 and 1 attract, ½ repels.
    """
    if zeta <= 0:
        return phi
    return 0.5 * (torch.tanh((2 * phi - 1) * zeta) / np.tanh(zeta) + 1)


def pinch(phi_up: torch.Tensor, phi_down: torch.Tensor, zeta: float) -> torch.Tensor:
    """Boundary pinching (Eq. 2.27–2.29): ``φ↓ ← φ↑ + Π(φ↓ − φ↑)``, ``Π(δ) = δ(1−ζ) + δ²ζ``.

    Removes small positive and all negative differences (δ = 0 attracts, δ = 1 repels); φ↑ is
    never changed.  Returns the new φ↓.
    """
    d = phi_down - phi_up
    return phi_up + d * (1 - zeta) + d * d * zeta


def path_saturation(phi: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Discretised Eq. 2.31, ``mean 2|φ − ½|`` over time and space; one value per path.  With
    mass weights ``(..., h, w)``: the mean over time of ``Σ ω·2|φ − ½|``."""
    if weights is None:
        return (2 * (phi - 0.5).abs()).flatten(-3).mean(-1)
    s = 2 * (phi - 0.5).abs() * weights.unsqueeze(-3).to(phi.dtype)
    return s.flatten(-2).sum(-1).mean(-1)


def check_path_axioms(phi, atol: float = 1e-6, weights=None) -> dict:
    """Measure how far ``phi`` ``(..., n, h, w)`` is from the axioms of an ablation path.

    Returns the worst monotonicity violation, range violation and mass error ``|mean(Φ[j]) − t_j|``
    (the end points are implicit: monotonicity includes 0 ≤ Φ[0] and Φ[n−1] ≤ 1) and ``ok``.
    """
    phi = torch.as_tensor(phi).detach().to("cpu", torch.float64)
    n = phi.shape[-3]
    diffs = phi.diff(dim=-3)
    mono = float((-diffs).clamp_min(0).max()) if n > 1 else 0.0
    rng = float(max((-phi).clamp_min(0).max(), (phi - 1).clamp_min(0).max()))
    if weights is None:
        mass = phi.flatten(-2).mean(-1)
    else:
        w = torch.as_tensor(weights).detach().to("cpu", torch.float64).unsqueeze(-3)
        mass = (phi * w).flatten(-2).sum(-1)
    t = torch.as_tensor(t_grid(n))
    merr = float((mass - t).abs().max())
    return {"monotone": mono, "range": rng, "mass": merr,
            "ok": mono <= atol and rng <= atol and merr <= atol}
