"""Denoising as a RELION External job (library behind ``cryoxplain relion-external``).

RELION runs an External job's executable in the **project directory** with
``--o External/jobNNN/ --in_parts Select/job007/particles.star`` (or ``--in_mics …``), ``--j N``
and one ``--PARAM VALUE`` pair per parameter filled in on the job's Params tab, then polls the job
directory for ``RELION_JOB_EXIT_SUCCESS`` or ``RELION_JOB_EXIT_FAILURE`` and reads the output
nodes from ``RELION_OUTPUT_NODES.star`` (docs/relion-cryosparc.md).  :func:`run_relion_external`
does exactly that:

* ``in_parts``: the particles are denoised with :func:`~cryoxplain.denoise.apply.denoise_particles`
  into ``JOB/particles_denoised.star`` plus ``JOB/…_denoised.mrcs`` (the STAR is the input except
  ``rlnImageName``); output node type 3 (RELION 3.1) / ``ParticleGroupMetadata.star.relion`` (4, 5).
* ``in_mics``: each ``rlnMicrographName`` is denoised with
  :func:`~cryoxplain.denoise.apply.denoise_micrograph` (Fourier-binned to the model's training pixel
  size by default) into ``JOB/<its path>_denoised.mrc``, and ``JOB/micrographs_denoised.star`` is
  the input with ``rlnMicrographName`` (and ``rlnMicrographPixelSize`` when binned) replaced;
  output node type 1 / ``MicrographGroupMetadata.star.relion``.
* Stale markers from an earlier run are removed first; on success the outputs are complete before
  ``RELION_JOB_EXIT_SUCCESS`` appears; on any error the files this run created are removed,
  ``RELION_JOB_EXIT_FAILURE`` is created and the error is raised (the command prints it on one
  line to stderr, which RELION shows as the job's ``run.err``).  Inputs are never modified.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..errors import InputFileError, ParameterError

__all__ = ["SUCCESS", "FAILURE", "OUTPUT_NODES", "run_relion_external"]

SUCCESS = "RELION_JOB_EXIT_SUCCESS"
FAILURE = "RELION_JOB_EXIT_FAILURE"
ABORTED = "RELION_JOB_EXIT_ABORTED"
OUTPUT_NODES = "RELION_OUTPUT_NODES.star"
# node types: RELION 3.1 integer, RELION 4/5 label (both columns are written)
NODE_TYPES = {"particles": (3, "ParticleGroupMetadata.star.relion"),
              "micrographs": (1, "MicrographGroupMetadata.star.relion")}


def _nodes_text(name: str, kind: str) -> str:
    num, label = NODE_TYPES[kind]
    return ("\n# version 30001\n\ndata_output_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n"
            f"_rlnPipeLineNodeType #2\n_rlnPipeLineNodeTypeLabel #3\n{name} {num} {label}\n\n")


def run_relion_external(o, in_parts=None, in_mics=None, j: int = 1, *, model="default", device: str = "auto",
                        batch_size: int = 64, pixel_size: float | None = None, bin: float | None = None,
                        upsample: bool = False, patch_size: int | None = None, project_dir=None) -> Path:
    """Run the denoising External job into job directory ``o`` (relative to ``project_dir``,
    default the current directory, as RELION runs it); return the output STAR node's path
    (relative to the project directory, as RELION names nodes).

    Exactly one of ``in_parts`` (a particle STAR) and ``in_mics`` (a micrograph STAR) is given.
    ``j`` is RELION's thread count (CPU threads for torch).  The markers and the output-node file
    are written here; errors are raised after ``RELION_JOB_EXIT_FAILURE`` is created.
    """
    from .apply import DEFAULT_PATCH

    project = Path(project_dir) if project_dir is not None else Path.cwd()
    job = Path(o)
    job_abs = job if job.is_absolute() else project / job
    for m in (SUCCESS, FAILURE, ABORTED):
        (job_abs / m).unlink(missing_ok=True)
    job_abs.mkdir(parents=True, exist_ok=True)
    before = set(job_abs.rglob("*"))
    try:
        if (in_parts is None) == (in_mics is None):
            raise ParameterError("give exactly one of --in_parts (particles STAR) and --in_mics (micrographs STAR)")
        if j is not None and int(j) >= 1:
            import torch

            torch.set_num_threads(int(j))
        patch = DEFAULT_PATCH if patch_size is None else int(patch_size)
        if in_parts is not None:
            node = _particles(project, job, job_abs, Path(in_parts), model, device, batch_size, pixel_size, patch)
            kind = "particles"
        else:
            node = _micrographs(project, job, job_abs, Path(in_mics), model, device, pixel_size, bin, upsample, patch)
            kind = "micrographs"
        (job_abs / OUTPUT_NODES).write_text(_nodes_text(str(node), kind))
    except BaseException:
        for p in sorted(set(job_abs.rglob("*")) - before, reverse=True):  # this run's partial outputs
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        (job_abs / FAILURE).touch()
        raise
    (job_abs / SUCCESS).touch()
    return node


def _rel(path: Path, project: Path) -> Path:
    try:
        return path.absolute().relative_to(project.absolute())
    except ValueError:
        return path.absolute()


def _particles(project, job, job_abs, star, model, device, batch_size, pixel_size, patch) -> Path:
    from .apply import denoise_particles

    star_abs = star if star.is_absolute() else project / star
    out = denoise_particles(star_abs, job_abs, model, project_dir=project, pixel_size=pixel_size,
                            batch_size=batch_size, device=device, patch_size=patch, suffix="_denoised",
                            force=True)
    return _rel(out, project)


def _micrographs(project, job, job_abs, star, model, device, pixel_size, bin, upsample, patch) -> Path:
    from ..io.star import StarTable, read_star, rewrite_star_text
    from ..io.mrc import sniff
    from .apply import Denoiser, denoise_micrograph

    star_abs = star if star.is_absolute() else project / star
    if not star_abs.is_file():
        raise InputFileError(f"{star}: no such file")
    blocks = read_star(star_abs)
    tables = [n for n, b in blocks.items() if isinstance(b, StarTable) and "rlnMicrographName" in b]
    if not tables:
        raise InputFileError(f"{star}: no table with an rlnMicrographName column (not a micrographs STAR)")
    block = "micrographs" if "micrographs" in tables else tables[0]
    t = blocks[block]
    names = [str(v) for v in t["rlnMicrographName"]]
    optics = blocks.get("optics") if isinstance(blocks.get("optics"), StarTable) else None
    star_px = None
    if optics is not None and "rlnMicrographPixelSize" in optics:
        vals = np.unique(np.asarray(optics["rlnMicrographPixelSize"], np.float64))
        if vals.size > 1:
            raise InputFileError(f"{star}: optics groups have different micrograph pixel sizes; run one group at a time")
        star_px = float(vals[0])
    px = pixel_size if pixel_size is not None else star_px
    srcs = []
    for n in names:
        p = Path(n)
        src = p if p.is_absolute() else project / p
        if not src.is_file():
            raise InputFileError(f"{star}: micrograph {n} not found (looked in {project})")
        srcs.append(src)
    den = Denoiser(model, device=device)
    new_names, out_px = [], set()
    for n, src in zip(names, srcs):
        rel = Path(n)
        keep = not rel.is_absolute() and ".." not in rel.parts
        dst = job_abs / ((rel.parent if keep else Path()) / f"{rel.stem}_denoised.mrc")
        dst.parent.mkdir(parents=True, exist_ok=True)
        denoise_micrograph(src, dst, den, patch_size=patch, pixel_size=px, bin=bin, upsample=upsample, force=True)
        out_px.add(round(float(sniff(dst).voxel_size or 0.0), 6))
        new_names.append(str(_rel(dst, project)))
    updates = {(block, "rlnMicrographName"): new_names}
    if optics is not None and "rlnMicrographPixelSize" in optics and len(out_px) == 1:
        v = next(iter(out_px))
        if v > 0 and (star_px is None or abs(v - star_px) > 1e-6 * v):
            updates[("optics", "rlnMicrographPixelSize")] = [v] * optics.n_rows
    out = job_abs / "micrographs_denoised.star"
    from ..io.atomic import atomic_path

    text = rewrite_star_text(star_abs.read_text(), updates, where=str(star))
    with atomic_path(out, force=True, inputs=(star_abs, *srcs)) as tmp:
        tmp.write_text(text)
    return _rel(out, project)
