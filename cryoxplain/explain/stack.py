"""Explain a whole particle stack: batches in, attributions streamed into one HDF5 file.

:func:`explain_stack` is what ``cryoxplain explain`` runs.  It

1. loads the model (a file or shipped name, or an ``nn.Module``) on the requested device;
2. instantiates the explainer from the entry-point registry with the ``--param`` values;
3. builds the target from its CLI string and checks it against the model's real output shape
   (a pixel outside the image, a class the model does not have → :class:`ParameterError`);
4. reads the stack memory-mapped, explains it ``batch_size`` images at a time and appends every
   batch's maps and extras to ``OUT.h5`` (written to a temporary file, renamed when complete);
5. afterwards renders PNG overlays and/or the plugin's HTML viewer for the first images.

Inputs are normalised per image, ``x̃ = (x − μ)/σ`` (:func:`cryoxplain.imaging.normalize.normalize`) —
the policy every cryoxplain denoiser and classifier is trained with — so attributions and denoiser targets are in the network's normalised
units (a ``zero`` baseline is a flat image at the particle's mean).  A plain ``nn.Module`` is
given raw images unless ``normalize=True``.

The file is written by :class:`cryoxplain.io.hdf5.StreamingH5` (atomic) and
:func:`cryoxplain.io.hdf5.write_attribution`.  HDF5 layout::

    /                       attrs: provenance (JSON), cryoxplain_version, created, input, method,
                            target, model, seed, device, normalization, n_images, voxel_size
    /attribution/maps       (N, H, W) float32 attribution maps
    /attribution/extras/*   method-specific per-image arrays (first axis N) or attributes
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError
from ..imaging.normalize import NORMALIZATION, normalize_images
from ..io.atomic import check_output, atomic_path
from ..io.hdf5 import StreamingH5
from ..models.protocol import model_description, model_task
from .base import Explainer, Target, check_input_size
from .registry import get_explainer
from .targets import default_target, parse_target


@dataclass
class ExplainResult:
    """What :func:`explain_stack` wrote."""

    output: Path
    n_images: int
    method: str
    params: dict
    target: str
    png_files: list[Path] = field(default_factory=list)
    html: Path | None = None
    seconds: float = 0.0
    max_completeness_gap: float | None = None


def _load(model, device):
    from ..models.registry import load_model

    if isinstance(model, torch.nn.Module):
        return model.to(device).eval(), None, model_task(model), model_description(model)
    m, info = load_model(model, device, task=None)  # either task: the default target follows it; sets m.description
    m.requires_grad_(False)  # only input gradients are needed (a model we loaded ourselves)
    return m, info, info.task, str(model)


def parse_params(items) -> dict:
    """``["steps=64", "baseline=blur"]`` → ``{"steps": "64", "baseline": "blur"}`` (values parsed later by the plugin)."""
    out = {}
    for item in items or ():
        if isinstance(item, tuple):
            k, v = item
        else:
            k, sep, v = str(item).partition("=")
            if not sep or not k.strip():
                raise ParameterError(f"params item {item!r}: expected KEY=VALUE")
        out[k.strip()] = v.strip() if isinstance(v, str) else v
    return out


def explain_stack(model, stack, output, *, method: str, params: dict | None = None, target: str | Target | None = None,
                  batch_size: int = 16, device: str = "auto", seed: int = 0, force: bool = False,
                  png_dir: str | os.PathLike | None = None, png_limit: int = 32,
                  html: str | os.PathLike | None = None, html_limit: int = 16,
                  normalize: bool | None = None, progress=None, project_dir=None, skip_existing: bool = False,
                  unit_size: int | None = None, _unit: tuple | None = None) -> ExplainResult:
    """Explain every image of ``stack`` with explainer ``method``; write ``output`` (HDF5).

    Parameters
    ----------
    model : str, path or nn.Module
        A model file, a shipped model name (``default``) or a module (set ``module.task``
        to ``"denoise"``/``"classify"`` to pick the default target and normalisation).
    stack : str, path or array
        MRC/MRCS file, a particle file (RELION ``.star``, cryoSPARC ``.cs``: the particles it
        lists, in file order; stacks resolved against ``project_dir``), or a float array
        ``(N, H, W)`` / ``(H, W)``.
    method, params
        Explainer name (entry point) and its parameters (strings are parsed by the declarations).
        A declared ``seed`` parameter defaults to ``seed``.
    target
        Target CLI string or :class:`Target`; None → ``predicted`` (classifier) or ``disc-energy``.
    batch_size
        Images per call of the explainer (memory bound together with the plugin's internal batch).
    png_dir, png_limit
        Write overlays of the first ``png_limit`` images to this folder (created if missing).
    html, html_limit
        Call the explainer's ``write_html(attribution, inputs, path)`` hook on the first
        ``html_limit`` images; :class:`ParameterError` if the method has none.
    normalize
        Normalise inputs per image (default: yes for cryoxplain model files, no for a plain module
        without a ``task``).
    progress
        Optional callable ``progress(done, total)``.
    skip_existing, unit_size
        Sharded runs (under ``torchrun`` or a SLURM job array, or with ``skip_existing``):
        :func:`cryoxplain.explain.shard.explain_sharded` splits the images into units of
        ``unit_size`` (rounded up to whole batches), keeps finished units with ``skip_existing`` and
        rank 0 merges them into ``output`` (docs/scale-out.md).  World size 1 without
        ``skip_existing``: the plain run.
    """
    if _unit is None:
        from .. import distributed

        ctx = distributed.context(allow_array=True)
        if ctx.distributed or skip_existing:
            from .shard import explain_sharded

            return explain_sharded(model, stack, output, method=method, params=params, target=target,
                                   batch_size=batch_size, device=device, seed=seed, force=force, png_dir=png_dir,
                                   png_limit=png_limit, html=html, html_limit=html_limit, normalize=normalize,
                                   progress=progress, project_dir=project_dir, skip_existing=skip_existing,
                                   unit_size=unit_size, ctx=ctx)
    from .. import __version__
    from ..io.particles import open_images
    from ..utils import seed_everything

    t0 = time.perf_counter()
    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    params = dict(params or {})
    cls = get_explainer(method)
    declared = {p.name for p in cls.params}
    if "seed" in declared and "seed" not in params:
        params["seed"] = seed
    explainer: Explainer = cls(**params)
    if html is not None and not callable(getattr(cls, "write_html", None)):
        raise ParameterError(f"method {method} has no HTML viewer (it does not implement write_html); leave html unset")

    # outputs are checked before any work, so a refused overwrite costs nothing
    inputs_paths = (stack,) if isinstance(stack, (str, os.PathLike)) else ()
    if isinstance(model, (str, os.PathLike)) and Path(model).exists():
        inputs_paths += (model,)  # the model file is an input too
    out_path = check_output(output, force=force, inputs=inputs_paths)
    if html is not None:
        check_output(html, force=force, inputs=inputs_paths)
    png_dir = Path(png_dir) if png_dir is not None else None

    seed_everything(seed)
    from ..distributed import device as bound_device

    dev = bound_device(device)  # resolve_device; under torchrun cuda:LOCAL_RANK
    net, info, task, model_desc = _load(model, dev)
    if normalize is None:
        normalize = task in ("denoise", "classify")

    owned = isinstance(stack, (str, os.PathLike))
    if owned:
        images = open_images(stack, project_dir=project_dir)
        voxel_size, source = images.voxel_size, str(stack)
        ps = getattr(images, "particles", None)
        inputs_paths += tuple(ps.stacks) if ps is not None else ()  # a particle file's stacks
    else:
        from ..imaging.batch import as_image_stack

        arr = as_image_stack(stack, name="stack", finite=False)  # NaN reported by _ArrayStack
        images, voxel_size, source = _ArrayStack(arr), None, "<array>"
    try:
        n, (h, w) = len(images), images.image_shape
        check_input_size(net, (h, w), "particles")  # before any work
        tgt = parse_target(target if target is not None else default_target(task or "denoise"), (h, w))
        first = torch.from_numpy(np.array(images[0:1], dtype=np.float32)).to(dev)[:, None]
        with torch.no_grad():
            out_shape = tuple(net(normalize_images(first) if normalize else first).shape)
        tgt.check(out_shape)
        if png_dir is not None:
            if png_dir.exists() and not png_dir.is_dir():
                raise ParameterError(f"png_dir {png_dir} exists and is not a folder")
            stem = Path(source).stem if owned else "particle"
            pngs = [png_dir / f"{stem}_{i:06d}.png" for i in range(min(n, png_limit))]
            for p in pngs:  # side outputs: never an input, replaced only with force
                check_output(p, force=force, inputs=inputs_paths, folder_must_exist=False)
        provenance = {
            "cryoxplain_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "input": source, "n_images": n, "image_shape": [h, w], "voxel_size": voxel_size,
            "model": model_desc, "model_task": task,
            "model_info": None if info is None else {"arch": info.arch, "task": info.task, "config": info.config,
                                                     "training": info.training, "version": info.version},
            "method": method, "reference": cls.reference, "params": explainer.config,
            "target": tgt.describe(), "seed": seed, "device": str(dev),
            "normalization": NORMALIZATION if normalize else "none",
        }
        keep_maps, keep_inputs, keep_parts = [], [], []
        keep = max(png_limit if png_dir is not None else 0, html_limit if html is not None else 0)
        max_gap = None
        root_attrs = dict(provenance, provenance=provenance)
        with StreamingH5(out_path, root_attrs, force=force, inputs=inputs_paths, size=4 * n * h * w) as hf:
            grp = hf.create_group("attribution")
            unit_start = 0 if _unit is None else int(_unit[0])  # a unit of a sharded run: its first image
            for start, batch in _batches(images, batch_size, _unit):
                x = torch.from_numpy(np.array(batch, dtype=np.float32)).to(dev)[:, None]
                if normalize:
                    x = normalize_images(x)
                explainer.index_offset = start  # seeds image i's stream from (seed, start + i)
                att = explainer.attribute(net, x, tgt)  # the template validates the maps
                att.model = att.model or model_desc
                att.to_hdf5(grp, start - unit_start)
                gap = att.extras.get("completeness_gap")
                if gap is not None:
                    g = float(np.max(np.abs(gap)))
                    max_gap = g if max_gap is None else max(max_gap, g)
                if start < keep:
                    m = min(x.shape[0], keep - start)
                    keep_maps.append(att.maps[:m])
                    keep_inputs.append(x[:m, 0].detach().cpu().numpy())
                    keep_parts.append(_slice_attribution(att, m))
                if progress is not None:
                    progress(start + x.shape[0], n)
            grp.attrs["provenance"] = json.dumps(provenance, default=str)
        result = ExplainResult(out_path, n, method, dict(explainer.config), tgt.describe(), max_completeness_gap=max_gap)
        if png_dir is not None and keep_maps:
            from .render import render_overlay

            png_dir.mkdir(parents=True, exist_ok=True)
            maps, ins = np.concatenate(keep_maps), np.concatenate(keep_inputs)
            for i, p in enumerate(pngs):
                render_overlay(ins[i], maps[i], p, force=True, inputs=inputs_paths, label=f"{method}",
                               title=f"{Path(source).name} #{i} · {method} · target {tgt.describe()}")
                result.png_files.append(p)
        if html is not None and keep_parts:
            from .base import Attribution

            att_all = Attribution.concatenate(keep_parts)
            inputs_t = torch.from_numpy(np.concatenate(keep_inputs))[:, None]
            with atomic_path(html, force=force, inputs=inputs_paths) as tmp:
                explainer.write_html(att_all, inputs_t, tmp)
            result.html = Path(html)
    finally:
        if owned:
            images.close()
    result.seconds = time.perf_counter() - t0
    return result


def _batches(images, batch_size: int, unit):
    """``images.batches(batch_size)``, or only the batches of ``unit = (first, stop)`` (``first`` a
    multiple of ``batch_size``: the same batches as the whole run)."""
    if unit is None:
        yield from images.batches(batch_size)
        return
    a, b = int(unit[0]), min(int(unit[1]), len(images))
    for s in range(a, b, batch_size):
        yield s, images[s:min(s + batch_size, b)]


def _slice_attribution(att, m):
    from .base import Attribution

    b = att.maps.shape[0]
    extras = {k: (np.asarray(v)[:m] if np.ndim(v) >= 1 and np.shape(v)[0] == b else v) for k, v in att.extras.items()}
    return Attribution(att.maps[:m], att.method, att.params, att.target, att.model, extras)


class _ArrayStack:
    """The part of :class:`~cryoxplain.io.mrc.ImageStack` that explain_stack uses, over an array."""

    def __init__(self, arr):
        if not np.isfinite(arr).all():
            raise ParameterError("input images contain NaN or infinite values")
        self.arr = arr

    def __len__(self):
        return self.arr.shape[0]

    @property
    def image_shape(self):
        return tuple(self.arr.shape[1:])

    def __getitem__(self, idx):
        return self.arr[idx]

    def batches(self, batch_size):
        for s in range(0, len(self), batch_size):
            yield s, self.arr[s:s + batch_size]

    def close(self):
        pass


def read_attributions(path: str | os.PathLike) -> tuple[np.ndarray, dict, dict]:
    """Read ``(maps (N, H, W), extras, provenance)`` back from an :func:`explain_stack` file."""
    import h5py

    from ..errors import InputFileError

    try:
        with h5py.File(path, "r") as f:
            grp = f["attribution"]
            maps = grp["maps"][()]
            extras = {}
            if "extras" in grp:
                extras.update({k: v[()] for k, v in grp["extras"].items()})
                extras.update(dict(grp["extras"].attrs))
            prov = json.loads(f.attrs["provenance"])
    except (OSError, KeyError) as exc:
        raise InputFileError(f"{path}: not a cryoxplain attribution file ({exc})") from None
    return maps, extras, prov
