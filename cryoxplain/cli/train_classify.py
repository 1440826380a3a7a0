"""Classifier training on the command line: ``cryoxplain train --task classify``.

``cryoxplain train`` (``cli/train.py``) adds :func:`classify_options` and delegates
``--task classify`` to :func:`run_classifier_training`, a thin wrapper over
:func:`cryoxplain.train.classify.train_classifier`.
"""
from __future__ import annotations

import click

from ..errors import ParameterError


def classify_options(f):
    """The options only the classify task uses (one stack per class, their names)."""
    f = click.option("--class-name", "class_names", multiple=True, metavar="NAME",
                     help="classify: name of each class, in --class-stack order (default: file stems).")(f)
    f = click.option("--class-stack", "class_stacks", multiple=True, type=click.Path(dir_okay=False), metavar="STACK",
                     help="classify: one particle stack per class, repeatable; a particle's label is its stack "
                          "(e.g. particles simulated from two structures).")(f)
    return f


def run_classifier_training(class_stacks, class_names=(), **kwargs):
    """Call :func:`cryoxplain.train.classify.train_classifier` and print the accuracy report."""
    from ..train.classify import train_classifier

    if not class_stacks:
        raise ParameterError("--task classify needs one --class-stack per class (at least two)")
    if kwargs.get("arch") in (None, "cartesian", "spiral"):
        kwargs["arch"] = "classifier"  # the denoiser default of `train` does not apply to classify

    def progress(epoch, row):
        click.echo(f"epoch {epoch:>3}: train loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:.3f}  "
                   f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}")

    res = train_classifier(list(class_stacks), class_names=list(class_names) or None, progress=progress, **kwargs)
    click.echo(f"classes: {', '.join(f'{i}={n}' for i, n in enumerate(res.class_names))}")
    click.echo(f"final accuracy: train {100 * res.train_accuracy:.1f} %, validation {100 * res.val_accuracy:.1f} %")
    click.echo("validation confusion (rows: true class, columns: predicted):")
    for name, row in zip(res.class_names, res.confusion):
        click.echo(f"  {name:<20} " + " ".join(f"{v:>5d}" for v in row))
    if res.model_path:
        click.echo(f"wrote {res.model_path}")
    return res

