"""``cryoxplain train``: train a denoiser (``--task denoise``) or a particle classifier (``--task classify``)."""
from __future__ import annotations

import json

import click

from ..errors import ParameterError
from .common import device_option, force_option, seed_option
from .train_classify import classify_options, run_classifier_training


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
@click.option("--task", type=click.Choice(["denoise", "classify"]), default="denoise", show_default=True)
@click.option("--arch", default="cartesian", show_default=True, help="Registered architecture (cartesian, spiral, …).")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="Architecture config, repeatable (e.g. --config depth=8 --config width=32).")
@click.option("--noisy", type=click.Path(dir_okay=False), help="Noisy particle stack (network input).")
@click.option("--clean", type=click.Path(dir_okay=False), help="Clean stack (supervised target / validation ground truth).")
@click.option("--noisy2", type=click.Path(dir_okay=False), help="Second independent noisy copy (Noise2Noise target).")
@classify_options
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@seed_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.safetensors); history → <stem>.history.h5, checkpoints → <stem>.checkpoint.safetensors.")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint next to -o (same settings) to --epochs.")
@click.option("--augment", type=click.Choice(["none", "rot90", "flip", "d4", "rotate"]), default="none", show_default=True,
              help="Random symmetry per sample: 90° rotations, flips, both (d4), or arbitrary-angle rotation + flip.")
@device_option
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=16, show_default=True, help="Images per optimisation step.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Fraction of images held out.")
@click.option("--crop", type=click.IntRange(min=1), default=None, help="Train on random CROP×CROP windows (fully convolutional models).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=1, show_default=True, help="Checkpoint interval (epochs).")
@click.option("--equivariance/--no-equivariance", default=True, show_default=True,
              help="Record the rotation-equivariance error per epoch (denoisers; history columns "
                   "equivariance, equivariance_grid, equivariance_floor, equivariance_reference).")
@force_option
def train(task, arch, config_items, noisy, clean, noisy2, class_stacks, class_names, epochs, seed, output, resume, augment, device,
          batch_size, lr, lr_schedule, val_fraction, crop, checkpoint_every, equivariance, force):
    """Train a model and write it with its per-epoch history.

    \b
    Supervised:   cryoxplain train --noisy N.mrcs --clean C.mrcs --epochs 20 -o model.safetensors
    Noise2Noise:  cryoxplain train --noisy N1.mrcs --noisy2 N2.mrcs -o model.safetensors
    Classifier:   cryoxplain train --task classify --class-stack A.mrcs --class-stack B.mrcs -o cls.safetensors
    Library: cryoxplain.train.train_denoiser / cryoxplain.train.classify.train_classifier.
    """
    config = _parse_config(config_items)
    common = dict(arch=arch, config=config, epochs=epochs, seed=seed, out=output, resume=resume, device=device,
                  batch_size=batch_size, lr=lr, val_fraction=val_fraction, checkpoint_every=checkpoint_every,
                  force=force, augment=augment)
    if task == "classify":
        run_classifier_training(class_stacks, class_names, **common)
        return
    if not noisy:
        raise ParameterError("--noisy is required for --task denoise")
    from ..train import train_denoiser

    callbacks = []
    if equivariance:
        from ..metrics.equivariance import EquivarianceCallback

        callbacks.append(EquivarianceCallback(seed=seed))
    res = train_denoiser(noisy, clean, noisy2, callbacks=callbacks, crop=crop, lr_schedule=lr_schedule, **common)
    last = {k: v[-1] for k, v in res.history.items()}
    click.echo(f"wrote {res.model_path} (epoch {int(last['epoch'])}: train loss {last['train_loss']:.4g}, "
               f"val loss {last['val_loss']:.4g}, val SNR_out {last['val_snr_out_db']:.2f} dB, "
               f"PSNR {last['val_psnr_db']:.2f} dB)")
    click.echo(f"history {res.history_path}; checkpoint {res.checkpoint_path}")
