"""``cryoxplain evaluate equivariance STACK``: rotation-equivariance report of a denoiser (or classifier).

Thin wrapper over :func:`cryoxplain.evaluate.evaluate_stack_equivariance`; the table is
:meth:`cryoxplain.metrics.report.EquivarianceReport.format_table`, the figure
:func:`cryoxplain.metrics.plots.plot_equivariance`.
"""
from __future__ import annotations

import json

import click

from .common import input_files, stack_model_options


class _Degrees(click.ParamType):
    """Comma-separated angles in degrees, e.g. ``30,45,123.5`` → ``[30.0, 45.0, 123.5]``."""

    name = "DEG[,DEG...]"

    def convert(self, value, param, ctx):
        from ..metrics.equivariance import check_angles_deg

        if isinstance(value, list):
            return check_angles_deg(value, "--angles")
        try:
            angles = [float(a) for a in str(value).replace(" ", "").split(",") if a]
        except ValueError:
            self.fail(f"must be comma-separated degrees, e.g. 30,45,123.5; got {value!r}", param, ctx)
        return check_angles_deg(angles, "--angles") or None


@click.command("equivariance")
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default="default", show_default=True,
              help="Model file (.safetensors) or shipped model name.")
@click.option("--n-images", "-n", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images drawn (seeded) from the stack.")
@click.option("--n-offgrid", type=click.IntRange(min=0), default=12, show_default=True,
              help="Stratified off-grid angles (one per equal sector of 0-360°, ≥2° from multiples of 90°).")
@click.option("--angles", type=_Degrees(), default=None, help="Explicit off-grid angles in degrees, comma-separated (replaces --n-offgrid).")
@click.option("--rotation", "method", type=click.Choice(["fft", "spline"]), default="fft", show_default=True,
              help="Off-grid rotation: band-limited FFT three-shear or order-5 spline.")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Output window radius in pixels [default: the model's valid disc, box/2 for cartesian models].")
@click.option("--taper", type=click.FloatRange(min=0), default=None,
              help="Raised-cosine window edge in pixels (0: hard disc) [default: box/8].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG of the error vs angle.")
@stack_model_options
def equivariance(stack, model, n_images, n_offgrid, angles, method, radius, taper, as_json, plot, stack_header,
                 project_dir, seed, device, batch_size, force):
    """Rotation-equivariance error of MODEL on particles of STACK (MRC stack, RELION .star or cryoSPARC .cs).

    E(θ) = ‖W⊙F(R_θ x) − R_θ(W⊙F(x))‖ / ‖R_θ(W⊙F(x))‖ (W: a smooth disc inside the model's valid
    disc, applied to the output before rotating; pooled over images) at 90/180/270° (exact
    rotations) and at stratified off-grid angles (band-limited rotation; mean and spread), with
    the rotation operator's own round-trip floor
    ‖R_−θ R_θ(W x) − W x‖/‖W x‖ on the inputs and outputs, and the E of an exactly equivariant
    isotropic blur (iso-ref: what the measurement itself contributes) beside it.  The network is
    measured on the images normalised as for denoising.
    Classifiers report prediction agreement and the KL divergence of their softmax outputs instead.
    """
    from ..evaluate import evaluate_stack_equivariance
    from ..io.atomic import check_output
    from ..metrics.plots import plot_equivariance

    inputs = input_files(stack, model, project_dir=project_dir)
    if plot:
        check_output(plot, force=force, inputs=inputs)
    rep, info = evaluate_stack_equivariance(stack, model, n_images=n_images, n_offgrid=n_offgrid, seed=seed,
                                            device=device, batch_size=batch_size, method=method,
                                            angles_deg=angles, radius=radius, taper=taper,
                                            project_dir=project_dir, stack_header=stack_header or None,
                                            progress=None)
    if plot:
        plot_equivariance(rep, plot, force=force, inputs=inputs, title=f"{info.arch} model on {click.format_filename(stack)}")
    if as_json:
        d = rep.to_dict()
        d.update(model=info.path, arch=info.arch, stack=str(stack))
        click.echo(json.dumps(d, indent=2))
    else:
        click.echo(f"model: {info.describe()}   stack: {stack}")
        click.echo(rep.format_table())
        if plot:
            click.echo(f"plot: {plot}")
