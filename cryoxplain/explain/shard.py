"""Sharded explanation of a large stack or particle set over the ranks of a ``torchrun`` world or a
SLURM job array (docs/scale-out.md); :func:`cryoxplain.explain.explain_stack` comes here when the
world size is > 1 or ``skip_existing`` is set.

The images are split into units of ``ceil(unit_size / batch_size)`` whole batches — the batches of
a single-process run, so every image gets the same seed stream (``index_offset``) and the same
batch as there.  Each unit is explained by :func:`~cryoxplain.explain.explain_stack` into an
atomic part file ``OUT_DIR/.OUT.parts-bB-kK/UUUUUU.h5``; units go to the ranks as contiguous
ranges (:func:`cryoxplain.distributed.shard_range`); a finished part is kept with
``skip_existing``.  After the final barrier rank 0 copies the parts, in order, into ``output``
(one :class:`~cryoxplain.io.hdf5.StreamingH5`, atomic: the root, ``attribution`` and
``attribution/extras`` attributes of the first part, every per-image dataset appended with
:func:`~cryoxplain.io.hdf5.append_rows`) and removes them.  PNG overlays and the HTML viewer
show the first images, so the rank doing unit 0 writes them (with the images of unit 0 only when
a unit is smaller than the limits).
"""
from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from .. import distributed
from ..errors import ParameterError

__all__ = ["DEFAULT_UNIT_SIZE", "explain_sharded"]

#: images per work unit (rounded up to whole batches)
DEFAULT_UNIT_SIZE = distributed.DEFAULT_UNIT_SIZE


def _count(stack, project_dir) -> int:
    if isinstance(stack, (str, os.PathLike)):
        from ..io.particles import open_images

        images = open_images(stack, project_dir=project_dir)
        try:
            return len(images)
        finally:
            images.close()
    return int(np.shape(stack)[0]) if np.ndim(stack) == 3 else 1


def explain_sharded(model, stack, output, *, method: str, params=None, target=None, batch_size: int = 16,
                    device: str = "auto", seed: int = 0, force: bool = False, png_dir=None, png_limit: int = 32,
                    html=None, html_limit: int = 16, normalize=None, progress=None, project_dir=None,
                    skip_existing: bool = False, unit_size: int | None = None,
                    ctx: distributed.Context | None = None):
    """This rank's share of :func:`~cryoxplain.explain.explain_stack` (arguments as there; see the
    module docstring).  Returns the :class:`~cryoxplain.explain.stack.ExplainResult` of the merged file."""
    from ..io.atomic import check_output, remove_stale_temporaries
    from .stack import ExplainResult, explain_stack

    t0 = time.perf_counter()
    ctx = distributed.context(allow_array=True) if ctx is None else ctx
    unit_size = distributed.check_unit_size(unit_size, batch_size, "image")
    out = Path(output)
    inputs = (stack,) if isinstance(stack, (str, os.PathLike)) else ()
    done_before = out.exists() and skip_existing and not force
    if not done_before:
        check_output(out, force=force, inputs=inputs)
        if html is not None and not skip_existing:
            check_output(html, force=force, inputs=inputs)
    distributed.init(distributed.device(device, ctx), ctx, backend="gloo")  # barriers only
    n = _count(stack, project_dir)
    per = max(1, math.ceil(unit_size / batch_size)) * batch_size
    n_units = math.ceil(n / per)
    parts = out.parent / f".{out.name}.parts-b{batch_size}-k{per // batch_size}"
    kw = dict(method=method, params=params, target=target, batch_size=batch_size, device=device, seed=seed,
              normalize=normalize, project_dir=project_dir)

    def part(u: int) -> Path:
        return parts / f"{u:06d}.h5"

    def unit_done(u: int) -> bool:
        if not (skip_existing and not force and part(u).exists()):
            return False
        return u != 0 or html is None or Path(html).exists()

    if not done_before:
        for u in distributed.shard(range(n_units), ctx):
            if unit_done(u):
                continue
            parts.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(part(u))
            first = dict(png_dir=png_dir, png_limit=png_limit, html=html, html_limit=html_limit) if u == 0 else {}
            explain_stack(model, stack, part(u), force=True, progress=None,
                          _unit=(u * per, min((u + 1) * per, n)), **kw, **first)
            if progress is not None:
                progress(min((u + 1) * per, n), n)
        distributed.barrier()
        if ctx.main:
            _merge(out, [part(u) for u in range(n_units)], parts, ctx, force or skip_existing)
        distributed.barrier()
    result = ExplainResult(out, n, method, dict(params or {}), str(target))
    if out.exists():
        result = _summary(out, result)
    if png_dir is not None:  # the names explain_stack gives the overlays of the first images
        stem = Path(stack).stem if inputs else "particle"
        pngs = [Path(png_dir) / f"{stem}_{i:06d}.png" for i in range(min(n, png_limit))]
        result.png_files = [q for q in pngs if q.exists()]
    result.html = Path(html) if html is not None and Path(html).exists() else None
    result.seconds = time.perf_counter() - t0
    return result


def _merge(out: Path, part_files: list, parts: Path, ctx, force: bool) -> None:
    import h5py

    from ..io.hdf5 import StreamingH5, append_rows

    missing = [p for p in part_files if not p.exists()]
    if missing:
        msg = f"{out}: {len(missing)} of {len(part_files)} work unit(s) are not done yet (first: {missing[0].name})"
        if ctx.launcher == "slurm-array":
            warnings.warn(msg + "; re-run with skip_existing once the job array has finished to merge", UserWarning,
                          stacklevel=3)
            return
        raise ParameterError(msg + "; re-run with skip_existing to redo only those")
    with h5py.File(part_files[0], "r") as f0:
        root = dict(f0.attrs)
    with StreamingH5(out, force=force) as hf:
        for k, v in root.items():
            hf.attrs[k] = v
        start = 0
        for i, p in enumerate(part_files):
            with h5py.File(p, "r") as f:
                src = f["attribution"]
                grp = hf.require_group("attribution")
                if i == 0:
                    grp.attrs.update(dict(src.attrs))
                    if "extras" in src:
                        grp.require_group("extras").attrs.update(dict(src["extras"].attrs))
                b = src["maps"].shape[0]
                append_rows(grp, "maps", src["maps"][()], start)
                for name, ds in (src["extras"].items() if "extras" in src else ()):
                    append_rows(grp.require_group("extras"), name, ds[()], start)
                start += b
    shutil.rmtree(parts, ignore_errors=True)


def _summary(out: Path, result):
    """``n_images``, ``target``, ``params`` and the completeness gap from the merged file."""
    import json

    import h5py

    with h5py.File(out, "r") as f:
        prov = json.loads(f.attrs["provenance"])
        grp = f["attribution"]
        result.n_images = int(grp["maps"].shape[0])
        if "extras" in grp and "completeness_gap" in grp["extras"]:
            result.max_completeness_gap = float(np.max(np.abs(grp["extras"]["completeness_gap"][()])))
    result.target, result.params = prov.get("target", result.target), prov.get("params", result.params)
    return result
