"""Baselines x_BL for ablation paths.

* ``blur`` – the thesis's blurred target (Eq. 2.32): for a classifier the smallest σ in
  ``[sigma_min, sigma_max]`` whose blurred image is classified differently from the target
  (arg-max changes); for other targets a fixed σ.
* ``noise`` – cryo-EM: a noise-only image: Gaussian noise with the mean and standard deviation of
  the particle's background (the pixels outside the disc inscribed in the box), i.e. what the
  detector records where there is no particle (seeded).
* ``mean`` – cryo-EM: the mean image of a particle stack (``baseline_path``: an MRC image or
  stack, whose mean is taken) or, without a file, of the batch being explained.
* ``zero`` – all zeros (the normalised-background value of a normalised particle stack).
* ``file`` – the image(s) of ``baseline_path``: one image for all, or one per input.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from cryoxplain.errors import ParameterError, ShapeError

BASELINES = ("blur", "noise", "mean", "zero", "file")


def gaussian_blur_np(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D image (reflect boundary, truncated at 4σ)."""
    return ndimage.gaussian_filter(np.asarray(img, dtype=np.float64), sigma, mode="reflect").astype(np.float32)


def sigma_grid(sigma_min: float, sigma_max: float, num: int = 16) -> np.ndarray:
    return np.geomspace(sigma_min, sigma_max, num)


def minimal_flip_blur(x: np.ndarray, predict, sigma_min: float = 4.0, sigma_max: float = 100.0,
                      num: int = 16, refine: int = 4) -> tuple[np.ndarray, float, bool]:
    """Blurred ``x`` with the smallest σ ∈ [sigma_min, sigma_max] that changes ``predict``'s class.

    ``predict(images (N, H, W)) -> (N,)`` class indices.  σ is searched on a geometric grid of
    ``num`` values and then refined by ``refine`` bisection steps (in log σ) between the last
    non-flipping and the first flipping grid value.  Returns ``(baseline, sigma, flipped)``; when
    no σ flips the class, the σ_max blur is returned with ``flipped=False`` (the thesis leaves
    this case open; the explainer records the flag).
    """
    c0 = int(predict(x[None])[0])
    grid = sigma_grid(sigma_min, sigma_max, num)
    blurred = np.stack([gaussian_blur_np(x, s) for s in grid])
    cls = np.asarray(predict(blurred))
    flips = np.nonzero(cls != c0)[0]
    if flips.size == 0:
        return blurred[-1], float(grid[-1]), False
    k = int(flips[0])
    if k == 0:
        return blurred[0], float(grid[0]), True
    lo, hi, best = grid[k - 1], grid[k], blurred[k]
    for _ in range(refine):
        mid = float(np.sqrt(lo * hi))
        bm = gaussian_blur_np(x, mid)
        if int(predict(bm[None])[0]) != c0:
            hi, best = mid, bm
        else:
            lo = mid
    return best, float(hi), True


def noise_baseline(x: np.ndarray, rng: np.random.Generator, radius_frac: float = 0.5) -> np.ndarray:
    """Gaussian noise with the mean/std of the pixels outside the inscribed disc of ``x``."""
    h, w = x.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    bg = x[r > radius_frac * min(h, w)]
    if bg.size < 16:
        bg = x.ravel()
    return (rng.standard_normal(x.shape) * bg.std() + bg.mean()).astype(np.float32)


def load_baseline_file(path: str) -> np.ndarray:
    """Images of an MRC file as ``(N, H, W)`` float32."""
    from cryoxplain.io.mrc import read_mrc

    data = read_mrc(path)
    arr = np.asarray(data[0] if isinstance(data, tuple) else getattr(data, "data", data), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ShapeError(f"baseline file {path} holds a {arr.ndim}-D array; expected an image or a stack")
    return arr


def normalize_per_image(imgs: np.ndarray) -> np.ndarray:
    """``(x − μ)/σ`` per image (σ = 0 → 1): the normalisation cryoxplain's models are trained with."""
    mu = imgs.mean(axis=(-2, -1), keepdims=True)
    sd = imgs.std(axis=(-2, -1), keepdims=True)
    return ((imgs - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def looks_normalized(x: np.ndarray, tol: float = 1e-3) -> bool:
    """True when every image of ``x`` has mean ≈ 0 and standard deviation ≈ 1."""
    mu = x.mean(axis=(-2, -1))
    sd = x.std(axis=(-2, -1))
    return bool(np.all(np.abs(mu) < tol) and np.all(np.abs(sd - 1) < 10 * tol))


def make_baselines(kind: str, x: np.ndarray, *, predict=None, sigma: float = 0.0, sigma_min: float = 4.0,
                   sigma_max: float = 100.0, path: str = "", seed: int = 0, normalize_file: bool = False):
    """Baselines for a batch ``x`` ``(B, H, W)``.  Returns ``(x_bl (B,H,W), sigmas (B,), flipped (B,))``.

    ``sigma > 0`` fixes the blur σ; ``sigma = 0`` searches the minimal flipping σ with
    ``predict`` (classifiers) and falls back to ``sigma_min`` without one.  ``normalize_file``
    normalises the images of ``path`` per image before use (when the inputs are normalised).
    """
    B, H, W = x.shape
    sig = np.full(B, np.nan)
    flipped = np.zeros(B, dtype=bool)
    if kind == "blur":
        out = np.empty_like(x)
        for b in range(B):
            if sigma > 0 or predict is None:
                s = sigma if sigma > 0 else sigma_min
                out[b], sig[b] = gaussian_blur_np(x[b], s), s
                if predict is not None:
                    flipped[b] = int(predict(out[b][None])[0]) != int(predict(x[b][None])[0])
            else:
                out[b], sig[b], flipped[b] = minimal_flip_blur(x[b], predict, sigma_min, sigma_max)
        return out, sig, flipped
    if kind == "noise":
        rng = np.random.default_rng(seed)
        out = np.stack([noise_baseline(x[b], rng) for b in range(B)])
    elif kind == "zero":
        out = np.zeros_like(x)
    elif kind in ("mean", "file"):
        if path:
            imgs = load_baseline_file(path)
            if normalize_file:
                imgs = normalize_per_image(imgs)
            if imgs.shape[1:] != (H, W):
                raise ShapeError(f"baseline file {path} has images of {imgs.shape[1:]}, inputs are {(H, W)}")
            if kind == "mean" or imgs.shape[0] == 1:
                out = np.broadcast_to(imgs.mean(0), x.shape).astype(np.float32).copy()
            elif imgs.shape[0] == B:
                out = imgs.copy()
            else:
                raise ShapeError(f"baseline file {path} has {imgs.shape[0]} images; give 1 or one per input ({B})")
        elif kind == "mean":
            if B < 2:
                raise ParameterError("baseline=mean needs a baseline_path (an MRC stack whose mean image is used) "
                                     "or a batch of at least 2 particles")
            out = np.broadcast_to(x.mean(0), x.shape).astype(np.float32).copy()
        else:
            raise ParameterError("baseline=file needs baseline_path=FILE.mrc")
    else:
        raise ParameterError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    if predict is not None:
        flipped = np.asarray(predict(out)) != np.asarray(predict(x))
    return out, sig, flipped


def to_tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype, device=like.device)
