"""Feature attributions → heatmaps, and the keypoint overlay PNG (spec §8.2–§8.5).

* ``magnitude`` (default): ``M(a) = Σ_i a_i |Z̄_i|``, normalised to max |M| = 1 (§8.4);
* ``voronoi``: ``I(a) = Σ_i a_i F_i`` with the footprints F (convex weights, §8.2);
* ``contrast``: ``γ_LP ⋆ |y − γ_HP ⋆ y|`` of the ablatable content ``y = Z̄·g`` of path images,
  reduced over the path in image space (§8.3).

Maps are ``(H, W)`` float64 numpy arrays.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.imaging.filters import gaussian_blur

__all__ = ["HEATMAPS", "magnitude_map", "voronoi_map", "local_contrast", "contrast_map", "render_keypoints"]

HEATMAPS = ("magnitude", "voronoi", "contrast")


def magnitude_map(a: np.ndarray, Z: torch.Tensor) -> np.ndarray:
    """``Σ_i a_i |Z̄_i|`` over the valid features ``a (K,)``, ``Z (K, H, W)``; max |M| = 1."""
    K = a.shape[0]
    m = np.tensordot(np.asarray(a, np.float64), np.abs(Z[:K].detach().cpu().numpy().astype(np.float64)), axes=(0, 0))
    s = np.abs(m).max()
    return m / s if s > 0 else m


def voronoi_map(a: np.ndarray, footprints: torch.Tensor) -> np.ndarray:
    """``Σ_i a_i F_i``: a convex combination of the attributions at every pixel."""
    K = a.shape[0]
    return np.tensordot(np.asarray(a, np.float64), footprints[:K].detach().cpu().numpy().astype(np.float64), axes=(0, 0))


def local_contrast(y: np.ndarray, sigma_hp: float, sigma_lp: float) -> np.ndarray:
    """Eq. 4.48: ``γ_LP ⋆ |y − γ_HP ⋆ y|`` of images ``(..., H, W)``."""
    return gaussian_blur(np.abs(y - gaussian_blur(y, sigma_hp)), sigma_lp)


def contrast_map(reducer: str, Z: torch.Tensor, phi: np.ndarray, k_clt: int | None, phi_down: np.ndarray | None,
                 sigma_hp: float, sigma_lp: float) -> np.ndarray:
    """The contrast rendering combined with a path reducer (§8.3): ``h(φ) = I_img(Z̄(1 − φ))``.

    ``phi``/``phi_down``: ``(n, K)`` interior samples; ``k_clt`` indexes the ``n + 2`` samples with end points.
    """
    K = phi.shape[1]
    Zn = Z[:K].detach().cpu().numpy().astype(np.float64)

    def h(p):                                    # p (m, K) → (m, H, W)
        return local_contrast(np.tensordot(1 - p, Zn, axes=(1, 0)), sigma_hp, sigma_lp)

    if reducer == "clt":
        full = np.concatenate([np.zeros((1, K)), phi, np.ones((1, K))])
        return h(full[k_clt:k_clt + 1])[0]
    if reducer == "avg":
        return h(phi).mean(0)
    if reducer == "cav":
        if phi_down is None:
            raise ParameterError("reducer=cav needs objective=straddle")
        return (h(phi) - h(phi_down)).mean(0)
    raise ParameterError(f"heatmap=contrast has no image form for reducer={reducer!r} (use clt, avg or cav)")


def render_keypoints(image: np.ndarray, keypoints: np.ndarray, a: np.ndarray, heatmap: np.ndarray,
                     path: str | os.PathLike, *, title: str = "", force: bool = False) -> Path:
    """Write the 3-panel keypoint figure atomically (§8.5): particle with keypoint circles
    (radius √2·σ, edge colour RdBu_r(a_i/max|a|), width ∝ |a_i|, + maxima / x minima), the
    heatmap, and a bar chart of the top-12 features (index and σ)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from cryoxplain.explain.render import CMAP, symmetric_limit
    from cryoxplain.io.atomic import atomic_path

    image = np.asarray(image, np.float32)
    kp = np.asarray(keypoints, np.float64).reshape(-1, 6)
    kp = kp[np.isfinite(kp[:, 0])]
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    lo, hi = np.percentile(image, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    v = float(np.abs(a).max()) if a.size and np.abs(a).max() > 0 else 1.0
    cmap = colormaps[CMAP]
    fig = Figure(figsize=(12, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 3)
    ax[0].imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    n = min(kp.shape[0], a.shape[0])
    for i in range(n):
        x, y, s, _, pol = kp[i, :5]
        col = cmap(0.5 + 0.5 * a[i] / v)
        ax[0].add_patch(Circle((x, y), np.sqrt(2) * s, fill=False, edgecolor=col, linewidth=0.5 + 2.5 * abs(a[i]) / v))
        ax[0].plot([x], [y], marker="+" if pol > 0 else "x", color=col, markersize=5)
    ax[0].set_xlim(-0.5, image.shape[1] - 0.5)
    ax[0].set_ylim(image.shape[0] - 0.5, -0.5)
    ax[0].set_title(f"particle, {kp.shape[0]} keypoints")
    hv = symmetric_limit(heatmap)
    ax[1].imshow(heatmap, cmap=CMAP, vmin=-hv, vmax=hv, interpolation="nearest")
    ax[1].set_title("heatmap")
    for axx in ax[:2]:
        axx.set_xticks([])
        axx.set_yticks([])
    order = np.argsort(-a, kind="stable")[:12]
    ax[2].barh(np.arange(order.size), a[order], color=[cmap(0.5 + 0.5 * a[i] / v) for i in order])
    labels = [f"#{i} σ={kp[i, 2]:.1f}" if i < kp.shape[0] else f"#{i}" for i in order]
    ax[2].set_yticks(np.arange(order.size), labels, fontsize=7)
    ax[2].invert_yaxis()
    ax[2].set_title("feature attribution")
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
