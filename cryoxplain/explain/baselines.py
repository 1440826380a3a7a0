"""Baselines: the reference images path methods start from, one meaning per name.

Every function takes the bound batch ``inputs`` ``(B, 1, H, W)`` (in the units the model sees:
per-image normalised for cryoxplain models) and returns one baseline per image ``(B, 1, H, W)``
of the same dtype and device.

==============  ===================================================================================
name            baseline of image ``x``
==============  ===================================================================================
``zero``        the all-zero image (for normalised particles: "no contrast")
``mean``        a flat image at ``x``'s own mean intensity, the mean over all ``H·W`` pixels of that
                image (for normalised particles this equals ``zero``)
``blur``        ``x`` blurred by a Gaussian of ``sigma`` pixels,
                :func:`cryoxplain.imaging.filters.gaussian_blur` with ``border="reflect"``
                (scipy.ndimage's default; kernel radius ``int(4σ + 0.5)``)
``noise``       Gaussian noise with the mean and standard deviation of ``x``'s background (the pixels
                farther than ``min(H, W)/2`` from the box centre ``N // 2``; all pixels when fewer
                than 16), drawn from the image's own generator (``image_seed(seed, stack index)``)
``file``        the image(s) of an MRC file: one image for every input, or one per input
``mean_image``  the mean image of the particles of an MRC stack (pixelwise mean over the stack)
==============  ===================================================================================

:func:`make_baseline` builds any of them; plugins declare ``baseline`` (a subset of
:data:`BASELINES`), ``baseline_sigma`` and ``baseline_path`` parameters.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

__all__ = ["BASELINES", "make_baseline", "blur_baseline", "noise_baseline", "load_baseline_images",
           "file_baseline"]

BASELINES = ("zero", "mean", "blur", "noise", "file", "mean_image")


def blur_baseline(inputs: torch.Tensor, sigma, border: str = "reflect") -> torch.Tensor:
    """``inputs`` blurred by a Gaussian of ``sigma`` pixels (one σ, or one per image)."""
    from ..imaging.filters import gaussian_blur

    return gaussian_blur(inputs, sigma, border=border)


def noise_baseline(inputs: torch.Tensor, generators: list, radius_fraction: float = 0.5) -> torch.Tensor:
    """Noise with each image's background mean and std (see the module table)."""
    from ..imaging.masks import radial_distance

    h, w = inputs.shape[-2:]
    bg = torch.as_tensor(radial_distance((h, w)) > radius_fraction * min(h, w), device=inputs.device)
    if int(bg.sum()) < 16:
        bg = torch.ones_like(bg)
    out = torch.empty_like(inputs)
    for i, g in enumerate(generators):
        v = inputs[i, 0][bg].double()
        z = torch.randn(inputs.shape[1:], generator=g, device=inputs.device, dtype=torch.float64)
        out[i] = (z * v.std(unbiased=False) + v.mean()).to(inputs.dtype)
    return out


def load_baseline_images(path: str, normalize: bool = False) -> np.ndarray:
    """The images of an MRC file as ``(N, H, W)`` float32; ``normalize`` maps each per image to
    ``(x − μ)/σ`` (:func:`cryoxplain.imaging.normalize.normalize_images`), like the inputs."""
    from pathlib import Path

    from ..imaging.batch import as_image_stack
    from ..imaging.normalize import normalize_images
    from ..io.mrc import read_mrc

    if not path or not Path(path).is_file():
        raise ParameterError(f"baseline_path {path!r} is not an existing MRC file")
    data, _ = read_mrc(path)
    arr = as_image_stack(data, name=f"baseline file {path}")
    return normalize_images(arr) if normalize else arr


def file_baseline(inputs: torch.Tensor, images: np.ndarray, path: str = "") -> torch.Tensor:
    """Baselines from loaded file images ``(N, H, W)``: one image for all inputs, or one per input."""
    b, _, h, w = inputs.shape
    if tuple(images.shape[1:]) != (h, w):
        raise ShapeError(f"baseline image {path} is {images.shape[2]}×{images.shape[1]}, "
                         f"the particles are {w}×{h}")
    if images.shape[0] not in (1, b):
        raise ShapeError(f"baseline file {path} has {images.shape[0]} images; give 1 or one per input ({b})")
    t = torch.as_tensor(np.ascontiguousarray(images), dtype=inputs.dtype, device=inputs.device)[:, None]
    return t.expand_as(inputs).clone()


def make_baseline(kind: str, inputs: torch.Tensor, *, sigma: float = 0.0, generators: list | None = None,
                  images: np.ndarray | None = None, path: str = "", border: str = "reflect") -> torch.Tensor:
    """The baseline ``kind`` (module table) of every image of ``inputs``: ``(B, 1, H, W)``.

    ``sigma``: blur σ in pixels (``blur``); ``generators``: one per image (``noise``); ``images``:
    the loaded file images (``file``, ``mean_image``; else read from ``path``).
    """
    if kind == "zero":
        return torch.zeros_like(inputs)
    if kind == "mean":
        return inputs.mean(dim=(-2, -1), keepdim=True).expand_as(inputs).clone()
    if kind == "blur":
        return blur_baseline(inputs, sigma, border)
    if kind == "noise":
        if generators is None:
            raise ParameterError("the noise baseline needs one random generator per image")
        return noise_baseline(inputs, generators)
    if kind in ("file", "mean_image"):
        imgs = load_baseline_images(path) if images is None else images
        if kind == "mean_image":
            imgs = imgs.mean(0, keepdims=True, dtype=np.float64).astype(np.float32)
        return file_baseline(inputs, imgs, path)
    raise ParameterError(f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}")
