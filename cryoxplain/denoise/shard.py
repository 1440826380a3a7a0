"""Sharded denoising: many files or large particle sets split over the ranks of a ``torchrun`` world
or a SLURM job array (docs/scale-out.md).  :func:`cryoxplain.denoise.denoise_files` comes here when
the launcher's world size is > 1 or ``skip_existing`` is set; otherwise it runs as it always has.

Work units and their outputs:

* **MRC inputs** — one unit per input file; its output is the file's usual output
  (:func:`~cryoxplain.denoise.apply.plan_outputs`), written atomically by
  :func:`~cryoxplain.denoise.apply.denoise_file`.
* **Particle files** (STAR / ``.cs``) — the set is read in the batches a single process uses
  (:meth:`~cryoxplain.io.particles.ParticleSet.batch_positions`: stack by stack, ``batch_size``
  particles); a unit is ``ceil(unit_size / batch_size)`` consecutive batches, written atomically
  as one part stack ``OUT/.NAME.parts-bB-kK/UUUUUU.mrcs``.  After the final barrier rank 0 merges
  the parts, in set order, with :class:`~cryoxplain.io.particles.ParticleSetWriter` — the same
  writer, the same batches and so bitwise the same stacks and particle file as one process — and
  removes the parts.  The unit layout depends on ``batch_size`` and ``unit_size`` only, never on
  the world size, so a re-run with another number of ranks reuses the finished parts.

Units are split statically (:func:`cryoxplain.distributed.shard_range`, contiguous, no padding).
An output that exists is complete (atomic writes); with ``skip_existing`` it is kept and its unit
skipped, so a re-run after a failed or killed rank redoes only the missing units (a killed writer's
temporary file is removed when its unit is redone).  Each rank checks the inputs and outputs of its
own units before it writes anything.  Job-array tasks share no process group: the task of rank 0
merges only when every part is there; otherwise a later run with ``skip_existing`` (world size 1,
e.g. a dependent job) merges.
"""
from __future__ import annotations

import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


from .. import distributed
from ..errors import FileQuirkWarning, InputFileError, ParameterError

__all__ = ["DEFAULT_UNIT_SIZE", "denoise_sharded", "particle_units"]

#: particles per work unit of a particle set (rounded up to whole batches)
DEFAULT_UNIT_SIZE = distributed.DEFAULT_UNIT_SIZE


@dataclass
class _SetPlan:
    writer: object  # ParticleSetWriter (checks only until the merge)
    batches: list  # [(stack, positions)] in single-process order
    per_unit: int  # batches per unit
    parts: Path  # the part folder

    @property
    def n_units(self) -> int:
        return math.ceil(len(self.batches) / self.per_unit)

    def part(self, u: int) -> Path:
        return self.parts / f"{u:06d}.mrcs"

    def unit_batches(self, u: int) -> list:
        return self.batches[u * self.per_unit:(u + 1) * self.per_unit]


def particle_units(writer, batch_size: int, unit_size: int) -> _SetPlan:
    """The work units of one particle set (see the module docstring)."""
    batches = writer.ps.batch_positions(batch_size)
    k = max(1, math.ceil(int(unit_size) / int(batch_size)))
    parts = writer.out_dir / f".{writer.output_path.name}.parts-b{int(batch_size)}-k{k}"
    return _SetPlan(writer, batches, k, parts)


def denoise_sharded(inputs: Sequence, output, model="default", *, batch_size: int = 64, device: str = "auto",
                    patch_size: int, padding, force: bool = False, fmt: str = "mrc", suffix: str | None = None,
                    progress: bool | None = None, stack: bool | None = None, project_dir=None,
                    pixel_size: float | None = None, bin: float | None = None, upsample: bool = False,
                    skip_existing: bool = False, unit_size: int | None = None,
                    ctx: distributed.Context | None = None) -> list[Path]:
    """This rank's share of :func:`~cryoxplain.denoise.denoise_files` (arguments as there; see the
    module docstring).  Returns every output of the run (the same list on every rank)."""
    from ..io.particles import is_particle_file

    ctx = distributed.context(allow_array=True) if ctx is None else ctx
    unit_size = distributed.check_unit_size(unit_size, batch_size, "particle")
    dev = distributed.device(device, ctx)
    distributed.init(dev, ctx, backend="gloo")  # barriers only
    if any(is_particle_file(p) for p in inputs):
        if fmt != "mrc":
            raise ParameterError(f"particle sets are written as MRC stacks, not {fmt}")
        return _particle_sets(list(inputs), Path(output), model, dev, ctx, batch_size=batch_size,
                              patch_size=patch_size, padding=padding, force=force,
                              suffix="_denoised" if suffix is None else suffix, progress=progress,
                              project_dir=project_dir, pixel_size=pixel_size, skip_existing=skip_existing,
                              unit_size=unit_size)
    return _files(list(inputs), output, model, dev, ctx, batch_size=batch_size, patch_size=patch_size,
                  padding=padding, force=force, fmt=fmt, suffix=suffix, progress=progress, stack=stack,
                  pixel_size=pixel_size, bin=bin, upsample=upsample, skip_existing=skip_existing)


def _todo(path: Path, force: bool, skip_existing: bool, inputs=()) -> bool:
    """Whether a unit with output ``path`` must be (re)done; raises for an existing output
    without ``force`` or ``skip_existing``."""
    from ..io.atomic import check_output

    if path.exists() and skip_existing and not force:
        return False
    check_output(path, force=force, inputs=inputs, folder_must_exist=False)
    return True


