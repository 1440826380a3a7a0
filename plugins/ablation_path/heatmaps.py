"""Path → heatmap reductions (thesis §2.7.2), with the sign errata of the spec fixed.

The thesis's Θ_clt and Θ_avg are "high = ablated early = *un*important" and Θ_cav is negative
on salient regions; every reducer here returns **higher = more salient** (as cryoxplain's sign
convention and the pointing game's arg-max expect):

====== ============================================ =========================================
name   formula (φ_0 = 0, φ_{n+1} = 1, Δt = 1/(n+1))  thesis
====== ============================================ =========================================
clt    1 − φ(t_clt)                                 Eq. 2.34 (sign fixed)
avg    1 − ∫₀¹ φ dt  (trapezoid incl. end points)   Eq. 2.33 (sign fixed)
iwa    (n+1) Σ_k (F_k − F_{k+1})(φ_{k+1} − φ_k)     Eq. 2.35 (already salient-high)
cav    ∫₀¹ (φ↓ − φ↑) dt                             Eq. 2.36 (sign fixed), straddle only
====== ============================================ =========================================
"""
from __future__ import annotations

import numpy as np

REDUCERS = ("auto", "clt", "avg", "iwa", "cav")


def with_end_points(phi: np.ndarray) -> np.ndarray:
    """``(n, h, w)`` interior samples → ``(n+2, h, w)`` with φ(0) = 0 and φ(1) = 1."""
    z = np.zeros((1,) + phi.shape[1:], dtype=phi.dtype)
    return np.concatenate([z, phi, z + 1])


def transition_index(scores: np.ndarray, is_top: np.ndarray | None = None) -> tuple[int, bool]:
    """Index ``k`` (into the n+2 samples incl. end points) of the class-transition mask.

    With ``is_top`` (classifier: the explained class ranks first at sample k) the **largest** k
    where it does – "the most confined mask that results in the classification of interest";
    without a crossing the arg-max of F (the thesis's fallback; ``crossing=False``).  For targets
    without classes, the largest k at which F is still closer to F(x_Tg) than to F(x_BL).
    Returns ``(k, crossing)``; k is at least 1 and at most n (an interior sample).
    """
    n2 = scores.shape[0]
    inner = np.arange(1, n2 - 1)
    if is_top is not None:
        top = np.asarray(is_top, dtype=bool)
        cand = inner[top[inner]]
        crossing = bool(top[0]) and not bool(top[-1])
        if cand.size and crossing:
            return int(cand.max()), True
        return int(inner[np.argmax(scores[inner])]), False
    f0, f1 = scores[0], scores[-1]
    close = np.abs(scores - f0) <= np.abs(scores - f1)
    cand = inner[close[inner]]
    crossing = bool(f0 != f1)
    if cand.size and crossing:
        return int(cand.max()), True
    return int(inner[np.argmax(scores[inner])]), False


def reduce_path(kind: str, phi: np.ndarray, scores: np.ndarray | None = None, k_clt: int | None = None,
                phi_down: np.ndarray | None = None) -> np.ndarray:
    """One heatmap (mask grid) from one path ``phi`` ``(n, h, w)`` (interior samples).

    ``scores`` ``(n+2,)``: F along the path including the end points (for ``iwa``);
    ``k_clt``: transition index into the n+2 samples (for ``clt``); ``phi_down`` for ``cav``.
    """
    n = phi.shape[0]
    full = with_end_points(phi)
    if kind == "clt":
        if k_clt is None:
            raise ValueError("clt needs the transition index")
        return 1.0 - full[k_clt]
    if kind == "avg":
        return 1.0 - (phi.sum(0) + 0.5) / (n + 1)
    if kind == "iwa":
        if scores is None:
            raise ValueError("iwa needs the score curve")
        dF = scores[:-1] - scores[1:]                     # F_k − F_{k+1}
        dphi = np.diff(full, axis=0)                      # φ_{k+1} − φ_k
        return (n + 1) * np.tensordot(dF, dphi, axes=(0, 0))
    if kind == "cav":
        if phi_down is None:
            raise ValueError("cav needs the straddling pair (objective=straddle)")
        return (phi_down - phi).mean(0)
    raise ValueError(f"unknown reducer {kind!r}")


def window(h: int, w: int, centre: str = "pixel-edge") -> np.ndarray:
    """Eq. 2.37: ``sqrt(sin(πx) sin(πy))``.  ``centre="pixel-edge"`` (the thesis's): on pixel centres,
    x = (i + ½)/N ∈ (0, 1), symmetric about (N−1)/2; ``"box"``: x = i/N, zero on row/column 0 and
    symmetric about N//2 under the periodic turn i → −i mod N (the package's ``rot90``)."""
    off = 0.5 if centre == "pixel-edge" else 0.0
    y = (np.arange(h) + off) / h
    x = (np.arange(w) + off) / w
    return np.sqrt(np.abs(np.outer(np.sin(np.pi * y), np.sin(np.pi * x))))


def apply_window(theta: np.ndarray, centre: str = "pixel-edge") -> np.ndarray:
    """Window post-processing (Eq. 2.37) followed by normalisation to max |Θ| = 1."""
    out = theta * window(*theta.shape, centre=centre)
    m = np.abs(out).max()
    return out / m if m > 0 else out
