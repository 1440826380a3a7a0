"""``cryoxplain train``: train a denoiser (``--task denoise``) or a particle classifier (``--task classify``).

A thin wrapper: the options become one :class:`cryoxplain.training.TrainConfig` and one call of
:func:`cryoxplain.denoise.train_denoiser` or :func:`cryoxplain.classify.train_classifier`.
"""
from __future__ import annotations

import click

from ..imaging.augment import AUGMENTATIONS
from ..training.config import LR_SCHEDULES
from .common import device_option, force_option, seed_option


@click.command("train")
@click.option("--task", type=click.Choice(["denoise", "classify"]), default="denoise", show_default=True)
@click.option("--arch", default=None,
              help="Registered architecture (denoise: cartesian (default), spiral, …; classify: classifier).")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="Architecture config, repeatable (e.g. --config depth=8 --config width=32).")
@click.option("--noisy", type=click.Path(dir_okay=False), help="Noisy particle stack (network input).")
@click.option("--clean", type=click.Path(dir_okay=False), help="Clean stack (supervised target / validation ground truth).")
@click.option("--noisy2", type=click.Path(dir_okay=False), help="Second independent noisy copy (Noise2Noise target).")
@click.option("--method", type=click.Choice(["supervised", "noise2noise", "masked"]), default=None,
              help="denoise: training loss [default: noise2noise with --noisy2, else supervised with --clean, "
                   "else masked — blind-spot self-supervision on --noisy alone].")
@click.option("--mask-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1 / 16,
              show_default="1/16", help="masked: fraction of pixels hidden per batch.")
@click.option("--mask-replace", type=click.Choice(["mean", "noise", "zero"]), default="mean", show_default=True,
              help="masked: what a hidden pixel is replaced by (mean of its unmasked neighbours, unit noise, zero).")
@click.option("--init", default=None, metavar="default|PATH",
              help="denoise: fine-tune from a shipped model name (default, …) or a model file; the architecture "
                   "and its config come from the file (--arch/--config may only repeat them).")
@click.option("--class-stack", "class_stacks", multiple=True, type=click.Path(dir_okay=False), metavar="STACK",
              help="classify: one particle stack per class, repeatable; a particle's label is its stack "
                   "(e.g. particles simulated from two structures).")
@click.option("--class-name", "class_names", multiple=True, metavar="NAME",
              help="classify: name of each class, in --class-stack order (default: file stems).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@seed_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.safetensors); history → <stem>.history.h5, checkpoints → <stem>.checkpoint.safetensors.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint next to -o (same settings and data) to --epochs.")
@click.option("--augment", type=click.Choice(AUGMENTATIONS), default="none", show_default=True,
              help="Random symmetry per sample: flip (mirror), rot90, d4 (both), or rotate (any angle + mirror).")
@device_option
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=16, show_default=True, help="Images per optimisation step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
              help="Learning-rate schedule [default: constant for denoise, cosine for classify].")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Fraction of images held out.")
