"""``cryoxplain info``: what is in an MRC, STAR, cryoSPARC .cs or HDF5 file (thin wrapper over
:func:`cryoxplain.io.describe.describe_file`)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("info", context_settings={"show_default": True})
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--stats", is_flag=True, help="Also compute min/max/mean/std of MRC data (reads the data in batches).")
@click.option("--validate", "do_validate", is_flag=True, help="Also run mrcfile.validate on MRC files.")
@click.option("--permissive", is_flag=True, help="Read damaged MRC headers where possible (always with a warning).")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="RELION/cryoSPARC project directory that stack paths in particle files are relative to "
                   "[default: the current directory, then the particle file's folder and those above it].")
def info(files, stats, do_validate, permissive, project_dir):
    """Describe MRC/MRCS images, stacks and volumes (shape, mode, voxel size, stack vs volume,
    FEI metadata, accepted quirks), particle sets (RELION STAR with rlnImageName, cryoSPARC .cs:
    particles, stacks, box, pixel size, optics groups; --stats over the listed particles), other
    STAR files (blocks, rows, labels) and cryoxplain HDF5 files (datasets, attributes).

    Damaged or non-MRC files give a one-line error and exit status 2.
    """
    from ..io.describe import describe_file

    for path in files:
        for line in describe_file(path, stats=stats, validate=do_validate, permissive=permissive,
                                  project_dir=project_dir):
            click.echo(line)
