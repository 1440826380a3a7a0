"""Training of denoisers (any architecture registered with ``task="denoise"``) on the one loop.

:func:`train_denoiser` trains by one of three losses (``method``, :data:`METHODS`):

* ``supervised`` — MSE regression to the clean images (the thesis' setting);
* ``noise2noise`` — MSE regression to a second independent noisy copy (Lehtinen et al. 2018, as
  Topaz-Denoise does with even/odd frames);
* ``masked`` — blind-spot self-supervision on the noisy stack alone (Noise2Self, Batson & Royer
  2019; Noise2Void, Krull et al. 2019; Topaz-Denoise's ``masked`` method): per batch a random
  subset of pixels (``mask_fraction``) is replaced (:func:`cryoxplain.imaging.blindspot.replace_masked`:
  the mean of the unmasked neighbours, or noise) and the MSE is taken on the masked pixels only,
  against their hidden noisy values (:func:`blind_spot_loss`).  For a model with a valid disc (the
  spiral denoiser) the mask is placed on the pixel grid *before* the grid→spiral sampling and the
  loss counts only masked pixels inside the disc (docs/train.md says why).

``init`` fine-tunes from a shipped or saved model (architecture and config from the file) instead
of a seeded initialisation.  The loop — held-out validation split, per-epoch HDF5 history,
checkpoints, exact resume, callbacks — is :func:`cryoxplain.training.fit`; this module supplies
only the denoising tasks (:class:`DenoiseTask`, :class:`MaskedDenoiseTask`): their batches (random
crop, then the same random symmetry, :func:`cryoxplain.imaging.augment.random_symmetry`, on input
and target; for ``masked`` then the mask), their loss and their validation metrics (loss, the
blind-spot loss on the validation inputs ``val_masked_loss`` — a no-ground-truth column for every
method —, SNR_out and PSNR when clean images are known).

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
from ..imaging.blindspot import REPLACEMENTS, random_pixel_mask, replace_masked
from ..imaging.normalize import NORMALIZATION, denormalize, normalize
from ..training import (Callback, Task, TrainConfig, checkpoint_path_for, data_checksum, fit,
                        history_path_for, load_checkpoint, prepare_outputs, read_history, seeded_model)
from ..io.jsonutil import jsonable
from ..training.data import load_images
from .. import distributed
from ..training.history import discard_unresumable_history

__all__ = ["AUGMENTATIONS", "DEFAULT_MASK_FRACTION", "DenoiseTask", "METHODS", "MaskedDenoiseTask", "TrainResult",
           "blind_spot_loss", "checkpoint_path_for", "freeze_batchnorm", "history_path_for", "load_checkpoint", "read_history",
           "train_denoiser"]

#: training losses of :func:`train_denoiser` (module docstring)
METHODS = ("supervised", "noise2noise", "masked")
#: fraction of pixels masked per batch by the ``masked`` method (1/16: the density of Noise2Self's
#: 4×4 grid, the partition :mod:`cryoxplain.metrics.nogt` evaluates with)
DEFAULT_MASK_FRACTION = 1 / 16
#: seed of the fixed mask of the ``val_masked_loss`` column (the same pixels every epoch)
VAL_MASK_SEED = 13


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
    method: str = "supervised"  # the training loss (METHODS)


def _random_crop(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator):
    h, w = x.shape[-2:]
    oy = torch.randint(0, h - size + 1, (len(x),), generator=gen)
    ox = torch.randint(0, w - size + 1, (len(x),), generator=gen)
    xs = torch.stack([x[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    ys = torch.stack([y[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    return xs, ys


def blind_spot_loss(model, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, replace: str = "mean",
                    noise: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The blind-spot (Noise2Self / Noise2Void) loss: the mean of ``(model(x̃) − target)²`` over the
    masked pixels, ``x̃`` = ``x`` with the masked pixels replaced
    (:func:`cryoxplain.imaging.blindspot.replace_masked`, ``replace``/``noise``).

    ``x``, ``target`` ``(B, 1, H, W)`` (for self-supervision the same noisy batch); ``mask`` boolean,
    broadcastable; ``valid``: optional ``(H, W)`` weights of the pixels where the model predicts (the
    spiral's disc).  The network never sees a masked value of ``x``: the gradient with respect to
    it is zero.
    """
    out = model(replace_masked(x, mask, replace, noise=noise))
    w = mask.to(device=out.device, dtype=out.dtype).expand_as(out)
    if valid is not None:
        w = w * valid.to(device=out.device, dtype=out.dtype)
    return ((out - target) ** 2 * w).sum() / w.sum().clamp(min=1.0)


