"""``cryoxplain relion-external``: denoising as a RELION External job (thin wrapper over
:func:`cryoxplain.denoise.relion_external.run_relion_external`)."""
from __future__ import annotations

import click

from .common import pixel_size_callback


@click.command("relion-external", context_settings={"ignore_unknown_options": False})
@click.option("--o", "out", required=True, type=click.Path(file_okay=False),
              help="The job directory RELION gives (e.g. External/job012/).")
@click.option("--in_parts", type=click.Path(dir_okay=False), default=None, help="Input particles STAR (RELION node).")
@click.option("--in_mics", type=click.Path(dir_okay=False), default=None, help="Input micrographs STAR (RELION node).")
@click.option("--j", "threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads (RELION's --j).")
@click.option("--pipeline_control", type=click.Path(), default=None, hidden=True,
              help="Passed by RELION 4/5 (the job directory); accepted and ignored.")
@click.option("--model", default="default", show_default=True, help="Params tab 'model': model file or shipped name.")
@click.option("--device", default="auto", show_default=True, help="Params tab 'device': auto, cpu, cuda, cuda:N.")
@click.option("--batch_size", type=click.IntRange(min=1), default=64, show_default=True, help="Params tab 'batch_size'.")
@click.option("--pixel_size", type=float, default=None, callback=pixel_size_callback,
              help="Params tab 'pixel_size' (Å/px): overrides the STAR/headers.")
@click.option("--bin", "bin_factor", type=click.IntRange(min=1), default=None,
              help="Params tab 'bin' (micrographs): Fourier-binning factor [default: to the model's pixel size].")
@click.option("--upsample", type=click.Choice(["yes", "no", "true", "false", "1", "0"], case_sensitive=False),
              default="no", show_default=True, help="Params tab 'upsample' (micrographs): back to the input size.")
@click.option("--patch_size", type=click.IntRange(min=1), default=None, help="Params tab 'patch_size' (tiles, px).")
def relion_external(out, in_parts, in_mics, threads, pipeline_control, model, device, batch_size, pixel_size,
                    bin_factor, upsample, patch_size):
    """Denoise a RELION node as an External job, run by RELION from the project directory.

    External job, Input tab: executable `cryoxplain relion-external`, input particles (or
    micrographs); Params tab: model, device, batch_size, pixel_size, bin, upsample, patch_size.
    Writes the denoised data, the output STAR node and RELION_OUTPUT_NODES.star under --o, then
    RELION_JOB_EXIT_SUCCESS (or RELION_JOB_EXIT_FAILURE and exit status 2 on bad input).
    Library: cryoxplain.denoise.relion_external.run_relion_external.
    """
    from ..denoise.relion_external import run_relion_external

    node = run_relion_external(out, in_parts, in_mics, threads, model=model, device=device, batch_size=batch_size,
                               pixel_size=pixel_size, bin=bin_factor, upsample=upsample.lower() in ("yes", "true", "1"),
                               patch_size=patch_size)
    click.echo(f"output node: {node}")
