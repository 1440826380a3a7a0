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
* **Particle sets** (a RELION ``.star`` or cryoSPARC ``.cs`` file, :mod:`cryoxplain.io.particles`)
  are streamed stack by stack and written with :func:`~cryoxplain.io.particles.write_particle_set`:
  denoised stacks plus a particle file identical to the input except the image names.
* Outputs keep the voxel size, are written atomically and never replace an existing file without
  ``force``.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import FileQuirkWarning, InputFileError, ParameterError, ShapeError
from ..imaging.batch import as_image_stack
from ..imaging.normalize import denormalize, normalize
from ..io.atomic import atomic_path, check_output, input_files, made_folders
from ..io.mrc import StackWriter, open_stack, sniff, write_mrc
from ..models.protocol import inference_form, model_input_shape, model_receptive_radius
from ..models.registry import load_model
from ..checks import check_pixel_size
from ..utils import resolve_device

__all__ = ["Binning", "Denoiser", "FORMATS", "denoise_file", "denoise_files", "denoise_micrograph", "denoise_particles",
           "denoise_stack", "plan_binning"]

FORMATS = ("mrc", "tiff", "png")
COARSER_WARNING = 0.9  # warn when a micrograph's pixel is > 10 % larger than the model's
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
    def model_pixel_size(self) -> float | None:
        """The pixel size (Å/px) the model was trained at, ``None`` when unknown or for a bare module."""
        return self.info.pixel_size if self.info is not None else None

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

    def denoise_batch(self, batch: np.ndarray, patch_size: int = DEFAULT_PATCH, padding: int | None = None,
                      tiled: bool = False) -> np.ndarray:
        """Denoise a batch of particles ``(B, H, W)``: as one batch, or one by one in tiles (``tiled``)."""
        if tiled:
            return np.stack([self.denoise_micrograph(im, patch_size, padding) for im in batch])
        return self.denoise_images(batch)

    def check_patch_size(self, patch_size: int) -> None:
        """Refuse tiles smaller than the model's receptive field (``2·radius + 1`` px)."""
        if patch_size < 1:
            raise ParameterError(f"patch size must be ≥ 1, got {patch_size}")
        if self.input_shape is None and self.receptive_radius is not None:
            field = 2 * self.receptive_radius + 1
            if patch_size < field:
                raise ParameterError(f"patch_size={patch_size} px is smaller than the model's receptive field "
                                     f"({field} px): every tile would recompute its {self.receptive_radius}-px "
                                     f"context for {patch_size}² kept pixels; use patch_size={field} or more "
                                     f"(default {DEFAULT_PATCH})")

    def default_padding(self) -> int:
        return self.receptive_radius if self.receptive_radius is not None else 64

    def denoise_micrograph(self, image: np.ndarray, patch_size: int = DEFAULT_PATCH,
                           padding: int | None = None, progress: bool | None = False) -> np.ndarray:
        """Denoise one (H, W) image with one normalisation and overlapping tiles (see the module docstring).

        Tiling needs ``patch_size`` ≥ the model's receptive field (``2·radius + 1`` px): smaller tiles
        only repeat the same context many times over (``-s 1`` on a 512² micrograph ran for
        minutes) and are refused.  ``progress``: a bar over the tiles (``None``: when on a terminal).
        """
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
        h, w = img.shape
        if h <= patch_size and w <= patch_size:
            xn, mu, sd = normalize(torch.tensor(img)[None, None])
            return denormalize(self._forward(xn), mu, sd)[0, 0].numpy()
        self.check_patch_size(patch_size)
        from tqdm.auto import tqdm

        xn, mu, sd = normalize(torch.tensor(img)[None, None])
        out = torch.empty(1, 1, h, w)
        tiles = [(y0, x0) for y0 in range(0, h, patch_size) for x0 in range(0, w, patch_size)]
        for y0, x0 in tqdm(tiles, desc="tiles", unit="tile", leave=False,
                           disable=None if progress is None else not progress):
            y1, x1 = min(y0 + patch_size, h), min(x0 + patch_size, w)
            wy0, wy1 = max(0, y0 - pad), min(h, y1 + pad)
            wx0, wx1 = max(0, x0 - pad), min(w, x1 + pad)
            tile = self._forward(xn[..., wy0:wy1, wx0:wx1])
            out[..., y0:y1, x0:x1] = tile[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
        return denormalize(out, mu, sd)[0, 0].numpy()


def _as_denoiser(model, device) -> Denoiser:
    return model if isinstance(model, Denoiser) else Denoiser(model, device=device)


def _inputs(input_path, den: Denoiser) -> tuple:
    """What a run reads: the input and the model file (never to be written over)."""
    return input_files(input_path, getattr(den.info, "path", None))


def _scan(src, stack=None, project_dir=None, pixel_size=None) -> None:
    """Read every image of an input once (bounded memory), so a NaN or truncated file is found
    before any output of a multi-input run is written."""
    from ..io.particles import open_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FileQuirkWarning)
        images = open_images(src, project_dir=project_dir, pixel_size=pixel_size, stack=stack)
        try:
            for _ in images.batches(256):
                pass
        finally:
            close = getattr(images, "close", None)
            if close is not None:
                close()


