"""``cryoxplain info``: what is in an MRC, STAR or HDF5 file (header-only by default)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("info", context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--stats", is_flag=True, help="Also compute min/max/mean/std of MRC data (reads the data in batches).")
@click.option("--validate", "do_validate", is_flag=True, help="Also run mrcfile.validate on MRC files.")
@click.option("--permissive", is_flag=True, help="Read damaged MRC headers where possible (always with a warning).")
def info(files, stats, do_validate, permissive):
    """Describe MRC/MRCS images, stacks and volumes (shape, mode, voxel size, stack vs volume),
    RELION STAR files (blocks, rows, labels) and cryoxplain HDF5 files (datasets, attributes).

    Damaged or non-MRC files give a one-line error and exit status 2.
    """
    from ..errors import InputFileError
    from ..io.mrc import sniff, stack_stats, validate

    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".star":
            from ..io.star import StarTable, read_star

            blocks = read_star(path)
            click.echo(f"{path}: STAR, {len(blocks)} block(s)")
            for name, b in blocks.items():
                if isinstance(b, StarTable):
                    click.echo(f"  data_{name}: table, {b.n_rows} rows, labels: {', '.join(b)}")
                else:
                    click.echo(f"  data_{name}: {len(b)} values: " + ", ".join(f"{k}={v}" for k, v in b.items()))
            continue
        if suffix in (".h5", ".hdf5"):
            from ..io.hdf5 import read_h5

            data, attrs = read_h5(path)
            click.echo(f"{path}: HDF5, {len(data)} dataset(s)")
            for k, v in data.items():
                click.echo(f"  {k}: {getattr(v, 'shape', ())} {getattr(v, 'dtype', type(v).__name__)}")
            for k, v in attrs.items():
                click.echo(f"  @{k} = {v}")
            continue
        inf = sniff(path, permissive=permissive)
        vs = f"{inf.voxel_size:g} Å" if inf.voxel_size else "unknown (0 in header)"
        shape = " × ".join(str(s) for s in inf.shape)
        click.echo(f"{path}: MRC {inf.kind}, {shape} (numpy order), mode {inf.mode}, voxel size {vs}")
        if stats:
            st = stack_stats(path, permissive=permissive)
            click.echo(f"  min {st['min']:.6g}  max {st['max']:.6g}  mean {st['mean']:.6g}  std {st['std']:.6g}")
        if do_validate:
            ok = validate(path)
            click.echo(f"  mrcfile.validate: {'valid' if ok else 'INVALID'}")
            if not ok:
                raise InputFileError(f"{path}: does not pass mrcfile.validate")
