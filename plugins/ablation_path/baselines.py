"""Baselines x_BL for ablation paths (names and meanings of :mod:`cryoxplain.explain.baselines`).

* ``blur`` – the thesis's blurred target (Eq. 2.32): for a classifier the smallest σ in
  ``[sigma_min, sigma_max]`` whose blurred image is classified differently from the target
  (arg-max changes); for other targets a fixed σ.  Blur: :func:`cryoxplain.imaging.filters.gaussian_blur`,
  ``border="reflect"`` (scipy.ndimage's default, as before).
* ``noise`` – cryo-EM: a noise-only image: Gaussian noise with the mean and standard deviation of
  the particle's background (the pixels outside the disc inscribed in the box), i.e. what the
  detector records where there is no particle (seeded per image from ``(seed, stack index)``).
* ``mean`` – a flat image at the particle's own mean intensity.
* ``mean_image`` – the mean image of the particle stack ``baseline_path`` (an MRC image or stack).
  (Before the SDK, ``mean`` meant this, or the batch's mean image without a file.)
* ``zero`` – all zeros (the normalised-background value of a normalised particle stack).
* ``file`` – the image(s) of ``baseline_path``: one image for all, or one per input.
"""
from __future__ import annotations

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.baselines import load_baseline_images, make_baseline
from cryoxplain.imaging.filters import gaussian_blur

BASELINES = ("blur", "noise", "mean", "mean_image", "zero", "file")


def _blur(img: np.ndarray, sigma: float, border: str = "reflect") -> np.ndarray:
    return gaussian_blur(np.asarray(img, dtype=np.float64), sigma, border=border).astype(np.float32)


def sigma_grid(sigma_min: float, sigma_max: float, num: int = 16) -> np.ndarray:
    return np.geomspace(sigma_min, sigma_max, num)


def minimal_flip_blur(x: np.ndarray, predict, sigma_min: float = 4.0, sigma_max: float = 100.0,
                      num: int = 16, refine: int = 4, border: str = "reflect") -> tuple[np.ndarray, float, bool]:
    """Blurred ``x`` with the smallest σ ∈ [sigma_min, sigma_max] that changes ``predict``'s class.

    ``predict(images (N, H, W)) -> (N,)`` class indices.  σ is searched on a geometric grid of
    ``num`` values and then refined by ``refine`` bisection steps (in log σ) between the last
    non-flipping and the first flipping grid value.  Returns ``(baseline, sigma, flipped)``; when
    no σ flips the class, the σ_max blur is returned with ``flipped=False`` (the thesis leaves
    this case open; the explainer records the flag).
    """
    c0 = int(predict(x[None])[0])
    grid = sigma_grid(sigma_min, sigma_max, num)
    blurred = np.stack([_blur(x, s, border) for s in grid])
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
        bm = _blur(x, mid, border)
        if int(predict(bm[None])[0]) != c0:
            hi, best = mid, bm
        else:
            lo = mid
    return best, float(hi), True


def make_baselines(kind: str, x: np.ndarray, *, predict=None, sigma: float = 0.0, sigma_min: float = 4.0,
                   sigma_max: float = 100.0, path: str = "", generators: list | None = None,
                   normalize_file: bool = False, border: str = "reflect"):
    """Baselines for a batch ``x`` ``(B, H, W)``.  Returns ``(x_bl (B,H,W), sigmas (B,), flipped (B,))``.

    ``sigma > 0`` fixes the blur σ; ``sigma = 0`` searches the minimal flipping σ with
    ``predict`` (classifiers) and falls back to ``sigma_min`` without one.  ``generators``: one
    per image (``noise``).  ``normalize_file`` normalises the images of ``path`` per image before
    use (when the inputs are normalised).  ``border``: the blur's boundary (``reflect`` or ``periodic``).  Other kinds: :func:`cryoxplain.explain.baselines.make_baseline`.
    """
    B, H, W = x.shape
    sig = np.full(B, np.nan)
    flipped = np.zeros(B, dtype=bool)
    if kind == "blur":
        out = np.empty_like(x)
        for b in range(B):
            if sigma > 0 or predict is None:
                s = sigma if sigma > 0 else sigma_min
                out[b], sig[b] = _blur(x[b], s, border), s
                if predict is not None:
                    flipped[b] = int(predict(out[b][None])[0]) != int(predict(x[b][None])[0])
            else:
                out[b], sig[b], flipped[b] = minimal_flip_blur(x[b], predict, sigma_min, sigma_max, border=border)
        return out, sig, flipped
    if kind not in BASELINES:
        raise ParameterError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
    if kind in ("file", "mean_image") and not path:
        raise ParameterError(f"baseline={kind} needs baseline_path=FILE.mrc")
    images = load_baseline_images(path, normalize=normalize_file) if kind in ("file", "mean_image") else None
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    out = make_baseline(kind, xt, generators=generators, images=images, path=path)[:, 0].numpy()
    if predict is not None:
        flipped = np.asarray(predict(out)) != np.asarray(predict(x))
    return out, sig, flipped


def to_tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype, device=like.device)
