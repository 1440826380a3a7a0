"""Classifier training on the command line: ``cryoxplain train --task classify``.

The general ``cryoxplain train`` command (``cli/train.py``, the denoiser training) delegates
``--task classify`` to :func:`run_classifier_training` and adds :func:`classify_options`.  Until
that command is installed, the ``train`` command defined here (registered with
``COMMANDS.setdefault``) offers the classify task alone.
"""
from __future__ import annotations

import json

import click

from ..errors import ParameterError
from .common import device_option, force_option, seed_option


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


def _parse_config(items) -> dict:
    cfg = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"--config expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            cfg[k.strip()] = json.loads(v)
        except ValueError:
            cfg[k.strip()] = v
    return cfg


@click.command("train")
@click.option("--task", type=click.Choice(["classify"]), default="classify", show_default=True,
              help="What to train (this installation: particle classifiers).")
@classify_options
@click.option("--arch", default="classifier", show_default=True, help="Registered classify architecture.")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="Architecture config, repeatable (e.g. --config width=16 --config depth=3).")
@click.option("--epochs", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--val-fraction", type=float, default=0.2, show_default=True, help="Fraction of each class held out.")
@click.option("--augment", type=click.Choice(["none", "rot90", "flip", "d4", "rotate"]), default="d4", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (.safetensors).")
@device_option
@seed_option
@force_option
def train(task, class_stacks, class_names, arch, config_items, epochs, batch_size, lr, val_fraction, augment, output,
          device, seed, force):
    """Train a particle classifier on particles labelled by their source stack.

    \b
    cryoxplain train --task classify --class-stack open.mrcs --class-stack closed.mrcs -o classifier.safetensors
    """
    run_classifier_training(class_stacks, class_names, arch=arch, config=_parse_config(config_items), epochs=epochs,
                            batch_size=batch_size, lr=lr, val_fraction=val_fraction, augment=augment, out=output,
                            device=device, seed=seed, force=force)