def _complete_note(exc: BaseException, done: list) -> None:
    """Add to a multi-input run's error which outputs were completed before it."""
    note = ("; complete outputs: " + ", ".join(str(p) for p in done) if done
            else "; no output was completed")
    with contextlib.suppress(Exception):
        exc.args = (f"{exc.args[0]}{note}",) + tuple(exc.args[1:]) if exc.args else (note[2:],)


def denoise_stack(input_path: str | os.PathLike, output_path: str | os.PathLike, model="default", *,
                  batch_size: int = 64, device: str = "auto", patch_size: int = DEFAULT_PATCH,
                  padding: int | None = None, force: bool = False, dtype: str = "float32",
                  progress: bool | None = None, stack: bool | None = None) -> Path:
    """Denoise a particle stack into a new MRC stack of the same shape and voxel size, batch by batch.

    Particles larger than ``patch_size`` are tiled one by one as micrographs.  ``stack=True`` reads
    a file whose header says volume (``.mrc`` with ``ispg=1``) as a stack.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    check_output(output_path, force=force, inputs=input_files(input_path, model))
    den = _as_denoiser(model, device)
    with open_stack(input_path, stack=stack) as st:
        den.check_shape(st.image_shape, str(input_path))
        big = max(st.image_shape) > patch_size and den.input_shape is None
        with StackWriter(output_path, st.shape, st.voxel_size, kind="stack", dtype=dtype,
                         force=force, inputs=_inputs(input_path, den)) as writer:
            with tqdm(total=len(st), unit="img", desc=Path(input_path).name,
                      disable=None if progress is None else not progress) as bar:
                for start, batch in st.batches(batch_size):
                    writer.write(start, den.denoise_batch(batch, patch_size, padding, big))
                    bar.update(len(batch))
    return Path(output_path)


def denoise_particles(particle_file, out_dir, model="default", *, project_dir=None,
                      pixel_size: float | None = None, batch_size: int = 64, device: str = "auto",
                      patch_size: int = DEFAULT_PATCH, padding: int | None = None, force: bool = False,
                      suffix: str = "_denoised", dtype: str = "float32", progress: bool | None = None) -> Path:
    """Denoise the particles a RELION ``.star`` or cryoSPARC ``.cs`` file lists; return the new particle file.

    Stacks are resolved as RELION does (``project_dir``, default the current directory, then the
    file's folder; :func:`~cryoxplain.io.particles.open_particles`), streamed ``batch_size``
    particles at a time, and written under ``out_dir`` by
    :func:`~cryoxplain.io.particles.write_particle_set`: one ``NAME{suffix}.mrcs`` per input stack and
    ``STEM{suffix}.star`` (``.cs``), the input file except ``rlnImageName`` (``blob/path``, ``blob/idx``).
    ``pixel_size`` (Å/px) overrides what the files say.  ``particle_file`` may also be an open
    :class:`~cryoxplain.io.particles.ParticleSet`.  Everything is checked before anything is
    written; on error nothing is left and the inputs are never modified.
    """
    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    writer = _particle_writer(particle_file, out_dir, project_dir, pixel_size, suffix, force, dtype, model)
    den = _as_denoiser(model, device)
    return _run_particles(writer, den, batch_size, patch_size, padding, progress)


def _particle_writer(particle_file, out_dir, project_dir, pixel_size, suffix, force, dtype, model=None):
    """Open the set and build its writer, which checks every output before any work."""
    from ..io.particles import ParticleSet, ParticleSetWriter, open_particles

    ps = particle_file if isinstance(particle_file, ParticleSet) else open_particles(
        particle_file, project_dir, pixel_size=pixel_size)
    return ParticleSetWriter(ps, out_dir, suffix=suffix, force=force, dtype=dtype, pixel_size=pixel_size,
                             inputs=input_files(model))


def _run_particles(writer, den: Denoiser, batch_size, patch_size, padding, progress) -> Path:
    from tqdm.auto import tqdm

    ps = writer.ps
    den.check_shape(ps.image_shape, str(ps.path))
    big = max(ps.image_shape) > patch_size and den.input_shape is None
    with writer, tqdm(total=len(ps), unit="img", desc=ps.path.name,
                      disable=None if progress is None else not progress) as bar:
        for positions, batch in ps.batches(batch_size):
            writer.write(positions, den.denoise_batch(batch, patch_size, padding, big))
            bar.update(len(batch))
    return writer.output_path


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


@dataclass
class Binning:
    """How a micrograph is resampled before denoising (:func:`plan_binning`).

    The centred ``crop`` (rows, cols) of the input is Fourier-binned to ``shape``; the binned
    pixel size is ``pixel_size`` (Å/px, ``None`` when unknown); ``factor`` 1 means no binning.
    """

    factor: float
    crop: tuple
    shape: tuple
    pixel_size: float | None
    reason: str = ""

    @property
    def binned(self) -> bool:
        return tuple(self.shape) != tuple(self.crop)


def plan_binning(shape, pixel_size: float | None, model_pixel_size: float | None, bin: float | None = None,
                 where: str = "micrograph") -> Binning:
    """The Fourier binning of a micrograph of ``shape`` at ``pixel_size`` (Å/px) for a model
    trained at ``model_pixel_size``.

    ``bin`` (≥ 1) forces a factor (1: no binning); otherwise the factor is
    ``model_pixel_size / pixel_size`` when both are known and it is > 1 (a micrograph already
    coarser than the model's sampling is denoised as it is, with a warning when it is more than
    10 % coarser).  The binned size is
    ``floor(H / f) × floor(W / f)`` and the input is first cropped (centred) to
    ``round(h·f) × round(w·f)`` so both axes get the same pixel size (exact for integer factors;
    within 0.5/h relative otherwise).
    """
    h, w = int(shape[0]), int(shape[1])
    if bin is not None:
        if not (np.isfinite(bin) and bin >= 1):
            raise ParameterError(f"bin must be ≥ 1, got {bin}")
        f, reason = float(bin), f"bin={bin:g}"
    elif model_pixel_size is None:
        return Binning(1.0, (h, w), (h, w), pixel_size, "the model records no training pixel size")
    elif pixel_size is None:
        warnings.warn(f"{where}: pixel size unknown (voxel size 0 in the header); denoised at its own "
                      f"sampling, although the model was trained at {model_pixel_size:g} Å/px — give "
                      "pixel_size=... to bin it to the model's sampling, or bin=1 to silence this", UserWarning,
                      stacklevel=3)
        return Binning(1.0, (h, w), (h, w), None, "pixel size unknown")
    else:
        f = model_pixel_size / pixel_size
        reason = f"{pixel_size:g} Å/px → the model's {model_pixel_size:g} Å/px"
        if f < COARSER_WARNING:
            warnings.warn(f"{where}: sampled at {pixel_size:g} Å/px, coarser than the model's training "
                          f"{model_pixel_size:g} Å/px; denoised at its own sampling (not up-sampled)",
                          UserWarning, stacklevel=3)
            return Binning(1.0, (h, w), (h, w), pixel_size, "coarser than the model")
        if f <= 1 + 1e-3:  # at (or up to 10 % coarser than) the model's sampling: as it is
            return Binning(1.0, (h, w), (h, w), pixel_size, "at the model's sampling")
    nh, nw = int(h // f), int(w // f)
    if nh < 1 or nw < 1:
        raise ParameterError(f"{where}: {h}×{w} px binned by {f:g} leaves no pixels")
    ch, cw = min(h, int(round(nh * f))), min(w, int(round(nw * f)))
    px = None if pixel_size is None else pixel_size * 0.5 * (ch / nh + cw / nw)
    return Binning(f, (ch, cw), (nh, nw), px, reason)


def _centre_crop(img: np.ndarray, crop: tuple) -> tuple[np.ndarray, tuple]:
    h, w = img.shape
    y0, x0 = (h - crop[0]) // 2, (w - crop[1]) // 2
    return img[y0:y0 + crop[0], x0:x0 + crop[1]], (y0, x0)


def denoise_micrograph(input_path: str | os.PathLike, output_path: str | os.PathLike, model="default", *,
                       device: str = "auto", patch_size: int = DEFAULT_PATCH, padding: int | None = None,
                       force: bool = False, fmt: str = "mrc", pixel_size: float | None = None,
                       bin: float | None = None, upsample: bool = False, progress: bool | None = None) -> Path:
    """Denoise a single-image MRC file (micrograph) with tiling; write MRC (voxel size kept), TIFF or PNG.

    Micrographs at their own sampling: the pixel size is ``pixel_size`` (Å/px) or the header's; by
    default the micrograph is Fourier-binned (:func:`cryoxplain.imaging.fourier.fourier_crop`) to
    the model's training pixel size (:attr:`cryoxplain.models.registry.ModelInfo.pixel_size`;
    :func:`plan_binning`), denoised in tiles, and written at the binned size with the binned voxel
    size.  ``bin=N`` forces the factor (``bin=1``: native sampling); ``upsample=True`` Fourier-pads
    the result back to the input size and voxel size (the few cropped edge pixels repeat the edge).
    """
    from ..imaging.fourier import fourier_crop, fourier_pad

    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    pixel_size = check_pixel_size(pixel_size)
    check_output(output_path, force=force, inputs=input_files(input_path, model))
    den = _as_denoiser(model, device)
    den.check_patch_size(patch_size)
    with open_stack(input_path) as st:
        if len(st) != 1:
            raise InputFileError(f"{input_path}: holds {len(st)} images; a micrograph file holds one")
        px = pixel_size if pixel_size is not None else st.voxel_size
        plan = plan_binning(st.image_shape, px, den.model_pixel_size, bin, where=str(input_path))
        if plan.binned:
            img = fourier_crop(_centre_crop(st[0], plan.crop)[0], plan.shape)  # one float32 copy + its FFT
        else:
            img = st[0]
        shape = st.image_shape
    res = den.denoise_micrograph(img, patch_size, padding, progress=progress)
    del img
    out_px = plan.pixel_size
    if plan.binned and upsample:
        up = fourier_pad(res, plan.crop)
        y0, x0 = (shape[0] - plan.crop[0]) // 2, (shape[1] - plan.crop[1]) // 2
        res = np.pad(up, ((y0, shape[0] - plan.crop[0] - y0), (x0, shape[1] - plan.crop[1] - x0)), mode="edge")
        out_px = px
    _write_image(Path(output_path), res, out_px, fmt, force, _inputs(input_path, den))
    return Path(output_path)


def denoise_file(input_path, output_path, model="default", *, batch_size: int = 64, device: str = "auto",
                 patch_size: int = DEFAULT_PATCH, padding: int | None = None, force: bool = False,
                 fmt: str = "mrc", progress: bool | None = None, stack: bool | None = None,
                 pixel_size: float | None = None, bin: float | None = None, upsample: bool = False) -> Path:
    """Denoise one MRC file: a stack with :func:`denoise_stack`, a single image with :func:`denoise_micrograph`
    (``pixel_size``, ``bin``, ``upsample`` as there).

    ``stack=True`` reads the file as a particle stack whatever its header says (``.mrc`` with ``ispg=1``).
    """
    info = sniff(input_path, stack=stack)
    if info.kind == "volume":
        raise InputFileError(f"{input_path}: is a 3D volume, not particles or a micrograph (rename a stack to .mrcs)")
    if info.kind == "stack":
        if fmt != "mrc":
            raise ParameterError(f"{input_path}: a particle stack can only be written as MRC, not {fmt}")
        return denoise_stack(input_path, output_path, model, batch_size=batch_size, device=device,
                             patch_size=patch_size, padding=padding, force=force, progress=progress,
                             stack=stack)
    return denoise_micrograph(input_path, output_path, model, device=device, patch_size=patch_size,
                              padding=padding, force=force, fmt=fmt, pixel_size=pixel_size, bin=bin,
                              upsample=upsample, progress=progress)


@dataclass
class _Job:
    src: Path
    dst: Path
    kind: str


def plan_outputs(inputs: Sequence, output, fmt: str = "mrc", suffix: str = "") -> list[tuple[Path, Path]]:
    """Map inputs to output paths: one input → ``output`` is the file unless it is an existing
    folder or ends in ``/``; several inputs → ``output`` is a folder and each file is ``<stem><suffix>.<ext>``
    (MRC keeps the input's extension)."""
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise ParameterError("no input files given")
    folder = str(output).endswith(("/", os.sep))  # a trailing slash names a folder
    out = Path(output)
    if len(inputs) == 1 and not out.is_dir() and not folder:
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
                  fmt: str = "mrc", suffix: str | None = None, progress: bool | None = None, stack: bool | None = None,
                  project_dir=None, pixel_size: float | None = None, bin: float | None = None,
                  upsample: bool = False, skip_existing: bool = False, unit_size: int | None = None) -> list[Path]:
    """Denoise several files; every input and output is checked before anything is written.

    MRC files: ``output`` is the output file (one input) or folder; ``stack=True`` reads every
    input as a particle stack (``.mrc`` with ``ispg=1``).  Particle files (RELION ``.star``,
    cryoSPARC ``.cs``; not mixed with MRC inputs): ``output`` is a folder (created if missing)
    receiving, per file, the denoised stacks and ``STEM{suffix or "_denoised"}.star``/``.cs``
    (:func:`denoise_particles`; ``project_dir``, ``pixel_size`` as there).  Micrographs are
    Fourier-binned to the model's training pixel size unless ``bin`` says otherwise
    (:func:`denoise_micrograph`: ``pixel_size``, ``bin``, ``upsample``).

    Under ``torchrun`` or a SLURM job array (world size > 1), or with ``skip_existing``, the work
    is sharded by :func:`cryoxplain.denoise.shard.denoise_sharded`: files (or ``unit_size``-particle
    ranges of a particle set) split by rank, complete outputs kept with ``skip_existing`` (a re-run
    redoes only what is missing), rank 0 writing the merged particle file (docs/scale-out.md).
    """
    from .. import distributed
    from ..io.particles import is_particle_file

    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    inputs = list(inputs)
    if not inputs:
        raise ParameterError("no input files given")
    ctx = distributed.context(allow_array=True)
    if ctx.distributed or skip_existing:
        from .shard import denoise_sharded

        return denoise_sharded(inputs, output, model, batch_size=batch_size, device=device, patch_size=patch_size,
                               padding=padding, force=force, fmt=fmt, suffix=suffix, progress=progress, stack=stack,
                               project_dir=project_dir, pixel_size=pixel_size, bin=bin, upsample=upsample,
                               skip_existing=skip_existing, unit_size=unit_size, ctx=ctx)
    kinds = {is_particle_file(p) for p in inputs}
    if True in kinds:
        if False in kinds:
            raise ParameterError("give particle files (.star, .cs) and MRC files in separate runs")
        if fmt != "mrc":
            raise ParameterError(f"particle sets are written as MRC stacks, not {fmt}")
        return _denoise_particle_files(inputs, output, model, batch_size=batch_size, device=device,
                                       patch_size=patch_size, padding=padding, force=force,
                                       suffix="_denoised" if suffix is None else suffix, progress=progress,
                                       project_dir=project_dir, pixel_size=pixel_size)
    pairs = plan_outputs(inputs, output, fmt, suffix or "")
    jobs = []
    for src, dst in pairs:
        info = sniff(src, stack=stack)
        if info.kind == "volume":
            raise InputFileError(f"{src}: is a 3D volume, not particles or a micrograph (rename a stack to .mrcs)")
        if info.kind == "stack" and fmt != "mrc":
            raise ParameterError(f"{src}: a particle stack can only be written as MRC, not {fmt}")
        jobs.append(_Job(src, dst, info.kind))
    den = _as_denoiser(model, device)  # fails before any output when the model is bad
    all_inputs = input_files(*[s for s, _ in pairs], getattr(den.info, "path", None))
    for j in jobs:
        check_output(j.dst, force=force, inputs=all_inputs, folder_must_exist=False)
        if j.kind == "image":
            den.check_patch_size(patch_size)
        if j.kind == "stack" or den.input_shape is not None:
            with warnings.catch_warnings():  # header quirks were reported by the first sniff
                warnings.simplefilter("ignore", FileQuirkWarning)
                den.check_shape(sniff(j.src, stack=stack).image_shape, str(j.src))
    if len(jobs) > 1:  # every input is read once before the first output is written
        for j in jobs:
            _scan(j.src, stack=stack if j.kind == "stack" else None)
    done: list = []
    folders = sorted({j.dst.parent for j in jobs if not j.dst.parent.exists()}, key=lambda p: len(p.parts))
    with contextlib.ExitStack() as made:
        for d in folders:
            made.enter_context(made_folders(d))  # removed again if the run fails
        for j in jobs:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FileQuirkWarning)
                    done.append(denoise_file(j.src, j.dst, den, batch_size=batch_size, patch_size=patch_size,
                                             padding=padding, force=force, fmt=fmt, progress=progress,
                                             stack=stack, pixel_size=pixel_size, bin=bin, upsample=upsample))
            except Exception as exc:
                if len(jobs) > 1:
                    _complete_note(exc, done)
                if done:  # keep the folders that hold complete outputs
                    made.pop_all()
                raise
    return done


def _denoise_particle_files(inputs, out_dir, model, *, batch_size, device, patch_size, padding, force, suffix,
                            progress, project_dir, pixel_size) -> list[Path]:
    """Several particle files into one folder: every set is opened and every output checked first."""
    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{out} is a file; particle sets are written into an output folder")
    writers = [_particle_writer(p, out, project_dir, pixel_size, suffix, force, "float32", model) for p in inputs]
    seen: dict = {}
    for w in writers:
        for p in [w.output_path, *w.stack_paths]:
            if p in seen:
                raise ParameterError(f"{w.ps.path} and {seen[p]} would both write {p}; run them separately "
                                     "or into different folders")
            seen[p] = w.ps.path
    den = _as_denoiser(model, device)  # fails before any output when the model is bad
    for w in writers:
        den.check_shape(w.ps.image_shape, str(w.ps.path))
    if len(writers) > 1:  # every input is read once before the first output is written
        for w in writers:
            for _ in w.ps.batches(256):
                pass
    done: list = []
    for w in writers:
        try:
            done.append(_run_particles(w, den, batch_size, patch_size, padding, progress))
        except Exception as exc:
            if len(writers) > 1:
                _complete_note(exc, done)
            raise
    return done
