"""``cryoxplain denoise``: apply a denoiser to particle stacks and micrographs (Topaz-like flags)."""
from __future__ import annotations

import click

from .common import batch_size_option, device_option, force_option, pixel_size_option, project_dir_option


@click.command("denoise")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output file (one input) or folder (several inputs, or particle files; created if missing).")
@click.option("-m", "--model", default="default", show_default=True,
              help="Model file (.safetensors) or the name of a shipped model.")
@batch_size_option
@device_option
@click.option("-s", "--patch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Micrographs larger than this are denoised in tiles with this kept centre size (px).")
@click.option("-p", "--padding", type=click.IntRange(min=0), default=None,
              help="Context (px) added around each tile; default and minimum: the model's receptive radius.")
@click.option("--format", "fmt", type=click.Choice(["mrc", "tiff", "png"]), default="mrc", show_default=True,
              help="Output format for micrographs (stacks are always MRC; PNG is an 8-bit preview).")
@click.option("--suffix", default=None,
              help="Appended to each output file stem when -o is a folder (particle files: default _denoised).")
@click.option("--stack", is_flag=True, help="Read MRC inputs as particle stacks whatever the header says "
              "(.mrc stacks with ispg=1, as cryoSPARC and cryoDRGN write).")
@project_dir_option
@pixel_size_option
@click.option("--bin", "bin_factor", type=click.IntRange(min=1), default=None,
              help="Micrographs: Fourier-bin by this factor (1: denoise at the native sampling) "
                   "[default: bin to the model's training pixel size].")
@click.option("--upsample", is_flag=True,
              help="Micrographs: Fourier-pad the denoised result back to the input size and pixel size.")
@click.option("--skip-existing", is_flag=True,
              help="Keep outputs that exist (they are complete: writes are atomic) and do only the missing "
                   "work units; how a sharded run (torchrun, SLURM job array) is resumed. See docs/scale-out.md.")
@click.option("--unit-size", type=click.IntRange(min=1), default=None,
              help="Particle files, sharded runs: particles per work unit (rounded up to whole batches) [default: 512].")
@force_option
def denoise(inputs, output, model, batch_size, device, patch_size, padding, fmt, suffix, stack, project_dir,
            pixel_size, bin_factor, upsample, skip_existing, unit_size, force):
    """Denoise particle stacks (.mrcs), micrographs (2D .mrc) and particle sets (RELION .star, cryoSPARC .cs).

    Stacks are streamed batch by batch (bounded memory).  Micrographs are read at their own pixel
    size (header or --pixel-size), Fourier-binned to the model's training pixel size (--bin
    overrides), normalised once, tiled, and written at the binned size and voxel size (--upsample:
    back at the input size).  A particle file gives denoised stacks plus a particle file identical to
    the input except the image names, in the -o folder.  Under torchrun or a SLURM job array the
    files (or particle ranges) are split over the ranks (docs/scale-out.md).
    Library: cryoxplain.denoise.denoise_files.
    """
    from .. import distributed
    from ..denoise import denoise_files

    outs = denoise_files(inputs, output, model, batch_size=batch_size, device=device, patch_size=patch_size,
                         padding=padding, force=force, fmt=fmt, suffix=suffix, stack=stack or None,
                         project_dir=project_dir, pixel_size=pixel_size, bin=bin_factor, upsample=upsample,
                         skip_existing=skip_existing, unit_size=unit_size)
    if not distributed.is_main():
        return  # rank 0 reports the run
    for p in outs:
        click.echo(f"wrote {p}" if p.exists() else f"not merged yet: {p} (other job-array tasks still running? "
                   "re-run with --skip-existing once they have finished)")