def _valid_weights(model, shape) -> torch.Tensor | None:
    """``(H, W)`` 0/1 weights of the model's valid disc (None: the whole box)."""
    from ..imaging.masks import disc_mask
    from ..models.protocol import model_valid_radius

    r = model_valid_radius(model)
    return None if r is None else torch.from_numpy(disc_mask(shape, r))


class DenoiseTask(Task):
    """Denoising as a :class:`~cryoxplain.training.Task`: normalised ``(input, target)`` pairs,
    MSE loss, validation loss and SNR/PSNR against the clean images (when known).

    ``x_tr, y_tr`` (N, 1, H, W) normalised training inputs and targets; ``x_val, y_val`` the
    validation pairs with their input statistics ``mu_val, sd_val``; ``clean_val`` the clean
    validation images (input units, (M, H, W)) or None.  ``valid`` ``(H, W)`` 0/1 weights of the
    disc the model predicts on (the spiral CNN's mask, from
    :func:`cryoxplain.models.protocol.model_valid_radius`; None: the box): the loss (whole
    images), the validation loss and the validation SNR/PSNR are then taken on that disc only.  (With Adam the
    loss's constant rescaling does not change the steps.)
    """

    name = "train denoiser"
    min_batch = 2  # batch norm needs ≥ 2 samples

    def __init__(self, x_tr, y_tr, x_val, y_val, mu_val, sd_val, clean_val, *, augment: str = "none",
                 crop: int | None = None, eval_batch: int = 64, mask_fraction: float = DEFAULT_MASK_FRACTION,
                 mask_replace: str = "mean", valid: torch.Tensor | None = None):
        self.x_tr, self.y_tr, self.x_val, self.y_val = x_tr, y_tr, x_val, y_val
        self.mu_val, self.sd_val = mu_val, sd_val
        self.clean_val = None if clean_val is None else np.asarray(clean_val, np.float64)
        self.clean_val_n = None if clean_val is None else (torch.from_numpy(np.asarray(clean_val, np.float32))[:, None] - mu_val) / sd_val
        self.augment, self.crop, self.eval_batch = augment, crop, int(eval_batch)
        self.mask_fraction, self.mask_replace, self.valid = float(mask_fraction), mask_replace, valid
        gen = torch.Generator().manual_seed(VAL_MASK_SEED)  # one fixed validation mask (comparable epochs)
        self.val_mask = random_pixel_mask(tuple(x_val.shape), self.mask_fraction, gen)
        self.val_noise = torch.randn(tuple(x_val.shape), generator=gen) if mask_replace == "noise" else None
        # boolean (H, W) of the disc the model predicts on (None: the box)
        self.valid_b = None if valid is None else valid > 0

    def n_train(self) -> int:
        return len(self.x_tr)

    def batch(self, idx, generator):
        xb, yb = self.x_tr[idx], self.y_tr[idx]
        if self.crop is not None:
            xb, yb = _random_crop(xb, yb, self.crop, generator)
        return random_symmetry([xb, yb], self.augment, generator)

    def loss(self, model, batch, device):
        xb, yb = batch[0].to(device), batch[1].to(device)
        if self.valid_b is None or self.crop is not None:
            return torch.nn.functional.mse_loss(model(xb), yb), len(xb), {}
        m = self.valid_b.to(device)
        return torch.nn.functional.mse_loss(model(xb)[..., m], yb[..., m]), len(xb), {}

    def evaluate(self, model, device) -> dict:
        """Validation loss (normalised units, vs the training target) and SNR/PSNR vs clean (input units)."""
        from ..metrics.snr import DenoiseMetrics, snr_db

        x, y, bs = self.x_val, self.y_val, self.eval_batch
        nan = {"val_loss": math.nan, "val_masked_loss": math.nan, "val_contrast_sign": math.nan, "val_snr_out": math.nan,
               "val_snr_out_db": math.nan, "val_psnr_db": math.nan}
        if len(x) == 0:
            return nan
        sq, n, msq, mn, odd, ref = 0.0, 0, 0.0, 0.0, 0.0, 0.0
        mask = "disc" if self.valid_b is None else self.valid_b.numpy()
        metrics = DenoiseMetrics(x.shape[-2:], mask=mask, frc_mask="none") if self.clean_val is not None else None
        for s in range(0, len(x), bs):
            xb = x[s:s + bs].to(device)
            out = model(xb).cpu()
            d = out - y[s:s + bs]
            if self.valid_b is not None:
                d = d[..., self.valid_b]
            sq += float((d ** 2).sum())
            n += d.numel()
            m = self.val_mask[s:s + bs]
            w = m.to(out.dtype) if self.valid is None else m.to(out.dtype) * self.valid
            noise = None if self.val_noise is None else self.val_noise[s:s + bs]
            blind = model(replace_masked(xb, m, self.mask_replace, noise=noise)).cpu()
            msq += float(((blind - x[s:s + bs]) ** 2 * w).sum())
            mn += float(w.sum())
            sym, o = model(-xb).cpu() + out, out  # contrast sign: ‖F(−x) + F(x)‖² …
            if self.valid_b is not None:
                sym, o = sym[..., self.valid_b], o[..., self.valid_b]
            odd += float(sym.pow(2).sum())
            ref += float(o.pow(2).sum())  # … relative to ‖F(x)‖² (on the valid disc)
            if metrics is not None:
                est = denormalize(out, self.mu_val[s:s + bs], self.sd_val[s:s + bs])[:, 0].double().numpy()
                metrics.update(self.clean_val[s:s + bs], est)
        res = dict(nan, val_loss=sq / n, val_masked_loss=msq / mn if mn > 0 else math.nan,
                   val_contrast_sign=math.sqrt(odd / ref) if ref > 0 else math.nan)
        if metrics is not None:
            res["val_snr_out"] = metrics.snr_out()
            res["val_snr_out_db"] = snr_db(res["val_snr_out"])
            res["val_psnr_db"] = metrics.psnr()
        return res

    def callback_inputs(self, device):
        """``(val_noisy, val_clean)``: normalised validation inputs and clean images (or None) on ``device``."""
        return self.x_val.to(device), None if self.clean_val_n is None else self.clean_val_n.to(device)


