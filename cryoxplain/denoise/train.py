"""Training of denoisers (any architecture registered with ``task="denoise"``) on the one loop.

:func:`train_denoiser` trains by MSE regression either to the clean images (supervised, the
thesis' setting) or to a second independent noisy copy (Noise2Noise, Lehtinen et al. 2018, as
Topaz-Denoise does with even/odd frames).  The loop — held-out validation split, per-epoch HDF5
history, checkpoints, exact resume, callbacks — is :func:`cryoxplain.training.fit`; this module
supplies only the denoising task (:class:`DenoiseTask`): its batches (random crop, then the same
random symmetry, :func:`cryoxplain.imaging.augment.random_symmetry`, on input and target), its
loss and its validation metrics (loss, SNR_out, PSNR).

The normalisation is :mod:`cryoxplain.imaging.normalize` (per-image mean/std of the noisy input,
the target mapped with the same μ, σ), applied identically by :mod:`cryoxplain.denoise.apply`.

Augmentation modes are defined in :mod:`cryoxplain.imaging.augment`.  Note: ``"flip"`` is now a
mirror only (the former denoiser training also drew random transposes); ``"d4"`` covers all 8
symmetries of the square.  Model files written before keep the mode string they recorded.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.augment import AUGMENTATIONS, random_symmetry
from ..imaging.masks import disc_mask
from ..imaging.normalize import NORMALIZATION, denormalize, normalize
from ..training import (Callback, Task, TrainConfig, checkpoint_path_for, data_checksum, fit,
                        history_path_for, load_checkpoint, prepare_outputs, read_history, seeded_model)
from ..io.jsonutil import jsonable
from ..training.data import load_images
from .. import distributed
from ..training.history import discard_unresumable_history

__all__ = ["AUGMENTATIONS", "DenoiseTask", "TrainResult", "checkpoint_path_for", "history_path_for",
           "load_checkpoint", "read_history", "train_denoiser"]


@dataclass
class TrainResult:
    """What :func:`train_denoiser` returns."""

    model: torch.nn.Module
    history: dict  # column -> list of per-epoch values (row 0 is epoch 0, before training)
    model_path: Path | None
    history_path: Path | None
    checkpoint_path: Path | None
    config: dict = field(default_factory=dict)  # the architecture config
    train_config: TrainConfig | None = None


def _random_crop(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator):
    h, w = x.shape[-2:]
    oy = torch.randint(0, h - size + 1, (len(x),), generator=gen)
    ox = torch.randint(0, w - size + 1, (len(x),), generator=gen)
    xs = torch.stack([x[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    ys = torch.stack([y[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    return xs, ys


class DenoiseTask(Task):
    """Denoising as a :class:`~cryoxplain.training.Task`: normalised ``(input, target)`` pairs,
    MSE loss, validation loss and SNR/PSNR against the clean images (when known).

    ``x_tr, y_tr`` (N, 1, H, W) normalised training inputs and targets; ``x_val, y_val`` the
    validation pairs with their input statistics ``mu_val, sd_val``; ``clean_val`` the clean
    validation images (input units, (M, H, W)) or None.  ``valid_radius`` (pixels, or None): the
    model's output is a prediction only inside this disc about the box centre (the spiral CNN's
    mask, :func:`cryoxplain.models.protocol.model_valid_radius`); then the loss, the validation
    loss and the validation SNR/PSNR are taken on that disc only, not on the box.  (With Adam the
    loss's constant rescaling does not change the steps.)
    """

    name = "train denoiser"
    min_batch = 2  # batch norm needs ≥ 2 samples

    def __init__(self, x_tr, y_tr, x_val, y_val, mu_val, sd_val, clean_val, *, augment: str = "none",
                 crop: int | None = None, eval_batch: int = 64, valid_radius: float | None = None):
        self.x_tr, self.y_tr, self.x_val, self.y_val = x_tr, y_tr, x_val, y_val
        self.mu_val, self.sd_val = mu_val, sd_val
        self.clean_val = None if clean_val is None else np.asarray(clean_val, np.float64)
        self.clean_val_n = None if clean_val is None else (torch.from_numpy(np.asarray(clean_val, np.float32))[:, None] - mu_val) / sd_val
        self.augment, self.crop, self.eval_batch = augment, crop, int(eval_batch)
        self.valid = None if valid_radius is None else disc_mask(x_tr.shape[-2:], valid_radius) > 0
        self.valid_t = None if self.valid is None else torch.from_numpy(self.valid)

    def n_train(self) -> int:
        return len(self.x_tr)

    def batch(self, idx, generator):
        xb, yb = self.x_tr[idx], self.y_tr[idx]
        if self.crop is not None:
            xb, yb = _random_crop(xb, yb, self.crop, generator)
        return random_symmetry([xb, yb], self.augment, generator)

    def loss(self, model, batch, device):
        xb, yb = batch[0].to(device), batch[1].to(device)
        if self.valid_t is None:
            return torch.nn.functional.mse_loss(model(xb), yb), len(xb), {}
        m = self.valid_t.to(device)
        return torch.nn.functional.mse_loss(model(xb)[..., m], yb[..., m]), len(xb), {}

    def evaluate(self, model, device) -> dict:
        """Validation loss (normalised units, vs the training target) and SNR/PSNR vs clean (input units)."""
        from ..metrics.snr import DenoiseMetrics, snr_db

        x, y, bs = self.x_val, self.y_val, self.eval_batch
        nan = {"val_loss": math.nan, "val_snr_out": math.nan, "val_snr_out_db": math.nan, "val_psnr_db": math.nan}
        if len(x) == 0:
            return nan
        sq, n = 0.0, 0
        mask = "disc" if self.valid is None else self.valid
        metrics = DenoiseMetrics(x.shape[-2:], mask=mask, frc_mask="none") if self.clean_val is not None else None
        for s in range(0, len(x), bs):
            out = model(x[s:s + bs].to(device)).cpu()
            d = out - y[s:s + bs]
            if self.valid_t is not None:
                d = d[..., self.valid_t]
            sq += float((d ** 2).sum())
            n += d.numel()
            if metrics is not None:
                est = denormalize(out, self.mu_val[s:s + bs], self.sd_val[s:s + bs])[:, 0].double().numpy()
                metrics.update(self.clean_val[s:s + bs], est)
        res = dict(nan, val_loss=sq / n)
        if metrics is not None:
            res["val_snr_out"] = metrics.snr_out()
            res["val_snr_out_db"] = snr_db(res["val_snr_out"])
            res["val_psnr_db"] = metrics.psnr()
        return res

    def callback_inputs(self, device):
        """``(val_noisy, val_clean)``: normalised validation inputs and clean images (or None) on ``device``."""
        return self.x_val.to(device), None if self.clean_val_n is None else self.clean_val_n.to(device)


def _train_config(config, settings: dict) -> TrainConfig:
    if config is not None and not isinstance(config, TrainConfig):
        raise ParameterError(f"config must be a TrainConfig (the architecture's settings go in arch_config), "
                             f"got {type(config).__name__}")
    return TrainConfig.from_kwargs(config, **settings)


def train_denoiser(noisy=None, clean=None, noisy2=None, *, arch: str = "cartesian", arch_config: dict | None = None,
                   config: TrainConfig | None = None, out: str | os.PathLike | None = None,
                   callbacks: Sequence[Callback] = (), force: bool = False, metadata: dict | None = None,
                   **settings) -> TrainResult:
    """Train a denoiser and (with ``out``) save it, its history and checkpoints.

    Parameters
    ----------
    noisy : path to an MRC stack or array (N, H, W) — the network inputs.
    clean : matching clean images (supervised training), or None.
    noisy2 : a second, independently noisy copy of the same images (Noise2Noise: the two copies
        are each other's target, both directions used).  If ``clean`` is given as well it is used
        only for the validation SNR/PSNR.  One of ``clean`` and ``noisy2`` is required.
    arch, arch_config : a registered ``denoise`` architecture and its keyword config
        (``cartesian``: ``depth``, ``width``, ``kernel_size``, ``residual``).
    config : a :class:`~cryoxplain.training.TrainConfig` (epochs, batch size, lr and schedule,
        seed, device, augmentation, validation fraction, crop, checkpoint interval, resume …).
        ``crop`` trains on random crop×crop windows (fully convolutional models only; validation
        always uses whole images).  ``resume`` continues from the checkpoint next to ``out`` (the
        settings and data must match the checkpoint's; ``epochs`` may be raised).
    out : model file to write at the end (``.safetensors``); the history goes to
        ``history_path_for(out)`` (HDF5) and checkpoints to ``checkpoint_path_for(out)``.
    callbacks : functions ``(model, epoch, val_noisy, val_clean) -> {column: float}`` called after
        every epoch (and for epoch 0) in eval mode under ``torch.no_grad()``; ``val_noisy`` is the
        normalised validation input (B, 1, H, W) on the training device and ``val_clean`` the clean
        validation images with the same normalisation (or None).  Their keys become history columns
        (e.g. :class:`cryoxplain.metrics.equivariance.EquivarianceCallback`).
    force : overwrite an existing ``out`` (and start over from an existing checkpoint).
    metadata : extra entries for the model file's ``training`` metadata.
    **settings : :class:`~cryoxplain.training.TrainConfig` fields overriding ``config``
        (``epochs=4, seed=3`` …).

    Returns
    -------
    :class:`TrainResult` with the trained model (eval mode) and the history.
    """
    if isinstance(config, dict):  # the former signature: config was the architecture config
        warnings.warn("train_denoiser(config=dict) is deprecated: pass the architecture config as arch_config "
                      "and the training settings as a TrainConfig", DeprecationWarning, stacklevel=2)
        arch_config, config = config, None
    cfg = _train_config(config, settings)
    # ---- check parameters before any work --------------------------------------------------
    from ..models.registry import require_architecture

    require_architecture(arch, "denoise")
    if noisy is None:
        raise ParameterError("noisy (the network input stack) is required")
    if clean is None and noisy2 is None:
        raise ParameterError("give the clean images (clean, supervised) or a second noisy copy (noisy2, Noise2Noise)")
    inputs = [p for p in (noisy, clean, noisy2) if isinstance(p, (str, os.PathLike))]
    out, hist_path, ckpt_path = prepare_outputs(out, cfg, force=force, inputs=inputs)
    dev = distributed.device(cfg.device)  # resolve_device; under torchrun cuda:LOCAL_RANK

    x_np, voxel = load_images(noisy, "noisy")
    c_np = None if clean is None else load_images(clean, "clean")[0]
    n2_np = None if noisy2 is None else load_images(noisy2, "noisy2")[0]
    for name, a in (("clean", c_np), ("noisy2", n2_np)):
        if a is not None and a.shape != x_np.shape:
            raise ShapeError(f"{name} stack {a.shape} does not match the noisy stack {x_np.shape}; images must correspond one to one")
    h, w = x_np.shape[-2:]
    if cfg.crop is not None and not cfg.crop <= min(h, w):
        raise ParameterError(f"crop {cfg.crop} must be between 1 and the image size {min(h, w)}")
    if cfg.augment == "rotate" and h != w and cfg.crop is None:
        raise ShapeError(f"augmentation 'rotate' needs square boxes (or a crop), the images are {h}x{w}")
    n_img = len(x_np)
    n_val = 0 if cfg.val_fraction == 0 else max(1, int(round(cfg.val_fraction * n_img)))
    if n_img - n_val < 1:
        raise ParameterError(f"{n_img} image(s) are too few for a validation fraction of {cfg.val_fraction}")
    split = np.random.default_rng(int(cfg.seed)).permutation(n_img)
    val_idx, tr_idx = np.sort(split[:n_val]), np.sort(split[n_val:])

    arch_config = dict(arch_config or {})
    model = seeded_model(arch, arch_config, cfg.seed)
    from ..models.protocol import conforms, model_input_shape

    shape = model_input_shape(model)
    if shape is not None and tuple(shape) != (h, w):
        raise ShapeError(f"architecture {arch!r} with this config takes {tuple(shape)} images, the data are {(h, w)}")
    if shape is not None and cfg.crop is not None and cfg.crop != shape[0]:
        raise ParameterError(f"architecture {arch!r} takes fixed-size {tuple(shape)} images; random crops are not possible")
    if conforms(model):
        arch_config = dict(model.config())  # complete with the defaults, so the file rebuilds the same net

    # ---- tensors (normalised, CPU) ---------------------------------------------------------
    def prep(inp: np.ndarray, tgt: np.ndarray):
        xn, mu, sd = normalize(torch.from_numpy(inp)[:, None])
        return xn, (torch.from_numpy(tgt)[:, None] - mu) / sd, mu, sd

    if n2_np is not None:  # Noise2Noise: both directions
        a, ya, _, _ = prep(x_np[tr_idx], n2_np[tr_idx])
        b, yb, _, _ = prep(n2_np[tr_idx], x_np[tr_idx])
        x_tr, y_tr = torch.cat([a, b]), torch.cat([ya, yb])
        x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], n2_np[val_idx])
    else:
        x_tr, y_tr, _, _ = prep(x_np[tr_idx], c_np[tr_idx])
        x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], c_np[val_idx])
    from ..models.protocol import model_valid_radius

    task = DenoiseTask(x_tr, y_tr, x_val, y_val, mu_val, sd_val, None if c_np is None else c_np[val_idx],
                       augment=cfg.augment, crop=cfg.crop, eval_batch=max(cfg.batch_size, 64),
                       valid_radius=None if cfg.crop is not None else model_valid_radius(model))
    run_settings = {"task": "denoise", "arch": arch, "config": arch_config, "n_images": n_img, "n_val": n_val,
                    "data_sha1": data_checksum(x_np, c_np, n2_np),
                    "mode": "noise2noise" if noisy2 is not None else "supervised"}
    del x_np, n2_np

    with discard_unresumable_history(hist_path, ckpt_path):  # a run that never checkpointed leaves nothing
        res = fit(model, task, cfg, settings=run_settings, callbacks=callbacks, history_path=hist_path,
                  checkpoint_path=ckpt_path, history_attrs={"normalization": NORMALIZATION}, device=dev)
    history = res.history
    if out is not None:
        training = {"settings": {**cfg.settings(), **run_settings}, "epochs": cfg.epochs, "normalization": NORMALIZATION,
                    "data": {k: str(v) for k, v in (("noisy", noisy), ("clean", clean), ("noisy2", noisy2))
                             if isinstance(v, (str, os.PathLike))},
                    "pixel_size_A": voxel,
                    "final": {k: history[k][-1] for k in history if k != "seconds"}}
        training.update(metadata or {})
        from ..models.registry import save_model

        if distributed.context().main:  # under torchrun the replicas are equal: rank 0 writes (job arrays: every task)
            save_model(out, model.cpu(), arch, arch_config, training=jsonable(training), force=force or cfg.resume)
            model.to(dev)
        distributed.barrier()
    return TrainResult(model=model, history=history, model_path=out, history_path=hist_path,
                       checkpoint_path=ckpt_path, config=arch_config, train_config=cfg)