def _files(inputs, output, model, dev, ctx, *, batch_size, patch_size, padding, force, fmt, suffix, progress,
           stack, pixel_size, bin, upsample, skip_existing) -> list[Path]:
    from ..io.atomic import remove_stale_temporaries
    from ..io.mrc import sniff
    from .apply import _as_denoiser, denoise_file, plan_outputs

    pairs = plan_outputs(inputs, output, fmt, suffix or "")
    all_inputs = [s for s, _ in pairs]
    mine = distributed.shard(pairs, ctx)
    todo = []
    for src, dst in mine:  # this rank's units, checked before any work
        info = sniff(src, stack=stack)
        if info.kind == "volume":
            raise InputFileError(f"{src}: is a 3D volume, not particles or a micrograph (rename a stack to .mrcs)")
        if info.kind == "stack" and fmt != "mrc":
            raise ParameterError(f"{src}: a particle stack can only be written as MRC, not {fmt}")
        if _todo(dst, force, skip_existing, all_inputs):
            todo.append((src, dst))
    den = _as_denoiser(model, dev) if todo else None
    for src, dst in todo:
        dst.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dst)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FileQuirkWarning)
            denoise_file(src, dst, den, batch_size=batch_size, patch_size=patch_size, padding=padding,
                         force=True, fmt=fmt, progress=progress, stack=stack, pixel_size=pixel_size, bin=bin,
                         upsample=upsample)
    distributed.barrier()
    return [d for _, d in pairs]


def _particle_sets(inputs, out, model, dev, ctx, *, batch_size, patch_size, padding, force, suffix, progress,
                   project_dir, pixel_size, skip_existing, unit_size) -> list[Path]:
    from ..io.atomic import remove_stale_temporaries
    from ..io.mrc import StackWriter
    from .apply import _as_denoiser, _particle_writer

    from ..io.particles import is_particle_file

    if not all(is_particle_file(p) for p in inputs):
        raise ParameterError("give particle files (.star, .cs) and MRC files in separate runs")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{out} is a file; particle sets are written into an output folder")
    plans, finals = [], []
    for p in inputs:
        final_star = out / _final_name(p, suffix)
        finals.append(final_star)
        if final_star.exists() and skip_existing and not force:
            continue  # merged by an earlier run: the whole set is done
        # checks every output; with skip_existing, stacks of a merge interrupted before the STAR are ours
        writer = _particle_writer(p, out, project_dir, pixel_size, suffix, force or skip_existing, "float32")
        plans.append(particle_units(writer, batch_size, unit_size))
    units = [(i, u) for i, pl in enumerate(plans) for u in range(pl.n_units)]
    # a part exists only when complete; it is kept only with skip_existing (else redone)
    mine = [(i, u) for i, u in distributed.shard(units, ctx)
            if force or not skip_existing or not plans[i].part(u).exists()]
    den = None
    for i, u in mine:
        pl = plans[i]
        if den is None:
            den = _as_denoiser(model, dev)
            for q in plans:
                den.check_shape(q.writer.ps.image_shape, str(q.writer.ps.path))
        ps = pl.writer.ps
        big = max(ps.image_shape) > patch_size and den.input_shape is None
        pl.parts.mkdir(parents=True, exist_ok=True)
        part = pl.part(u)
        remove_stale_temporaries(part)
        ub = pl.unit_batches(u)
        n = sum(len(p) for _, p in ub)
        with StackWriter(part, (n,) + tuple(ps.image_shape), None, kind="stack", dtype="float32", force=True) as w:
            off = 0
            for _, imgs in ps.batches(batch_size, u * pl.per_unit, u * pl.per_unit + len(ub)):
                w.write(off, den.denoise_batch(imgs, patch_size, padding, big))
                off += len(imgs)
    distributed.barrier()
    if ctx.main:
        for pl in plans:
            _merge(pl, ctx)
    distributed.barrier()
    return finals


def _final_name(particle_file, suffix: str) -> str:
    p = Path(particle_file)
    return f"{p.stem}{suffix}{'.cs' if p.suffix.lower() == '.cs' else '.star'}"


def _merge(pl: _SetPlan, ctx) -> None:
    """Rank 0: the parts, in set order, through the set's writer (then the parts are removed)."""
    from ..io.mrc import open_stack

    missing = [u for u in range(pl.n_units) if not pl.part(u).exists()]
    if missing:
        msg = (f"{pl.writer.ps.path}: {len(missing)} of {pl.n_units} work unit(s) are not done yet "
               f"(first: {pl.part(missing[0]).name})")
        if ctx.launcher == "slurm-array":  # other array tasks may still run; a later run merges
            warnings.warn(msg + "; re-run with skip_existing once the job array has finished to merge", UserWarning,
                          stacklevel=3)
            return
        raise ParameterError(msg + "; re-run with skip_existing to redo only those")
    with pl.writer as w:
        for u in range(pl.n_units):
            with warnings.catch_warnings():  # parts carry no pixel size: the writer sets the set's
                warnings.simplefilter("ignore", FileQuirkWarning)
                st = open_stack(pl.part(u), stack=True)
            with st:
                off = 0
                for _, p in pl.unit_batches(u):
                    w.write(p, st[off:off + len(p)])
                    off += len(p)
    shutil.rmtree(pl.parts, ignore_errors=True)