@click.option("--crop", type=click.IntRange(min=1), default=None, help="Train on random CROP×CROP windows (fully convolutional denoisers).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1, show_default=True, help="Checkpoint interval (epochs).")
@click.option("--equivariance/--no-equivariance", default=True, show_default=True,
              help="Record the rotation-equivariance error per epoch (denoisers; history columns "
                   "equivariance, equivariance_grid, equivariance_floor, equivariance_reference).")
@force_option
def train(task, arch, config_items, noisy, clean, noisy2, method, mask_fraction, mask_replace, init, class_stacks, class_names, epochs, seed, output, resume, augment, device,
          batch_size, lr, lr_schedule, val_fraction, crop, checkpoint_every, equivariance, force):
    """Train a model and write it with its per-epoch history.

    \b
    Supervised:   cryoxplain train --noisy N.mrcs --clean C.mrcs --epochs 20 -o model.safetensors
    Noise2Noise:  cryoxplain train --noisy N1.mrcs --noisy2 N2.mrcs -o model.safetensors
    Self-supervised (blind spot), fine-tuning the shipped model:
                  cryoxplain train --noisy N.mrcs --method masked --init default -o model.safetensors
    Classifier:   cryoxplain train --task classify --class-stack A.mrcs --class-stack B.mrcs -o cls.safetensors
    Library: cryoxplain.denoise.train_denoiser / cryoxplain.classify.train_classifier (cryoxplain.training).
    """
    import time

    from ..training import parse_config_items
    from ..training.checkpoint import interrupted_error

    arch_config = parse_config_items(config_items)
    started = time.time()
    try:
        _train(task, arch, arch_config, noisy, clean, noisy2, class_stacks, class_names, epochs, seed, output,
               resume, augment, device, batch_size, lr, lr_schedule, val_fraction, crop, checkpoint_every,
               equivariance, force, method=method, init=init, mask_fraction=mask_fraction, mask_replace=mask_replace)
    except KeyboardInterrupt:  # Ctrl-C: one line that says how to continue, not click's "Aborted!"
        raise interrupted_error(output, since=None if resume else started) from None


def _train(task, arch, arch_config, noisy, clean, noisy2, class_stacks, class_names, epochs, seed, output, resume,
           augment, device, batch_size, lr, lr_schedule, val_fraction, crop, checkpoint_every, equivariance, force, *,
           method=None, init=None, mask_fraction=1 / 16, mask_replace="mean"):
    from .. import distributed
    from ..training import TrainConfig

    settings = dict(epochs=epochs, seed=seed, resume=resume, device=device, batch_size=batch_size, lr=lr,
                    lr_schedule=lr_schedule, val_fraction=val_fraction, checkpoint_every=checkpoint_every,
                    augment=augment, crop=crop)
    if task == "classify":
        from ..classify.train import DEFAULT_CONFIG, train_classifier

        def progress(epoch, row):
            click.echo(f"epoch {epoch:>3}: train loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:.3f}  "
                       f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}")

        res = train_classifier(list(class_stacks), class_names=list(class_names) or None, arch=arch or "classifier",
                               arch_config=arch_config, config=TrainConfig.from_kwargs(DEFAULT_CONFIG, **settings),
                               out=output, force=force, progress=progress)
        if not distributed.context().main:  # torchrun only: job-array tasks train on their own
            return  # under torchrun rank 0 reports
        click.echo(f"classes: {', '.join(f'{i}={n}' for i, n in enumerate(res.class_names))}")
        click.echo(f"final accuracy: train {100 * res.train_accuracy:.1f} %, validation {100 * res.val_accuracy:.1f} %")
        click.echo("validation confusion (rows: true class, columns: predicted):")
        for name, row in zip(res.class_names, res.confusion):
            click.echo(f"  {name:<20} " + " ".join(f"{v:>5d}" for v in row))
        click.echo(f"wrote {res.model_path}")
        return
    from ..denoise.train import train_denoiser

    callbacks = []
    if equivariance:
        from ..metrics.equivariance import EquivarianceCallback

        callbacks.append(EquivarianceCallback(seed=seed))
    res = train_denoiser(noisy, clean, noisy2, arch=arch, arch_config=arch_config,
                         config=TrainConfig.from_kwargs(None, **settings), out=output, callbacks=callbacks, force=force,
                         method=method, init=init, mask_fraction=mask_fraction, mask_replace=mask_replace)
    if not distributed.context().main:  # torchrun only: job-array tasks train on their own
        return  # under torchrun rank 0 reports
    last = {k: v[-1] for k, v in res.history.items()}
    snr = (f", val SNR_out {last['val_snr_out_db']:.2f} dB, PSNR {last['val_psnr_db']:.2f} dB"
           if last['val_snr_out_db'] == last['val_snr_out_db'] else "")
    click.echo(f"wrote {res.model_path} ({res.method}{', from ' + str(init) if init else ''}; epoch "
               f"{int(last['epoch'])}: train loss {last['train_loss']:.4g}, val loss {last['val_loss']:.4g}, "
               f"val masked loss {last['val_masked_loss']:.4g}{snr})")
    click.echo(f"history {res.history_path}; checkpoint {res.checkpoint_path}")
