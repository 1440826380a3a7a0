"""``cryoxplain explain``: attribution maps for every particle of a stack (thin wrapper over
:func:`cryoxplain.explain.explain_stack`)."""
from __future__ import annotations

import click

from .common import device_option, force_option, project_dir_option, seed_option


class KeyValue(click.ParamType):
    """``KEY=VALUE`` → ``(key, value)`` (the value stays a string; the explainer's Param parses it)."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        k, sep, v = str(value).partition("=")
        if not sep or not k.strip():
            self.fail(f"{value!r}: expected KEY=VALUE", param, ctx)
        return k.strip(), v.strip()

TARGET_HELP = ("What to explain: class:K, predicted, pixel:X,Y, roi:MASK.mrc, roi:X0,Y0,X1,Y1, roi:X,Y,R, "
               "disc-energy[:R], reference:REF.mrc (default: predicted for classifiers, disc-energy for denoisers). "
               "See docs/targets.md.")


@click.command("explain")
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default="default", show_default=True, help="Model file or shipped model name.")
@click.option("--method", required=True, help="Explainer name (see `cryoxplain plugins`).")
@click.option("--param", "-p", "params", multiple=True, type=KeyValue(), metavar="KEY=VALUE",
              help="Explainer parameter; repeatable (e.g. --param steps=64).")
@click.option("--target", "-t", default=None, help=TARGET_HELP)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Output HDF5 file.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False), default=None,
              help="Also write PNG overlays (particle, attribution, overlay) to this folder.")
@click.option("--png-limit", type=click.IntRange(min=0), default=32, show_default=True,
              help="PNG overlays for at most this many (first) particles.")
@click.option("--html", type=click.Path(dir_okay=False), default=None,
              help="Also write the method's interactive HTML viewer (methods that provide one).")
@click.option("--html-limit", type=click.IntRange(min=1), default=16, show_default=True,
              help="Particles shown in the HTML viewer.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=16, show_default=True,
              help="Particles per explainer call (memory stays bounded by this and the method's internal batch).")
@project_dir_option
@device_option
@seed_option
@click.option("--skip-existing", is_flag=True,
              help="Sharded runs: keep finished work units (and a finished OUTPUT) and do only the missing "
                   "ones; how a run under torchrun or a SLURM job array is resumed. See docs/scale-out.md.")
@click.option("--unit-size", type=click.IntRange(min=1), default=None,
              help="Sharded runs: particles per work unit (rounded up to whole batches) [default: 512].")
@force_option
def explain(stack, model, method, params, target, output, png_dir, png_limit, html, html_limit, batch_size,
            project_dir, device, seed, skip_existing, unit_size, force):
    """Explain MODEL's output on every particle of STACK (MRC stack, RELION .star or cryoSPARC .cs)
    with an attribution METHOD.

    Attributions stream into OUTPUT (HDF5 with provenance); a positive value means that raising
    the pixel (or moving it from the baseline to its value) raises the target.  Under torchrun or a
    SLURM job array the particles are split over the ranks and rank 0 merges OUTPUT (docs/scale-out.md).
    """
    import sys

    from .. import distributed

    from ..explain.stack import explain_stack

    bar = None

    def progress(done, total):  # a progress bar on a terminal only
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="particle", desc=method, leave=False)
        bar.update(done - bar.n)

    try:
        res = explain_stack(model, stack, output, method=method, params=dict(params), target=target,
                            batch_size=batch_size, device=device, seed=seed, force=force, png_dir=png_dir,
                            png_limit=png_limit, html=html, html_limit=html_limit,
                            progress=progress if sys.stderr.isatty() else None, project_dir=project_dir,
                            skip_existing=skip_existing, unit_size=unit_size)
    finally:
        if bar is not None:
            bar.close()
    if not distributed.is_main():
        return  # rank 0 reports the run
    if not res.output.exists():
        click.echo(f"not merged yet: {res.output} (other job-array tasks still running? re-run with "
                   "--skip-existing once they have finished)")
        return
    click.echo(f"explained {res.n_images} particle(s) with {res.method} (target {res.target}) in {res.seconds:.1f} s")
    click.echo(f"attributions: {res.output}")
    if res.max_completeness_gap is not None:
        click.echo(f"max |Σ attribution − (f(x) − f(baseline))|: {res.max_completeness_gap:.3g}")
    if res.png_files:
        click.echo(f"PNG overlays: {len(res.png_files)} in {res.png_files[0].parent}")
    if res.html:
        click.echo(f"HTML viewer: {res.html}")