class MaskedDenoiseTask(DenoiseTask):
    """Blind-spot self-supervision (``method="masked"``): the batch is a crop/symmetry of the noisy
    inputs plus a fresh random pixel mask (and replacement noise) drawn from the epoch's generator;
    the loss is :func:`blind_spot_loss` against the batch itself.  ``val_loss`` is the blind-spot
    loss on the validation inputs with a fixed mask (the ``val_masked_loss`` column)."""

    name = "train denoiser (masked)"

    def __init__(self, x_tr, x_val, mu_val, sd_val, clean_val, **kw):
        super().__init__(x_tr, x_tr, x_val, x_val, mu_val, sd_val, clean_val, **kw)

    def batch(self, idx, generator):
        xb = self.x_tr[idx]
        if self.crop is not None:
            xb, _ = _random_crop(xb, xb, self.crop, generator)
        xb = random_symmetry([xb], self.augment, generator)[0]
        mask = random_pixel_mask(tuple(xb.shape), self.mask_fraction, generator)
        noise = torch.randn(tuple(xb.shape), generator=generator) if self.mask_replace == "noise" else None
        return xb, mask, noise

    def loss(self, model, batch, device):
        xb, mask, noise = batch
        xb = xb.to(device)
        valid = self.valid if self.crop is None else None
        loss = blind_spot_loss(model, xb, xb, mask.to(device), replace=self.mask_replace,
                               noise=None if noise is None else noise.to(device), valid=valid)
        return loss, len(xb), {}

    def evaluate(self, model, device) -> dict:
        res = super().evaluate(model, device)
        res["val_loss"] = res["val_masked_loss"]
        return res


