"""What is in a file: MRC images/stacks/volumes, particle sets (RELION STAR, cryoSPARC .cs), STAR
files, cryoxplain HDF5 files.

:func:`describe_file` is what ``cryoxplain info`` prints; pipelines can call it to check inputs.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputFileError

__all__ = ["describe_file"]


def describe_file(path: str | os.PathLike, *, stats: bool = False, validate: bool = False,
                  permissive: bool = False, project_dir: str | os.PathLike | None = None) -> list[str]:
    """Human-readable description of ``path``: a list of lines (the first names the file and its kind).

    MRC files are described from the header alone (kind, shape in numpy order, mode, voxel size,
    FEI acquisition metadata, accepted quirks); ``stats`` adds min/max/mean/std computed batch by
    batch; ``validate`` runs ``mrcfile.validate`` and raises
    :class:`~cryoxplain.errors.InputFileError` when the file does not pass.  ``permissive`` reads
    damaged MRC headers where possible (always with a warning).  Particle files (a STAR with an
    ``rlnImageName`` column, a cryoSPARC ``.cs``) are described as a particle set (particles,
    stacks, box, pixel size, optics groups; stacks resolved against ``project_dir``), ``stats``
    computed over the listed particles; other STAR files: blocks, rows and labels.  HDF5 files:
    datasets and attributes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".cs":
        return _describe_particles(path, project_dir, stats)
    if suffix == ".star":
        from .star import StarTable, read_star

        blocks = read_star(path)
        head = [f"{path}: STAR, {len(blocks)} block(s)"]
        if any(isinstance(b, StarTable) and "rlnImageName" in b for b in blocks.values()):
            try:
                head = _describe_particles(path, project_dir, stats)
            except InputFileError as exc:  # e.g. stacks not found: still say what the file holds
                head.append(f"  particles: {exc}")
        for name, b in blocks.items():
            if isinstance(b, StarTable):
                head.append(f"  data_{name}: table, {b.n_rows} rows, labels: {', '.join(b)}")
            else:
                head.append(f"  data_{name}: {len(b)} values: " + ", ".join(f"{k}={v}" for k, v in b.items()))
        return head
    if suffix in (".h5", ".hdf5"):
        from .hdf5 import read_h5

        data, attrs = read_h5(path)
        lines = [f"{path}: HDF5, {len(data)} dataset(s)"]
        lines += [f"  {k}: {getattr(v, 'shape', ())} {getattr(v, 'dtype', type(v).__name__)}" for k, v in data.items()]
        lines += [f"  @{k} = {v}" for k, v in attrs.items()]
        return lines
    from .mrc import sniff, stack_stats
    from .mrc import validate as mrc_validate

    inf = sniff(path, permissive=permissive)
    vs = f"{inf.voxel_size:g} Å" if inf.voxel_size else "unknown (0 in header)"
    shape = " × ".join(str(s) for s in inf.shape)
    lines = [f"{path}: MRC {inf.kind}, {shape} (numpy order), mode {inf.mode}, voxel size {vs}"]
    meta = inf.metadata
    if meta:
        units = {"pixel_size": "Å", "dose": "e/Å²", "defocus": "Å (underfocus)", "voltage": "kV"}
        lines.append(f"  {meta['type']} extended header: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.4g} {units.get(k, '')}".rstrip() if isinstance(v, float) else f"{k} {v}"
            for k, v in meta.items() if k != "type"))
    quirks = [q for q in inf.quirks if not (meta and q.startswith(f"{meta['type']} extended header"))]
    if quirks:
        lines.append("  quirks: " + "; ".join(quirks))
    if stats:
        st = stack_stats(path, permissive=permissive)
        lines.append(f"  min {st['min']:.6g}  max {st['max']:.6g}  mean {st['mean']:.6g}  std {st['std']:.6g}")
    if validate:
        if not mrc_validate(path):
            raise InputFileError(f"{path}: does not pass mrcfile.validate")
        lines.append("  mrcfile.validate: valid")
    return lines


def _describe_particles(path: Path, project_dir, stats: bool) -> list[str]:
    from .particles import open_particles

    ps = open_particles(path, project_dir=project_dir)
    lines = ps.describe()
    if stats:
        st = ps.stats()
        lines.append(f"  min {st['min']:.6g}  max {st['max']:.6g}  mean {st['mean']:.6g}  std {st['std']:.6g}")
    return lines
