"""Keypoints: refined, noise-relative extrema of the DoG band stack (spec ``sift_ablation.md`` §5).

A keypoint is ``(x, y, σ, D̂, polarity, band)``: sub-pixel position in pixel units (x = column,
y = row, first pixel centre at (0, 0)), scale σ in pixels, the refined value D̂ of the normalised
band stack, ±1 for maxima (bright blobs) / minima, and the band index l of the sample it was
refined from.  Detection is deterministic and uses only operations that commute with the grid
symmetries of the Gaussian used (see :func:`cryoxplain.imaging.filters.gaussian_blur_exact`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from cryoxplain.imaging.masks import disc_mask

from .scale_space import band_noise_norms, detection_stack, representative_sigmas

__all__ = ["DetectConfig", "estimate_noise_std", "detect_keypoints", "ablatable_bands", "KEYPOINT_FIELDS"]

KEYPOINT_FIELDS = ("x", "y", "sigma", "value", "polarity", "band")


@dataclass(frozen=True)
class DetectConfig:
    """Detector settings (§5.2; defaults of §9.1)."""

    contrast: float = 4.0          # c: multiples of the band's noise std
    contrast_floor: float = 0.03   # relative floor, fraction of max |D_j| over the ablatable bands
    edge_ratio: float = 10.0       # r of the edge test
    max_keypoints: int = 256
    keep_below: float = 1.6        # bands with upper edge ≤ this are fixed (no candidates)
    keep_above: float = 0.0        # bands with lower edge ≥ this are fixed (0 = off)
    border_px: int = 1             # excluded rim (reflecting boundary only)
    octave_steps: int = 4          # for the deduplication scale tolerance
    max_refine: int = 5


def ablatable_bands(edges: np.ndarray, keep_below: float, keep_above: float) -> np.ndarray:
    """``(M+1,)`` bool: band l is ablatable unless ``e_{l+1} ≤ keep_below`` or ``e_l ≥ keep_above > 0``."""
    e = np.asarray(edges, dtype=np.float64)
    upper = np.concatenate([e[1:], [np.inf]])
    fixed = upper <= keep_below
    if keep_above > 0:
        fixed |= e >= keep_above
    return ~fixed


def estimate_noise_std(x: np.ndarray, finest_band: np.ndarray | None = None, k0_norm: float | None = None) -> float:
    """Pixel noise std s_n (§5.3): std of the pixels outside the inscribed disc (centre N//2);
    with fewer than 16 such pixels, the MAD of the finest band divided by its noise gain."""
    x = np.asarray(x, dtype=np.float64)
    outside = disc_mask(x.shape) <= 0
    if outside.sum() >= 16:
        return float(x[outside].std())
    if finest_band is None or not k0_norm:
        return float(x.std())
    t0 = np.asarray(finest_band, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(t0 - np.median(t0))) / k0_norm)


def _derivatives(D, j, y, x, wrap):
    """Values, gradients (x, y, s) and Hessians by central differences at integer samples
    ``(j, y, x)`` (arrays of N indices): ``(N,)``, ``(N, 3)``, ``(N, 3, 3)``."""
    J, H, W = D.shape

    def v(dj, dy, dx):
        yy, xx = y + dy, x + dx
        if wrap:
            yy, xx = yy % H, xx % W
        return D[j + dj, yy, xx]

    c = v(0, 0, 0)
    dx = 0.5 * (v(0, 0, 1) - v(0, 0, -1))
    dy = 0.5 * (v(0, 1, 0) - v(0, -1, 0))
    ds = 0.5 * (v(1, 0, 0) - v(-1, 0, 0))
    dxx = v(0, 0, 1) + v(0, 0, -1) - 2 * c
    dyy = v(0, 1, 0) + v(0, -1, 0) - 2 * c
    dss = v(1, 0, 0) + v(-1, 0, 0) - 2 * c
    dxy = 0.25 * (v(0, 1, 1) - v(0, 1, -1) - v(0, -1, 1) + v(0, -1, -1))
    dxs = 0.25 * (v(1, 0, 1) - v(1, 0, -1) - v(-1, 0, 1) + v(-1, 0, -1))
    dys = 0.25 * (v(1, 1, 0) - v(1, -1, 0) - v(-1, 1, 0) + v(-1, -1, 0))
    g = np.stack([dx, dy, ds], -1)
    hess = np.stack([np.stack([dxx, dxy, dxs], -1), np.stack([dxy, dyy, dys], -1), np.stack([dxs, dys, dss], -1)], -2)
    return c, g, hess


def detect_keypoints(T, edges: np.ndarray, noise_std: float, cfg: DetectConfig = DetectConfig(),
                     border: str = "reflect") -> np.ndarray:
    """Keypoints of a band stack ``T`` ``(M+1, H, W)`` (§5.2); returns ``(K, 6)`` float64 rows
    ``(x, y, σ, D̂, polarity, band)`` sorted by descending σ, then |D̂|, then y, then x.

    ``border="periodic"`` treats the box as a torus (neighbourhoods and offsets wrap; no rim is
    excluded), matching the periodic Gaussian; ``"reflect"`` excludes ``cfg.border_px`` pixels.
    """
    e = np.asarray(edges, dtype=np.float64)
    M = e.size - 1
    Tt = T if isinstance(T, torch.Tensor) else torch.as_tensor(np.asarray(T))
    if M < 4:                                      # need interior bands 2 ≤ j ≤ M−2
        return np.zeros((0, 6))
    D = detection_stack(Tt, e).detach().cpu().numpy().astype(np.float64)   # index jj = j − 1
    J, H, W = D.shape
    wrap = border == "periodic"
    abl = ablatable_bands(e, cfg.keep_below, cfg.keep_above)
    cand_band = np.zeros(M + 1, bool)
    cand_band[2:M - 1] = True
    cand_band &= abl
    width = np.log(e[2:] / e[1:-1])                                          # (J,)
    nu = band_noise_norms(e)[1:-1] / width                                   # (J,)
    abl_stack = abl[1:-1]
    dmax = float(np.abs(D[abl_stack]).max()) if abl_stack.any() else 0.0
    thr = np.maximum(cfg.contrast * float(noise_std) * nu, cfg.contrast_floor * dmax)   # (J,)
    mode = ["nearest", "wrap", "wrap"] if wrap else "nearest"
    mx = ndimage.maximum_filter(D, size=3, mode=mode)
    mn = ndimage.minimum_filter(D, size=3, mode=mode)
    valid = np.zeros_like(D, dtype=bool)
    valid[cand_band[1:-1]] = True
    valid[0] = valid[-1] = False
    spatial = np.ones((H, W), bool)
    if not wrap and cfg.border_px > 0:
        b = cfg.border_px
        spatial[:b] = spatial[-b:] = False
        spatial[:, :b] = spatial[:, -b:] = False
    valid &= spatial[None]
    pre = 0.5 * thr[:, None, None]
    cand = valid & (((D == mx) & (D >= pre)) | ((D == mn) & (-D >= pre)))
    sbar = representative_sigmas(e)
    r = cfg.edge_ratio
    jj, y, x = (a.astype(np.int64) for a in np.nonzero(cand))
    done = np.zeros(jj.size, bool)          # converged (offset within half a sample)
    alive = np.ones(jj.size, bool)
    off = np.zeros((jj.size, 3))
    val = np.zeros(jj.size)
    hxy = np.zeros((jj.size, 3))
    for _ in range(cfg.max_refine):
        act = np.nonzero(alive & ~done)[0]
        if act.size == 0:
            break
        c, g, hess = _derivatives(D, jj[act], y[act], x[act], wrap)
        det = np.linalg.det(hess)
        ok = np.abs(det) > 1e-300
        o = np.zeros((act.size, 3))
        if ok.any():
            o[ok] = -np.linalg.solve(hess[ok], g[ok][..., None])[..., 0]
        ok &= np.all(np.isfinite(o), axis=1)
        alive[act[~ok]] = False
        small = ok & np.all(np.abs(o) <= 0.5, axis=1)
        conv = act[small]
        done[conv] = True
        off[conv] = o[small]
        val[conv] = c[small] + 0.5 * np.einsum("nk,nk->n", g[small], o[small])
        hxy[conv] = np.stack([hess[small, 0, 0], hess[small, 1, 1], hess[small, 0, 1]], -1)
        mv = act[ok & ~small]
        st = np.round(o[ok & ~small]).astype(np.int64)
        x[mv] += st[:, 0]
        y[mv] += st[:, 1]
        jj[mv] += st[:, 2]
        if wrap:
            x[mv] %= W
            y[mv] %= H
        inside = (jj[mv] >= 0) & (jj[mv] < J) & (y[mv] >= 0) & (y[mv] < H) & (x[mv] >= 0) & (x[mv] < W)
        still = np.zeros(mv.size, bool)
        still[inside] = valid[jj[mv][inside], y[mv][inside], x[mv][inside]]
        alive[mv[~still]] = False
    keep = done & alive
    keep[keep] = np.abs(val[keep]) >= thr[jj[keep]]
    dxx, dyy, dxy = hxy[:, 0], hxy[:, 1], hxy[:, 2]
    det2 = dxx * dyy - dxy * dxy
    tr = dxx + dyy
    with np.errstate(divide="ignore", invalid="ignore"):
        edge_ok = (det2 > 0) & (tr * tr < (r + 1) ** 2 / r * det2)
    keep &= edge_ok
    k = np.nonzero(keep)[0]
    j = jj[k] + 1
    px, py = x[k] + off[k, 0], y[k] + off[k, 1]
    if wrap:
        px, py = px % W, py % H
    sig = sbar[j] * (e[j + 1] / e[j]) ** off[k, 2]
    rec = np.stack([px, py, sig, val[k], np.where(val[k] > 0, 1.0, -1.0), j.astype(np.float64)], -1)
    kp = np.array(rec, dtype=np.float64).reshape(-1, 6)
    kp = _deduplicate(kp, cfg.octave_steps, (H, W) if wrap else None)
    if kp.shape[0] > cfg.max_keypoints:
        kp = kp[np.argsort(-np.abs(kp[:, 3]), kind="stable")[:cfg.max_keypoints]]
    return sort_keypoints(kp)


def sort_keypoints(kp: np.ndarray) -> np.ndarray:
    """Descending σ, then descending |D̂|, then y, then x (index 0 = the coarsest feature)."""
    if kp.shape[0] == 0:
        return kp
    order = np.lexsort((kp[:, 0], kp[:, 1], -np.abs(kp[:, 3]), -kp[:, 2]))
    return kp[order]


def _deduplicate(kp: np.ndarray, octave_steps: int, torus) -> np.ndarray:
    """Merge keypoints closer than (0.5 px, 0.5 px, half a band); keep the larger |D̂|."""
    if kp.shape[0] < 2:
        return kp
    order = np.argsort(-np.abs(kp[:, 3]), kind="stable")
    kept: list[int] = []
    for i in order:
        close = False
        for k in kept:
            dx, dy = kp[i, 0] - kp[k, 0], kp[i, 1] - kp[k, 1]
            if torus is not None:
                dy = (dy + torus[0] / 2) % torus[0] - torus[0] / 2
                dx = (dx + torus[1] / 2) % torus[1] - torus[1] / 2
            if abs(dx) < 0.5 and abs(dy) < 0.5 and abs(octave_steps * math.log2(kp[i, 2] / kp[k, 2])) < 0.5:
                close = True
                break
        if not close:
            kept.append(int(i))
    return kp[np.sort(np.array(kept))]
