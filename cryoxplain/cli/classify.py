"""``cryoxplain classify``: predict the class of every particle of a stack (thin wrapper over
:func:`cryoxplain.classify.classify_stack`)."""
from __future__ import annotations

import click

from .common import batch_size_option, device_option, force_option


@click.command("classify")
@click.argument("stack", type=click.Path(dir_okay=False))
@click.option("--model", "-m", required=True, help="Classifier model file (from `cryoxplain train --task classify`).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="CSV with index, predicted class, class name and per-class probabilities.")
@click.option("--true-label", default=None,
              help="If every particle comes from one known source: its class name or index (accuracy is reported).")
@batch_size_option
@device_option
@force_option
def classify(stack, model, output, true_label, batch_size, device, force):
    """Classify every particle of STACK with a trained particle classifier."""
    from ..classify import classify_stack

    res = classify_stack(model, stack, output, batch_size=batch_size, device=device, true_label=true_label, force=force)
    n = len(res.predicted)
    for name, c in res.counts().items():
        click.echo(f"{name:<24} {c:>7}  ({100.0 * c / max(n, 1):.1f} %)")
    if res.accuracy is not None:
        click.echo(f"accuracy against {true_label}: {100 * res.accuracy:.1f} % of {n}")
    if res.output:
        click.echo(f"predictions: {res.output}")