def _resolve_method(method, clean, noisy2, mask_fraction, mask_replace) -> str:
    """The training method, given or inferred from the inputs (see :func:`train_denoiser`)."""
    if method is None:
        method = "noise2noise" if noisy2 is not None else "supervised" if clean is not None else "masked"
    if method not in METHODS:
        raise ParameterError(f"unknown method={method!r}; choose one of {', '.join(METHODS)}")
    if method == "supervised" and clean is None:
        raise ParameterError("method='supervised' needs the clean images (clean=...)")
    if method == "noise2noise" and noisy2 is None:
        raise ParameterError("method='noise2noise' needs a second noisy copy (noisy2=...)")
    if method == "supervised" and noisy2 is not None:
        raise ParameterError("noisy2=... is a Noise2Noise target; use method='noise2noise' (or leave method unset)")
    if not (isinstance(mask_fraction, (int, float)) and 0 < mask_fraction < 1):
        raise ParameterError(f"mask_fraction must be in (0, 1), got {mask_fraction!r}")
    if mask_replace not in REPLACEMENTS:
        raise ParameterError(f"unknown mask_replace={mask_replace!r}; choose one of {', '.join(REPLACEMENTS)}")
    return method


def _init_architecture(init, arch, arch_config) -> tuple[str, dict, dict]:
    """``(arch, complete config, init record)`` of the model to fine-tune from; refuses an ``arch``
    or ``arch_config`` entry that contradicts the file."""
    from ..models.registry import read_model_info

    info = read_model_info(init)
    if info.task != "denoise":
        raise ParameterError(f"init={init!s}: {info.arch!r} is a {info.task!r} model, not a denoiser")
    if arch is not None and arch != info.arch:
        raise ParameterError(f"arch={arch!r} contradicts init={init!s}, a {info.arch!r} model; fine-tuning keeps "
                             "the file's architecture (leave arch unset)")
    bad = {k: v for k, v in dict(arch_config or {}).items() if info.config.get(k, object()) != v}
    if bad:
        items = ", ".join(f"{k}={v!r} (file: {info.config.get(k, 'absent')!r})" for k, v in bad.items())
        raise ParameterError(f"arch_config contradicts init={init!s}: {items}; fine-tuning keeps the file's config")
    import hashlib

    digest = hashlib.sha1(Path(info.path).read_bytes()).hexdigest()
    return info.arch, dict(info.config), {"info": info, "path": info.path, "weights_sha1": digest,
                                          "pixel_size_A": info.pixel_size}


def _init_model(init_info: dict, seed: int) -> torch.nn.Module:
    """The model of ``init_info`` with its saved weights (training mode), the torch RNG seeded as
    for a fresh model so that everything after the initialisation is reproducible."""
    from ..models.registry import load_model

    model, _ = load_model(init_info["path"], device="cpu", task="denoise")
    torch.manual_seed(int(seed))
    return model.train()


