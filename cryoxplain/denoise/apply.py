"""Applying a trained denoiser to particle stacks and micrographs (library behind ``cryoxplain denoise``).

* **Stacks** (``.mrcs``, or MRC files whose header marks an image stack) are streamed: read
  memory-mapped, denoised ``batch_size`` particles at a time and written batch by batch with
  :class:`~cryoxplain.io.StackWriter`, so memory is bounded whatever the stack size.
* **Micrographs** (single 2D images) are normalised once (mean/std of the whole micrograph) and,
  when larger than ``patch_size``, denoised in tiles: each tile's kept centre is ``patch_size``
  pixels wide and the network sees ``padding`` extra pixels of real context on each side (clipped at
  the micrograph border, where the network's own border handling applies exactly as for the whole
  image).  With ``padding`` ≥ the model's receptive radius the result equals whole-image denoising
  to float precision: no seams.
* The normalisation is :mod:`cryoxplain.imaging.normalize`, the same as in training
  (:mod:`cryoxplain.denoise.train`).
* A model with a fixed ``input_shape`` (the spiral denoiser) only accepts images of that shape;
  micrographs are not tiled for it.
* Outputs keep the voxel size, are written atomically and never replace an existing file without
  ``force``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import InputFileError, ParameterError, ShapeError
from ..imaging.batch import as_image_stack
from ..imaging.normalize import denormalize, normalize
from ..io.atomic import atomic_path, check_output
from ..io.mrc import StackWriter, open_stack, sniff, write_mrc
from ..models.protocol import inference_form, model_input_shape, model_receptive_radius
from ..models.registry import load_model
from ..utils import resolve_device

__all__ = ["Denoiser", "FORMATS", "denoise_file", "denoise_files", "denoise_micrograph", "denoise_stack"]

FORMATS = ("mrc", "tiff", "png")
DEFAULT_PATCH = 1024


class Denoiser:
    """A loaded denoising model ready to apply.

    Parameters
    ----------
    model : a model file or the name of a shipped model (``"default"``), or an ``nn.Module``
        already built (then ``info`` is None).
    device : ``auto|cpu|cuda|cuda:N``.
    """

    def __init__(self, model="default", device: str = "auto"):
        self.device = resolve_device(device)
        if isinstance(model, torch.nn.Module):
            self.model, self.info = model.to(self.device).eval(), None
        else:
            self.model, self.info = load_model(model, device=self.device, task="denoise")
        # a faster, numerically equivalent form for inference when the architecture offers one
        self._net = inference_form(self.model).to(self.device)
        self.input_shape = model_input_shape(self.model)
        self.receptive_radius = model_receptive_radius(self.model)

    @property
    def name(self) -> str:
        return self.info.describe() if self.info else type(self.model).__name__

    def check_shape(self, shape: tuple, what: str) -> None:
        """Raise ShapeError when a fixed-size model gets images of another shape."""
        if self.input_shape is not None and tuple(shape) != self.input_shape:
            raise ShapeError(
                f"{what}: images are {shape[0]}×{shape[1]} but the model ({self.name}) takes only "
                f"{self.input_shape[0]}×{self.input_shape[1]} images (fixed-size model: no tiling); "
                "resample/crop the particles or use a fully convolutional model")

    @torch.inference_mode()
    def _forward(self, xn: torch.Tensor) -> torch.Tensor:
        return self._net(xn.to(self.device)).float().cpu()

    def denoise_images(self, images: np.ndarray) -> np.ndarray:
        """Denoise one batch of images (B, H, W) or one image (H, W), each normalised on its own."""
        single = np.ndim(images) == 2
        a = as_image_stack(images, name="images")
        self.check_shape(a.shape[1:], "input")
        xn, mu, sd = normalize(torch.tensor(a)[:, None])
        y = denormalize(self._forward(xn), mu, sd)[:, 0].numpy()
        return y[0] if single else y

    def default_padding(self) -> int:
        return self.receptive_radius if self.receptive_radius is not None else 64

    def denoise_micrograph(self, image: np.ndarray, patch_size: int = DEFAULT_PATCH,
                           padding: int | None = None) -> np.ndarray:
        """Denoise one (H, W) image with one normalisation and overlapping tiles (see the module docstring)."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2:
            raise ShapeError(f"a micrograph is one 2D image, got shape {img.shape}")
        if self.input_shape is not None:
            self.check_shape(img.shape, "micrograph")
            return self.denoise_images(img)
        if patch_size < 1:
            raise ParameterError(f"patch size must be ≥ 1, got {patch_size}")
        pad = self.default_padding() if padding is None else int(padding)
        if self.receptive_radius is not None and pad < self.receptive_radius:
            raise ParameterError(f"padding {pad} px is smaller than the model's receptive radius "
                                 f"({self.receptive_radius} px); tiles would show seams — use padding ≥ {self.receptive_radius}")
        xn, mu, sd = normalize(torch.tensor(img)[None, None])
        h, w = img.shape
        if h <= patch_size and w <= patch_size:
            return denormalize(self._forward(xn), mu, sd)[0, 0].numpy()
        out = torch.empty(1, 1, h, w)
        for y0 in range(0, h, patch_size):
            y1 = min(y0 + patch_size, h)
            for x0 in range(0, w, patch_size):
                x1 = min(x0 + patch_size, w)
                wy0, wy1 = max(0, y0 - pad), min(h, y1 + pad)
                wx0, wx1 = max(0, x0 - pad), min(w, x1 + pad)
                tile = self._forward(xn[..., wy0:wy1, wx0:wx1])
                out[..., y0:y1, x0:x1] = tile[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
        return denormalize(out, mu, sd)[0, 0].numpy()


def _as_denoiser(model, device) -> Denoiser:
    return model if isinstance(model, Denoiser) else Denoiser(model, device=device)


def denoise_stack(input_path: str | os.PathLike, output_path: str | os.PathLike, model="default", *,
                  batch_size: int = 64, device: str = "auto", patch_size: int = DEFAULT_PATCH,
                  padding: int | None = None, force: bool = False, dtype: str = "float32",
                  progress: bool | None = None) -> Path:
    """Denoise a particle stack into a new MRC stack of the same shape and voxel size, batch by batch.

    Particles larger than ``patch_size`` are tiled one by one as micrographs.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    check_output(output_path, force=force, inputs=(input_path,))
    den = _as_denoiser(model, device)
    with open_stack(input_path) as stack:
        den.check_shape(stack.image_shape, str(input_path))
        big = max(stack.image_shape) > patch_size and den.input_shape is None
        with StackWriter(output_path, stack.shape, stack.voxel_size, kind="stack", dtype=dtype,
                         force=force, inputs=(input_path,)) as writer:
            with tqdm(total=len(stack), unit="img", desc=Path(input_path).name,
                      disable=None if progress is None else not progress) as bar:
                for start, batch in stack.batches(batch_size):
                    if big:
                        res = np.stack([den.denoise_micrograph(im, patch_size, padding) for im in batch])
                    else:
                        res = den.denoise_images(batch)
                    writer.write(start, res)
                    bar.update(len(batch))
    return Path(output_path)


def _write_image(path: Path, image: np.ndarray, voxel_size, fmt: str, force: bool, inputs: tuple) -> None:
    if fmt == "mrc":
        write_mrc(path, image, voxel_size, kind="image", force=force, inputs=inputs)
        return
    with atomic_path(path, force=force, inputs=inputs) as tmp:
        if fmt == "tiff":
            from PIL import Image

            Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F").save(tmp, format="TIFF")
        else:  # png: 8-bit, contrast stretched to the 0.1–99.9 percentiles (a preview, not data)
            from PIL import Image

            lo, hi = np.percentile(image, [0.1, 99.9])
            u8 = np.clip((image - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255).astype(np.uint8)
            Image.fromarray(u8, mode="L").save(tmp, format="PNG")


def denoise_micrograph(input_path: str | os.PathLike, output_path: str | os.PathLike, model="default", *,
                       device: str = "auto", patch_size: int = DEFAULT_PATCH, padding: int | None = None,
                       force: bool = False, fmt: str = "mrc") -> Path:
    """Denoise a single-image MRC file (micrograph) with tiling; write MRC (voxel size kept), TIFF or PNG."""
    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    check_output(output_path, force=force, inputs=(input_path,))
    den = _as_denoiser(model, device)
    with open_stack(input_path) as st:
        if len(st) != 1:
            raise InputFileError(f"{input_path}: holds {len(st)} images; a micrograph file holds one")
        img, vs = st[0], st.voxel_size
    res = den.denoise_micrograph(img, patch_size, padding)
    _write_image(Path(output_path), res, vs, fmt, force, (input_path,))
    return Path(output_path)


def denoise_file(input_path, output_path, model="default", *, batch_size: int = 64, device: str = "auto",
                 patch_size: int = DEFAULT_PATCH, padding: int | None = None, force: bool = False,
                 fmt: str = "mrc", progress: bool | None = None) -> Path:
    """Denoise one MRC file: a stack with :func:`denoise_stack`, a single image with :func:`denoise_micrograph`."""
    info = sniff(input_path)
    if info.kind == "volume":
        raise InputFileError(f"{input_path}: is a 3D volume, not particles or a micrograph (rename a stack to .mrcs)")
    if info.kind == "stack":
        if fmt != "mrc":
            raise ParameterError(f"{input_path}: a particle stack can only be written as MRC, not {fmt}")
        return denoise_stack(input_path, output_path, model, batch_size=batch_size, device=device,
                             patch_size=patch_size, padding=padding, force=force, progress=progress)
    return denoise_micrograph(input_path, output_path, model, device=device, patch_size=patch_size,
                              padding=padding, force=force, fmt=fmt)


@dataclass
class _Job:
    src: Path
    dst: Path
    kind: str


def plan_outputs(inputs: Sequence, output, fmt: str = "mrc", suffix: str = "") -> list[tuple[Path, Path]]:
    """Map inputs to output paths: one input → ``output`` is the file unless it is an existing
    folder; several inputs → ``output`` is a folder and each file is ``<stem><suffix>.<ext>``
    (MRC keeps the input's extension)."""
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ParameterError("no input files given")
    out = Path(output)
    if len(inputs) == 1 and not out.is_dir():
        return [(inputs[0], out)]
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{out} is a file; with several inputs the output must be a folder")
    pairs = []
    for p in inputs:
        ext = p.suffix if fmt == "mrc" and p.suffix.lower() in (".mrc", ".mrcs") else "." + ("mrc" if fmt == "mrc" else fmt)
        pairs.append((p, out / f"{p.stem}{suffix}{ext}"))
    dst = [d for _, d in pairs]
    if len(set(dst)) != len(dst):
        raise ParameterError("several inputs map to the same output name; give them distinct names or a suffix")
    return pairs


def denoise_files(inputs: Iterable, output, model="default", *, batch_size: int = 64, device: str = "auto",
                  patch_size: int = DEFAULT_PATCH, padding: int | None = None, force: bool = False,
                  fmt: str = "mrc", suffix: str = "", progress: bool | None = None) -> list[Path]:
    """Denoise several files; every input and output is checked before anything is written."""
    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    pairs = plan_outputs(list(inputs), output, fmt, suffix)
    jobs = []
    for src, dst in pairs:
        info = sniff(src)
        if info.kind == "volume":
            raise InputFileError(f"{src}: is a 3D volume, not particles or a micrograph (rename a stack to .mrcs)")
        if info.kind == "stack" and fmt != "mrc":
            raise ParameterError(f"{src}: a particle stack can only be written as MRC, not {fmt}")
        jobs.append(_Job(src, dst, info.kind))
    den = _as_denoiser(model, device)  # fails before any output when the model is bad
    for j in jobs:
        if j.dst.parent != Path(".") and not j.dst.parent.exists() and len(jobs) > 1:
            j.dst.parent.mkdir(parents=True, exist_ok=True)
        check_output(j.dst, force=force, inputs=[s for s, _ in pairs])
        if j.kind == "stack":
            den.check_shape(sniff(j.src).image_shape, str(j.src))
        elif den.input_shape is not None:
            den.check_shape(sniff(j.src).image_shape, str(j.src))
    done = []
    for j in jobs:
        done.append(denoise_file(j.src, j.dst, den, batch_size=batch_size, patch_size=patch_size,
                                 padding=padding, force=force, fmt=fmt, progress=progress))
    return done
