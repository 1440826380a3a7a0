"""``cryoxplain evaluate snr``: SNR/PSNR/FRC of an estimate against ground truth.

Thin wrapper over :func:`cryoxplain.evaluate.evaluate_snr_files`; the table is
:func:`cryoxplain.metrics.report.format_snr_table`, the figure :func:`cryoxplain.metrics.plots.plot_frc`.
"""
from __future__ import annotations

import json

import click

from .common import batch_size_option, force_option, input_files, pixel_size_callback


@click.command("snr")
@click.option("--clean", required=True, type=click.Path(dir_okay=False), help="Ground-truth (clean) image or stack.")
@click.option("--estimate", required=True, type=click.Path(dir_okay=False), help="Denoised image or stack.")
@click.option("--noisy", type=click.Path(dir_okay=False), help="The noisy input, for SNR_in and the gain.")
@click.option("--mask", type=click.Choice(["disc", "none"]), default="disc", show_default=True,
              help="Pixels used for SNR and PSNR: the disc inscribed in the box, or all.")
@click.option("--pixel-size", "--angpix", "pixel_size", type=float, default=None, callback=pixel_size_callback,
              help="Å/pixel, finite and > 0 (default: from the clean file's header).")
@click.option("--data-range", type=float, default=None,
              help="PSNR data range (default: each clean image's max − min inside the mask).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (incl. the FRC curve) instead of the table.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the FRC curve as a PNG here.")
@batch_size_option
@force_option
def snr(clean, estimate, noisy, mask, pixel_size, data_range, as_json, plot, batch_size, force):
    """SNR in/out (linear, dB), PSNR and FRC (0.5 / 0.143 crossings) of an estimate against ground truth.

    Library: cryoxplain.evaluate.evaluate_snr_files.
    """
    from ..evaluate import evaluate_snr_files
    from ..io.atomic import check_output
    from ..metrics.plots import plot_frc
    from ..metrics.report import format_snr_table

    inputs = input_files(clean, estimate, noisy)
    if plot:
        check_output(plot, force=force, inputs=inputs)
    res = evaluate_snr_files(clean, estimate, noisy=noisy, mask=mask, pixel_size=pixel_size, data_range=data_range,
                             batch_size=batch_size)
    if plot:
        plot_frc(res, plot, force=force, inputs=inputs)
    if as_json:
        click.echo(json.dumps(res, indent=1, default=lambda o: None))
    else:
        click.echo(format_snr_table(res))
        if plot:
            click.echo(f"wrote {plot}")
