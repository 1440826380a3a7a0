"""Generate the figures of docs/spiral.md into docs/img/ (deterministic; CPU; a few seconds).

    python scripts/make_spiral_figures.py [--out docs/img]

* ``spiral_sampling.png`` – the spiral samples of a 32 px box over the pixel grid (thesis Fig. 7.3);
* ``spiral_ribbon.png``   – a 3-row ribbon around a coarse spiral, with the normals (Fig. 7.4);
* ``spiral_kernel_response.png`` – Dirac peaks convolved once with an asymmetric kernel: each peak
  is replaced by a copy of the kernel rotated with the peak's angle (Fig. 7.5).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from cryoxplain.geometry.spiral import spiral_geometry, spiral_operators  # noqa: E402
from cryoxplain.models.spiral import SparseResampler, SpiralConv2d  # noqa: E402


def fig_sampling(out: Path):
    g = spiral_geometry(32)
    p = g.points() + g.center
    fig, ax = plt.subplots(figsize=(6, 6))
    n = g.box_size
    for v in np.arange(-0.5, n, 1):
        ax.axhline(v, color="0.9", lw=0.5)
        ax.axvline(v, color="0.9", lw=0.5)
    ax.plot(p[:, 0], p[:, 1], "-", color="0.6", lw=0.5)
    sc = ax.scatter(p[:, 0], p[:, 1], c=np.arange(len(p)), s=6, cmap="viridis")
    for rad, ls, lab in ((g.radius, "-", f"disc R = {g.radius:g} px"),
                         (g.mask_radius, "--", f"mask R − Δr = {g.mask_radius:.2f} px")):
        ax.add_patch(plt.Circle((g.center, g.center), rad, fill=False, ls=ls, color="C3", label=lab))
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(f"spiral sampling, box {n}: n_wind={g.n_wind}, n_spls={g.n_spls}\n"
                 f"winding spacing {g.winding_spacing:.3f} px, path spacing {g.path_spacing:.3f} px")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(sc, ax=ax, shrink=0.7, label="sample index i")
    fig.tight_layout()
    fig.savefig(out / "spiral_sampling.png", dpi=110)
    plt.close(fig)


def fig_ribbon(out: Path):
    g = spiral_geometry(24, n_wind=6, n_spls=160)   # coarse, as in the thesis's Fig. 7.4
    ops = spiral_operators(g, 3, disk_cache=False)
    pts = g.points()
    rib = g.ribbon_points(3)
    A = ops.ribbon(3)
    defined = np.diff(A.indptr).reshape(3, -1) > 0
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    ax.plot(pts[:, 0], pts[:, 1], "-", color="k", lw=1, label="spiral (row 1 = path samples)")
    for a, col in ((0, "C0"), (2, "C1")):
        ax.plot(rib[a, :, 0], rib[a, :, 1], "-", color=col, lw=0.8,
                label=f"ribbon row {a} ({'inner' if a == 0 else 'outer'}, offset {a - 1:+d}·Δr)")
        bad = ~defined[a]
        if bad.any():
            ax.plot(rib[a, bad, 0], rib[a, bad, 1], "x", color="C3", ms=4)
    ax.plot([], [], "x", color="C3", label="outside the hull: zero (padding)")
    nrm = g.normals()
    sel = slice(0, g.n_spls, 4)
    ax.quiver(pts[sel, 0], pts[sel, 1], nrm[sel, 0], nrm[sel, 1], angles="xy", scale_units="xy",
              scale=1 / g.winding_spacing, width=0.003, color="0.4")
    ax.add_patch(plt.Circle((0, 0), g.radius, fill=False, ls=":", color="C3"))
    ax.set_aspect("equal")
    ax.set_title(f"3-row ribbon (n_wind={g.n_wind}, n_spls={g.n_spls}); arrows: normals × Δr")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "spiral_ribbon.png", dpi=110)
    plt.close(fig)


def fig_response(out: Path):
    box, k = 64, 5
    g = spiral_geometry(box)
    ops = spiral_operators(g, k, disk_cache=False)
    conv = SpiralConv2d(1, 1, k, ribbon=SparseResampler(ops.ribbon(k)), bias=False)
    W = np.zeros((k, k))
    W[0, :4] = 1.0
    W[1:4, 0] = 1.0
    with torch.no_grad():
        conv.weight[:] = torch.tensor(W, dtype=torch.float32)
    img = np.zeros((box, box))
    c = g.center
    for rad in (0.35, 0.7):
        for a in np.deg2rad(np.arange(0, 360, 45) + (0 if rad < 0.5 else 22.5)):
            img[int(round(c + rad * g.radius * np.sin(a))), int(round(c + rad * g.radius * np.cos(a)))] = 1
    with torch.no_grad():
        s = SparseResampler(ops.grid_to_spiral)(torch.tensor(img, dtype=torch.float32).reshape(1, 1, -1))
        y = SparseResampler(ops.spiral_to_grid)(conv(s)).reshape(box, box).numpy()
    fig, axs = plt.subplots(1, 3, figsize=(12, 4.3), gridspec_kw={"width_ratios": [1, 3, 3]})
    axs[0].imshow(W, cmap="gray_r")
    axs[0].set_title("kernel\n(rows: inner→outer,\ncols: along the path)", fontsize=9)
    axs[1].imshow(img, cmap="gray_r")
    axs[1].set_title("input: Dirac peaks")
    axs[2].imshow(y, cmap="gray_r")
    axs[2].set_title("one spiral convolution")
    for ax in axs:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "spiral_kernel_response.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig_sampling(out)
    fig_ribbon(out)
    fig_response(out)
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('spiral_*.png')))} to {out}")


if __name__ == "__main__":
    main()