def freeze_batchnorm(model: torch.nn.Module) -> int:
    """Keep every batch-norm layer of ``model`` in eval mode from now on (``model.train()`` no
    longer switches them): they normalise with their stored running statistics and do not update
    them; their affine weights stay trainable.  Returns the number of layers frozen.

    Used when fine-tuning (``init=``): a shipped model's running statistics describe its broad
    training distribution, and the layers after them rely on that scale.  Re-estimating them on one
    homogeneous stack (one SNR, one contrast) — which training mode does within the first epoch,
    whatever the learning rate — costs more than the fine-tune gains: measured on 300 held-out
    particles at SNR 1/16, only refreshing the statistics (no weight update) took the default model
    from 4.53 to 1.52 dB SNR_out (whole boxes; 3.16 dB with 48 px crops).
    """
    import types

    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train = types.MethodType(lambda self, mode=True: torch.nn.Module.train(self, False), m)
            m.eval()
            n += 1
    return n


def _train_config(config, settings: dict) -> TrainConfig:
    if config is not None and not isinstance(config, TrainConfig):
        raise ParameterError(f"config must be a TrainConfig (the architecture's settings go in arch_config), "
                             f"got {type(config).__name__}")
    return TrainConfig.from_kwargs(config, **settings)


def train_denoiser(noisy=None, clean=None, noisy2=None, *, arch: str | None = None, arch_config: dict | None = None,
                   config: TrainConfig | None = None, out: str | os.PathLike | None = None,
                   callbacks: Sequence[Callback] = (), force: bool = False, metadata: dict | None = None,
                   method: str | None = None, init: str | os.PathLike | None = None,
                   mask_fraction: float = DEFAULT_MASK_FRACTION, mask_replace: str = "mean",
                   freeze_bn: bool | None = None, **settings) -> TrainResult:
    """Train a denoiser and (with ``out``) save it, its history and checkpoints.

    Parameters
    ----------
    noisy : path to an MRC stack or array (N, H, W) — the network inputs.
    clean : matching clean images (supervised training), or None.
    noisy2 : a second, independently noisy copy of the same images (Noise2Noise: the two copies
        are each other's target, both directions used).  If ``clean`` is given as well it is used
        only for the validation SNR/PSNR (so it is with ``method="masked"``).
    method : ``supervised`` (needs ``clean``), ``noise2noise`` (needs ``noisy2``) or ``masked``
        (blind-spot self-supervision on ``noisy`` alone; module docstring).  Default: inferred —
        ``noise2noise`` with ``noisy2``, else ``supervised`` with ``clean``, else ``masked``.
    mask_fraction, mask_replace : the ``masked`` method's fraction of pixels masked per batch and
        how they are filled (:data:`cryoxplain.imaging.blindspot.REPLACEMENTS`); ``mask_replace``
        also sets the replacement of the ``val_masked_loss`` column of every method.
    init : fine-tune from this model — a shipped model name (``"default"``) or a model file —
        instead of a seeded initialisation: the architecture and its config come from the file
        (``arch``/``arch_config`` may be omitted; values that contradict the file are refused).
        The model file records ``training["init"]``; a resume must name the same ``init``.
    freeze_bn : keep the batch-norm layers in eval mode (stored running statistics, not updated;
        :func:`freeze_batchnorm`).  Default: True with ``init`` (fine-tuning), False otherwise.
    arch, arch_config : a registered ``denoise`` architecture (default ``cartesian``) and its
        keyword config (``cartesian``: ``depth``, ``width``, ``kernel_size``, ``residual``).
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

    method = _resolve_method(method, clean, noisy2, mask_fraction, mask_replace)
    init_info = None
    if init is not None:
        arch, arch_config, init_info = _init_architecture(init, arch, arch_config)
    arch = "cartesian" if arch is None else arch
    require_architecture(arch, "denoise")
    if noisy is None:
        raise ParameterError("noisy (the network input stack) is required")
    inputs = [p for p in (noisy, clean, noisy2) if isinstance(p, (str, os.PathLike))]
    if init_info is not None and out is not None and Path(out).resolve() == Path(init_info["path"]).resolve():
        raise ParameterError(f"init={init!s} is also the output (out=...); write the fine-tuned model to a new file")
    out, hist_path, ckpt_path = prepare_outputs(out, cfg, force=force, inputs=inputs)
    dev = distributed.device(cfg.device)  # resolve_device; under torchrun cuda:LOCAL_RANK

    x_np, voxel = load_images(noisy, "noisy")
    ipx = None if init_info is None else init_info["pixel_size_A"]
    if ipx and voxel and abs(float(voxel) / ipx - 1) > 0.1:
        warnings.warn(f"fine-tuning a model trained at {ipx:g} Å/px on particles at {float(voxel):g} Å/px; bin or "
                      "resample the particles to the model's pixel size for the initial weights to fit", UserWarning,
                      stacklevel=2)
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
    if init_info is None:
        model = seeded_model(arch, arch_config, cfg.seed)
    else:
        model = _init_model(init_info, cfg.seed)
    freeze_bn = init_info is not None if freeze_bn is None else bool(freeze_bn)
    if freeze_bn:
        freeze_batchnorm(model)
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

    clean_val = None if c_np is None else c_np[val_idx]
    task_kw = dict(augment=cfg.augment, crop=cfg.crop, eval_batch=max(cfg.batch_size, 64), mask_fraction=mask_fraction,
                   mask_replace=mask_replace, valid=_valid_weights(model, (h, w)))
    if method == "masked":
        x_tr, _, _, _ = prep(x_np[tr_idx], x_np[tr_idx])
        x_val, _, mu_val, sd_val = prep(x_np[val_idx], x_np[val_idx])
        task = MaskedDenoiseTask(x_tr, x_val, mu_val, sd_val, clean_val, **task_kw)
    else:
        if method == "noise2noise":  # Noise2Noise: both directions
            a, ya, _, _ = prep(x_np[tr_idx], n2_np[tr_idx])
            b, yb, _, _ = prep(n2_np[tr_idx], x_np[tr_idx])
            x_tr, y_tr = torch.cat([a, b]), torch.cat([ya, yb])
            x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], n2_np[val_idx])
        else:
            x_tr, y_tr, _, _ = prep(x_np[tr_idx], c_np[tr_idx])
            x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], c_np[val_idx])
        task = DenoiseTask(x_tr, y_tr, x_val, y_val, mu_val, sd_val, clean_val, **task_kw)
    run_settings = {"task": "denoise", "arch": arch, "config": arch_config, "n_images": n_img, "n_val": n_val,
                    "data_sha1": data_checksum(x_np, c_np, n2_np), "mode": method}
    if method == "masked":
        run_settings.update(mask_fraction=float(mask_fraction), mask_replace=mask_replace)
    if init_info is not None:
        run_settings["init"] = {"model": str(init), "weights_sha1": init_info["weights_sha1"]}
    if freeze_bn:
        run_settings["freeze_bn"] = True
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
                    **({} if init_info is None else {"init": {"model": str(init), "path": init_info["path"],
                                                               "weights_sha1": init_info["weights_sha1"],
                                                               "pixel_size_A": init_info["pixel_size_A"]}}),
                    "final": {k: history[k][-1] for k in history if k != "seconds"}}
        training.update(metadata or {})
        from ..models.registry import save_model

        if distributed.context().main:  # under torchrun the replicas are equal: rank 0 writes (job arrays: every task)
            save_model(out, model.cpu(), arch, arch_config, training=jsonable(training), force=force or cfg.resume)
            model.to(dev)
        distributed.barrier()
    return TrainResult(model=model, history=history, model_path=out, history_path=hist_path,
                       checkpoint_path=ckpt_path, config=arch_config, train_config=cfg, method=method)
