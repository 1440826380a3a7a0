"""What is in a file: MRC images/stacks/volumes, RELION STAR files, cryoxplain HDF5 files.

:func:`describe_file` is what ``cryoxplain info`` prints; pipelines can call it to check inputs.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputFileError

__all__ = ["describe_file"]


def describe_file(path: str | os.PathLike, *, stats: bool = False, validate: bool = False,
                  permissive: bool = False) -> list[str]:
    """Human-readable description of ``path``: a list of lines (the first names the file and its kind).

    MRC files are described from the header alone (kind, shape in numpy order, mode, voxel size);
    ``stats`` adds min/max/mean/std computed batch by batch; ``validate`` runs ``mrcfile.validate``
    and raises :class:`~cryoxplain.errors.InputFileError` when the file does not pass.
    ``permissive`` reads damaged MRC headers where possible (always with a warning).  STAR files:
    blocks, rows and labels.  HDF5 files: datasets and attributes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".star":
        from .star import StarTable, read_star

        blocks = read_star(path)
        lines = [f"{path}: STAR, {len(blocks)} block(s)"]
        for name, b in blocks.items():
            if isinstance(b, StarTable):
                lines.append(f"  data_{name}: table, {b.n_rows} rows, labels: {', '.join(b)}")
            else:
                lines.append(f"  data_{name}: {len(b)} values: " + ", ".join(f"{k}={v}" for k, v in b.items()))
        return lines
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
    if stats:
        st = stack_stats(path, permissive=permissive)
        lines.append(f"  min {st['min']:.6g}  max {st['max']:.6g}  mean {st['mean']:.6g}  std {st['std']:.6g}")
    if validate:
        if not mrc_validate(path):
            raise InputFileError(f"{path}: does not pass mrcfile.validate")
        lines.append("  mrcfile.validate: valid")
    return lines
