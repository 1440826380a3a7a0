"""PNG figures of attributions for a person to look at.

One figure per particle, three panels: the particle (grey), the attribution alone and the
attribution over the particle.  The attribution uses a diverging colormap (``RdBu_r``: red =
positive, blue = negative, white = 0) centred at zero with symmetric limits ``±v`` where ``v`` is
the 99.5th percentile of ``|A|`` (so one hot pixel does not wash out the map); a colorbar gives the
scale.  Matplotlib's object API is used (no global pyplot state), so rendering is thread-safe and
works headless.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path

CMAP = "RdBu_r"


def symmetric_limit(attribution: np.ndarray, percentile: float = 99.5) -> float:
    """``v`` of the colour scale ``[−v, v]``: a high percentile of ``|A|`` (1 when the map is all zero)."""
    a = np.abs(np.asarray(attribution, dtype=np.float64))
    v = float(np.percentile(a, percentile)) if a.size else 0.0
    if not np.isfinite(v) or v <= 0:
        v = float(a.max()) if a.size and np.isfinite(a.max()) and a.max() > 0 else 1.0
    return v


def render_overlay(image: np.ndarray, attribution: np.ndarray, path: str | os.PathLike, *,
                   title: str = "", label: str = "attribution", alpha: float = 0.6, force: bool = False,
                   inputs: tuple = ()) -> Path:
    """Write a 3-panel PNG (particle | attribution | overlay) atomically; return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = np.asarray(image, dtype=np.float32)
    attribution = np.asarray(attribution, dtype=np.float32)
    v = symmetric_limit(attribution)
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0, 1)
    if hi <= lo:
        lo, hi = float(image.min()), float(image.min()) + 1.0

    fig = Figure(figsize=(10.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    axes[0].set_title("particle")
    im = axes[1].imshow(attribution, cmap=CMAP, vmin=-v, vmax=v, interpolation="nearest")
    axes[1].set_title(label)
    axes[2].imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    axes[2].imshow(attribution, cmap=CMAP, vmin=-v, vmax=v, alpha=alpha, interpolation="nearest")
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    cb = fig.colorbar(im, ax=list(axes), fraction=0.025, pad=0.02)
    cb.set_label(f"{label} (red > 0 > blue)")
    if title:
        fig.suptitle(title, fontsize=10)
    with atomic_path(path, force=force, inputs=inputs) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
