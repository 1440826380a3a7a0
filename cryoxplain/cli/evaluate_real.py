"""``cryoxplain evaluate real STACK``: judge a denoiser on real particles, without ground truth.

Thin wrapper over :func:`cryoxplain.evaluate.evaluate_real`; the table is
:meth:`cryoxplain.metrics.report.NoGroundTruthReport.format_table`.  docs/metrics.md explains
each number and what a good value is.
"""
from __future__ import annotations

import json

import click

from .common import stack_model_options


@click.command("real")
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default="default", show_default=True, help="Model file (.safetensors) or shipped model name.")
@click.option("--micrograph", type=click.Path(dir_okay=False), default=None,
              help="The micrograph the particles come from, at their sampling: background boxes (hallucination "
                   "check) and, with picks, the region SNR.")
@click.option("--picks", type=click.Path(dir_okay=False), default=None,
              help="RELION STAR file with the pick coordinates on --micrograph [default: STACK when it is a .star].")
@click.option("--n-images", "-n", type=click.IntRange(min=1), default=64, show_default=True,
              help="Particles drawn (seeded) from the stack.")
@click.option("--n-noise", type=click.IntRange(min=1), default=64, show_default=True, help="White-noise boxes.")
@click.option("--n-background", type=click.IntRange(min=1), default=64, show_default=True,
              help="Background boxes cut from --micrograph (at least one box away from every pick).")
@click.option("--grid", "spacing", type=click.IntRange(min=2), default=4, show_default=True,
              help="J-invariant loss: mask grid spacing (spacing² passes of the model).")
@click.option("--n-offgrid", type=click.IntRange(min=0), default=12, show_default=True,
              help="Equivariance: stratified off-grid angles.")
@click.option("--signal-radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Region SNR: radius in px of the signal/background discs [default: box/4].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the full report (spectra included) as JSON to this file.")
@stack_model_options
def real(stack, model, micrograph, picks, n_images, n_noise, n_background, spacing, n_offgrid, signal_radius, json_out,
         stack_header, project_dir, seed, device, batch_size, force):
    """No-ground-truth report of MODEL on STACK (MRC stack, RELION .star or cryoSPARC .cs).

    \b
    Rotation-equivariance error; the J-invariant held-out loss (Noise2Self: lower is better,
    comparable between denoisers on the same particles) beside a Gaussian low-pass of the
    model's own bandwidth and the identity; the contrast-sign error ‖F(−x)+F(x)‖/‖F(x)‖; the
    output energy on white noise and on background boxes of --micrograph, relative to the
    input and to the matched low-pass (> 1: structure invented from noise); with --picks the
    Topaz region SNR (dB) of raw, denoised and low-passed boxes.
    Example: cryoxplain evaluate real particles.star --micrograph mic_bin6.mrc
    """
    from ..evaluate import evaluate_real
    from ..io.atomic import atomic_path, check_output
    from ..io.jsonutil import json_default

    if json_out:
        check_output(json_out, force=force, inputs=tuple(p for p in (stack, micrograph, picks) if p))
    rep, info = evaluate_real(stack, model, micrograph=micrograph, picks=picks, n_images=n_images, n_noise=n_noise,
                              n_background=n_background, spacing=spacing, n_offgrid=n_offgrid,
                              signal_radius=signal_radius, seed=seed, device=device, batch_size=batch_size,
                              project_dir=project_dir, stack_header=stack_header or None)
    click.echo(f"model: {info.describe()}   stack: {stack}" + (f"   micrograph: {micrograph}" if micrograph else ""))
    click.echo(rep.format_table())
    if json_out:
        with atomic_path(json_out, force=force) as tmp:
            tmp.write_text(json.dumps(rep.to_dict(), indent=2, default=json_default))
        click.echo(f"json: {json_out}")
