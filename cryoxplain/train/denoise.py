"""Training of denoisers (any architecture registered with ``task="denoise"``).

:func:`train_denoiser` trains by MSE regression either to the clean images (supervised, the
thesis' setting) or to a second independent noisy copy (Noise2Noise, Lehtinen et al. 2018, as
Topaz-Denoise does with even/odd frames).  It keeps a held-out validation split, writes a
per-epoch history to HDF5, checkpoints every N epochs, and ``resume=True`` continues from the last
checkpoint to exactly the result of an uninterrupted run (same seed, same device).

Reproducibility: the network is initialised from ``seed``; the shuffling and augmentation of epoch
``e`` draw from a generator seeded by ``(seed, e)`` on the CPU, so an epoch does not depend on
earlier random draws.  A checkpoint holds the weights (incl. batch-norm statistics), the optimizer
state and the history; that is the whole state of the run.  Checkpoints are safetensors files with
JSON metadata: loading one never executes code.

The normalisation is :mod:`cryoxplain.models.normalize` (per-image mean/std of the noisy input),
applied identically by :mod:`cryoxplain.denoise`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import InputFileError, ParameterError, ShapeError
from ..io.atomic import atomic_path, check_output
from ..models.normalize import NORMALIZATION, denormalize, normalize
from ..models.protocol import conforms, model_input_shape
from ..models.registry import architectures, build_model, save_model
from ..utils import resolve_device

__all__ = ["AUGMENTATIONS", "TrainResult", "augment_pair", "checkpoint_path_for", "history_path_for",
           "load_checkpoint", "read_history", "train_denoiser"]

#: augmentation modes: none; rot90 (random multiple of 90°); flip (random transpose/flips);
#: d4 (rot90 + flip: the 8 symmetries of the square); rotate (arbitrary angle, bilinear, + flip)
AUGMENTATIONS = ("none", "rot90", "flip", "d4", "rotate")

#: a callback computes extra history columns: (model, epoch, val_noisy, val_clean) -> {name: float}
Callback = Callable[[torch.nn.Module, int, torch.Tensor, "torch.Tensor | None"], dict]

BASE_COLUMNS = ("epoch", "train_loss", "val_loss", "val_snr_out", "val_snr_out_db", "val_psnr_db", "seconds")


@dataclass
class TrainResult:
    """What :func:`train_denoiser` returns."""

    model: torch.nn.Module
    history: dict  # column -> list of per-epoch values (row 0 is epoch 0, before training)
    model_path: Path | None
    history_path: Path | None
    checkpoint_path: Path | None
    config: dict = field(default_factory=dict)


def _stem(out: Path) -> Path:
    name = out.name
    for suf in (".safetensors", ".pt", ".model"):
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    return out.with_name(name)


def history_path_for(out: str | os.PathLike) -> Path:
    """``MODEL.safetensors`` → ``MODEL.history.h5``."""
    s = _stem(Path(out))
    return s.with_name(s.name + ".history.h5")


def checkpoint_path_for(out: str | os.PathLike) -> Path:
    """``MODEL.safetensors`` → ``MODEL.checkpoint.safetensors``."""
    s = _stem(Path(out))
    return s.with_name(s.name + ".checkpoint.safetensors")


# ---------------------------------------------------------------------------------------------
# data
def _load(x, name: str) -> tuple[np.ndarray, float | None]:
    if x is None:
        return None, None
    if isinstance(x, (str, os.PathLike)):
        from ..io.mrc import read_mrc

        data, vs = read_mrc(x)
    else:
        data, vs = np.asarray(x, dtype=np.float32), None
        if not np.isfinite(data).all():
            raise InputFileError(f"{name}: data contain NaN/Inf values")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ShapeError(f"{name}: expected a stack of 2D images, got shape {data.shape}")
    return np.ascontiguousarray(data, dtype=np.float32), vs


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919) % (2 ** 63))


def _rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate (B, 1, H, W) images about the centre by ``angles`` (radians), zeros outside.

    Square boxes: band-limited FFT three-shear rotation (:func:`cryoxplain.geometry.rotate.rotate`),
    which keeps the variance and spectrum of the noise (bilinear interpolation smooths white
    noise, by up to half its variance, so augmented inputs would not look like the data).
    Non-square boxes: bilinear.
    """
    if x.shape[-1] == x.shape[-2]:
        from ..geometry.rotate import rotate

        return rotate(x, angles)
    c, s = torch.cos(angles), torch.sin(angles)
    h, w = x.shape[-2:]
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype)
    # affine_grid works in normalised coordinates; correct for non-square boxes
    theta[:, 0, 0] = c
    theta[:, 0, 1] = -s * h / w
    theta[:, 1, 0] = s * w / h
    theta[:, 1, 1] = c
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _random_crop(x: torch.Tensor, y: torch.Tensor, size: int, gen: torch.Generator):
    h, w = x.shape[-2:]
    oy = torch.randint(0, h - size + 1, (len(x),), generator=gen)
    ox = torch.randint(0, w - size + 1, (len(x),), generator=gen)
    xs = torch.stack([x[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    ys = torch.stack([y[i, :, oy[i]:oy[i] + size, ox[i]:ox[i] + size] for i in range(len(x))])
    return xs, ys


def augment_pair(x: torch.Tensor, y: torch.Tensor, mode: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the same random symmetry to input ``x`` and target ``y`` (both (B, 1, H, W), on CPU).

    Square images only for the 90°/transpose symmetries (a non-square box is only flipped).
    """
    if mode == "none":
        return x, y
    b = len(x)
    square = x.shape[-1] == x.shape[-2]
    if mode in ("rot90", "d4") and square:
        k = torch.randint(0, 4, (b,), generator=gen)
        xs, ys = [], []
        for i in range(b):
            xs.append(torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
            ys.append(torch.rot90(y[i], int(k[i]), dims=(-2, -1)))
        x, y = torch.stack(xs), torch.stack(ys)
    if mode in ("flip", "d4", "rotate"):
        f = torch.rand(b, generator=gen) < 0.5
        if f.any():
            x, y = x.clone(), y.clone()
            x[f] = torch.flip(x[f], dims=(-1,))
            y[f] = torch.flip(y[f], dims=(-1,))
        if mode == "flip" and square:
            t = torch.rand(b, generator=gen) < 0.5
            if t.any():
                x[t] = x[t].transpose(-1, -2)
                y[t] = y[t].transpose(-1, -2)
    if mode == "rotate":
        ang = torch.rand(b, generator=gen, dtype=x.dtype) * (2 * math.pi)
        x, y = _rotate(x, ang), _rotate(y, ang)
    return x, y


# ---------------------------------------------------------------------------------------------
# checkpoints (safetensors + JSON; no pickle)
def _save_checkpoint(path: Path, model, optimizer, meta: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    scalars = {}
    for pid, st in osd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{pid}/{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = val
    meta = dict(meta, optim_param_groups=osd["param_groups"], optim_scalars=scalars)
    with atomic_path(path, force=True) as tmp:
        save_file(tensors, str(tmp), metadata={"cryoxplain_checkpoint": json.dumps(meta, default=_json_default)})


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a training checkpoint: ``(tensors, metadata)``; raises ParameterError when unusable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"cannot resume: no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("cryoxplain_checkpoint")
        tensors = load_file(str(path))
        meta = json.loads(raw)
    except Exception as exc:
        raise ParameterError(f"cannot resume: {path} is not a readable checkpoint ({type(exc).__name__})") from None
    return tensors, meta


def _restore(model, optimizer, tensors: dict, meta: dict) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, strict=True)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, pid, key = k.split("/", 2)
            state.setdefault(int(pid), {})[key] = v
    for k, v in meta.get("optim_scalars", {}).items():
        pid, key = k.split("/", 1)
        state.setdefault(int(pid), {})[key] = v
    groups = meta["optim_param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------------------------------
# history
def _write_history(path: Path, history: dict, attrs: dict) -> None:
    import h5py

    with atomic_path(path, force=True) as tmp:
        with h5py.File(tmp, "w") as f:
            for k, v in history.items():
                f.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            f.attrs["columns"] = json.dumps(list(history))
            for k, v in attrs.items():
                f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v, default=_json_default)


def read_history(path: str | os.PathLike) -> dict:
    """Read a history file written by :func:`train_denoiser`: ``{column: ndarray}`` plus ``"attrs"``."""
    import h5py

    with h5py.File(path, "r") as f:
        cols = json.loads(f.attrs["columns"])
        out = {c: f[c][()] for c in cols}
        out["attrs"] = {k: f.attrs[k] for k in f.attrs}
    return out


# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _evaluate(model, x, y, clean_n, mu, sd, clean, device, batch_size) -> dict:
    """Validation loss (normalised units, vs the training target) and SNR/PSNR vs clean (input units)."""
    from ..metrics.snr import DenoiseMetrics, snr_db

    model.eval()
    if len(x) == 0:
        return {"val_loss": math.nan, "val_snr_out": math.nan, "val_snr_out_db": math.nan, "val_psnr_db": math.nan}
    sq, n = 0.0, 0
    metrics = DenoiseMetrics(x.shape[-2:], mask="disc", frc_mask="none") if clean is not None else None
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size].to(device)
        out = model(xb).cpu()
        sq += float(((out - y[s:s + batch_size]) ** 2).sum())
        n += out.numel()
        if metrics is not None:
            est = denormalize(out, mu[s:s + batch_size], sd[s:s + batch_size])[:, 0].double().numpy()
            metrics.update(clean[s:s + batch_size], est)
    res = {"val_loss": sq / n}
    if metrics is not None:
        res["val_snr_out"] = metrics.snr_out()
        res["val_snr_out_db"] = snr_db(res["val_snr_out"])
        res["val_psnr_db"] = metrics.psnr()
    else:
        res.update(val_snr_out=math.nan, val_snr_out_db=math.nan, val_psnr_db=math.nan)
    return res


def train_denoiser(noisy, clean=None, noisy2=None, *, arch: str = "cartesian", config: dict | None = None,
                   epochs: int = 10, seed: int = 0, out: str | os.PathLike | None = None,
                   val_fraction: float = 0.1, batch_size: int = 16, lr: float = 1e-3, augment: str = "none",
                   checkpoint_every: int = 1, resume: bool = False, device: str = "auto",
                   callbacks: Sequence[Callback] = (), force: bool = False, progress: bool | None = None,
                   metadata: dict | None = None, crop: int | None = None,
                   lr_schedule: str = "constant") -> TrainResult:
    """Train a denoiser and (with ``out``) save it, its history and checkpoints.

    Parameters
    ----------
    noisy : path to an MRC stack or array (N, H, W) — the network inputs.
    clean : matching clean images (supervised training), or None.
    noisy2 : a second, independently noisy copy of the same images (Noise2Noise: the two copies
        are each other's target, both directions used).  If ``clean`` is given as well it is used
        only for the validation SNR/PSNR.  One of ``clean`` and ``noisy2`` is required.
    arch, config : a registered ``denoise`` architecture and its keyword config
        (``cartesian``: ``depth``, ``width``, ``kernel_size``).
    epochs : total number of epochs (with ``resume``: the run continues up to this many).
    seed : initialisation, validation split, shuffling and augmentation.
    out : model file to write at the end (``.safetensors``); the history goes to
        ``history_path_for(out)`` (HDF5) and checkpoints to ``checkpoint_path_for(out)``.
    val_fraction : fraction of images held out for validation (at least one when > 0).
    batch_size, lr : Adam mini-batch size and learning rate.
    augment : one of :data:`AUGMENTATIONS`; the same random symmetry is applied to input and target.
    checkpoint_every : write a checkpoint every this many epochs (and after the last one).
    resume : continue from the checkpoint next to ``out`` (the settings must match the checkpoint's;
        ``epochs`` may be raised to train further; ``out`` is replaced at the end).
    device : ``auto|cpu|cuda|cuda:N``.
    callbacks : functions ``(model, epoch, val_noisy, val_clean) -> {column: float}`` called after
        every epoch (and for epoch 0, before training) in eval mode under ``torch.no_grad()``;
        ``val_noisy`` is the normalised validation input (B, 1, H, W) on the training device and
        ``val_clean`` the clean validation images with the same normalisation (or None).  Their keys
        become extra history columns.
    force : overwrite an existing ``out``.
    progress : show a progress bar (None: only on a terminal).
    metadata : extra entries for the model file's ``training`` metadata.
    lr_schedule : ``constant`` or ``cosine`` (lr·(1 + cos(π(e−1)/epochs))/2 in epoch e, decaying
        towards 0 at the last epoch; resuming it requires the same ``epochs``).
    crop : train on random ``crop``×``crop`` windows (one per image per epoch, the same window for
        input and target; fully convolutional models only) — faster epochs, like Topaz's ``--crop``.
        Validation always uses whole images.

    Returns
    -------
    :class:`TrainResult` with the trained model (eval mode) and the history.
    """
    from tqdm.auto import tqdm

    # ---- check parameters before any work --------------------------------------------------
    archs = architectures()
    if arch not in archs:
        raise ParameterError(f"unknown architecture {arch!r}; known: {', '.join(sorted(archs)) or 'none'}")
    if archs[arch] != "denoise":
        raise ParameterError(f"architecture {arch!r} is a {archs[arch]} model, not a denoiser (use --task {archs[arch]})")
    if augment not in AUGMENTATIONS:
        raise ParameterError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    if epochs < 1:
        raise ParameterError(f"epochs must be ≥ 1, got {epochs}")
    if not 0 <= val_fraction < 1:
        raise ParameterError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if batch_size < 1 or checkpoint_every < 1:
        raise ParameterError("batch size and checkpoint interval must be ≥ 1")
    if lr_schedule not in ("constant", "cosine"):
        raise ParameterError(f"unknown learning-rate schedule {lr_schedule!r}; use constant or cosine")
    if not lr > 0:
        raise ParameterError(f"learning rate must be > 0, got {lr}")
    if clean is None and noisy2 is None:
        raise ParameterError("give the clean images (supervised) or a second noisy copy (Noise2Noise)")
    out = Path(out) if out is not None else None
    if out is not None:
        check_output(out, force=force or resume)  # a resumed run may replace its own model file
        if not resume and checkpoint_path_for(out).exists() and not force:
            raise ParameterError(f"{checkpoint_path_for(out)} exists from an earlier run; use --resume to continue it or --force to start over")
    elif resume:
        raise ParameterError("resume needs the output path whose checkpoint to continue")
    dev = resolve_device(device)

    x_np, voxel = _load(noisy, "noisy")
    c_np, _ = _load(clean, "clean")
    n2_np, _ = _load(noisy2, "noisy2")
    for name, a in (("clean", c_np), ("noisy2", n2_np)):
        if a is not None and a.shape != x_np.shape:
            raise ShapeError(f"{name} stack {a.shape} does not match the noisy stack {x_np.shape}; images must correspond one to one")
    n_img = len(x_np)
    n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * n_img)))
    if n_img - n_val < 1:
        raise ParameterError(f"{n_img} image(s) are too few for a validation fraction of {val_fraction}")
    split = np.random.default_rng(int(seed)).permutation(n_img)
    val_idx, tr_idx = np.sort(split[:n_val]), np.sort(split[n_val:])

    if crop is not None:
        crop = int(crop)
        if not 1 <= crop <= min(x_np.shape[-2:]):
            raise ParameterError(f"crop {crop} must be between 1 and the image size {min(x_np.shape[-2:])}")
    config = dict(config or {})
    torch.manual_seed(int(seed))
    model = build_model(arch, **config)
    shape = model_input_shape(model)
    if shape is not None and tuple(shape) != tuple(x_np.shape[-2:]):
        raise ShapeError(f"architecture {arch!r} with this config takes {tuple(shape)} images, the data are {x_np.shape[-2:]}")
    if shape is not None and crop is not None and crop != shape[0]:
        raise ParameterError(f"architecture {arch!r} takes fixed-size {tuple(shape)} images; random crops are not possible")
    if conforms(model):
        config = dict(model.config())  # complete with the defaults, so the file rebuilds the same net
    model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    # ---- tensors (normalised, CPU) ---------------------------------------------------------
    def prep(inp: np.ndarray, tgt: np.ndarray | None):
        xt = torch.from_numpy(inp)[:, None]
        xn, mu, sd = normalize(xt)
        yn = None if tgt is None else (torch.from_numpy(tgt)[:, None] - mu) / sd
        return xn, yn, mu, sd

    if n2_np is not None:  # Noise2Noise: both directions
        a, ya, _, _ = prep(x_np[tr_idx], n2_np[tr_idx])
        b, yb, _, _ = prep(n2_np[tr_idx], x_np[tr_idx])
        x_tr, y_tr = torch.cat([a, b]), torch.cat([ya, yb])
        x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], n2_np[val_idx])
    else:
        x_tr, y_tr, _, _ = prep(x_np[tr_idx], c_np[tr_idx])
        x_val, y_val, mu_val, sd_val = prep(x_np[val_idx], c_np[val_idx])
    clean_val = c_np[val_idx].astype(np.float64) if c_np is not None else None
    clean_val_n = None if c_np is None else ((torch.from_numpy(c_np[val_idx])[:, None] - mu_val) / sd_val)
    x_val_dev = x_val.to(dev)
    clean_val_dev = None if clean_val_n is None else clean_val_n.to(dev)
    import hashlib

    digest = hashlib.sha1()  # identifies the training data, so a resume with other data is refused
    for a in (x_np, c_np, n2_np):
        digest.update(b"-" if a is None else a.tobytes())
    del x_np, c_np, n2_np

    settings = {"arch": arch, "config": config, "seed": int(seed), "n_images": n_img, "n_val": n_val,
                "data_sha1": digest.hexdigest(),
                "val_fraction": float(val_fraction), "batch_size": int(batch_size), "lr": float(lr),
                "augment": augment, "crop": crop, "lr_schedule": lr_schedule,
                **({"epochs": int(epochs)} if lr_schedule == "cosine" else {}), "mode": "noise2noise" if noisy2 is not None else "supervised"}
    hist_path = history_path_for(out) if out is not None else None
    ckpt_path = checkpoint_path_for(out) if out is not None else None

    history: dict[str, list] = {c: [] for c in BASE_COLUMNS}
    start_epoch = 1

    def run_callbacks(epoch: int) -> dict:
        extra = {}
        model.eval()
        with torch.no_grad():
            for cb in callbacks:
                extra.update({str(k): float(v) for k, v in (cb(model, epoch, x_val_dev, clean_val_dev) or {}).items()})
        return extra

    def add_row(row: dict) -> None:
        n_before = len(history["epoch"])
        for k in row:
            if k not in history:
                history[k] = [math.nan] * n_before
        for k in history:
            history[k].append(float(row.get(k, math.nan)))

    if resume:
        tensors, meta = load_checkpoint(ckpt_path)
        old = meta.get("settings", {})
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise ParameterError("cannot resume: the checkpoint was made with different settings: "
                                 + "; ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items()))
        _restore(model, optimizer, tensors, meta)
        history = {k: list(v) for k, v in meta["history"].items()}
        start_epoch = int(meta["epoch"]) + 1
        if start_epoch > epochs:
            raise ParameterError(f"checkpoint is already at epoch {meta['epoch']} ≥ --epochs {epochs}; raise --epochs to train further")
    else:
        t0 = time.perf_counter()
        row = {"epoch": 0, "train_loss": math.nan}
        row.update(_evaluate(model, x_val, y_val, clean_val_n, mu_val, sd_val, clean_val, dev, max(batch_size, 64)))
        row.update(run_callbacks(0))
        row["seconds"] = time.perf_counter() - t0
        add_row(row)

    attrs = {"settings": settings, "normalization": NORMALIZATION}
    n_tr = len(x_tr)
    bar = tqdm(range(start_epoch, epochs + 1), desc=f"train {arch}", unit="epoch", disable=None if progress is None else not progress,
               initial=start_epoch - 1, total=epochs)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if lr_schedule == "cosine":
            for g in optimizer.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))
        gen = _epoch_generator(seed, epoch)
        perm = torch.randperm(n_tr, generator=gen)
        tot, cnt = 0.0, 0
        for s in range(0, n_tr, batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2 and n_tr >= 2:  # batch norm needs ≥ 2 samples; fold a lone remainder
                continue
            xb, yb = x_tr[idx], y_tr[idx]
            if crop is not None:
                xb, yb = _random_crop(xb, yb, crop, gen)
            xb, yb = augment_pair(xb, yb, augment, gen)
            xb, yb = xb.to(dev), yb.to(dev)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            if not torch.isfinite(loss):
                raise ParameterError(f"training diverged at epoch {epoch} (loss {float(loss)}); lower the learning rate")
            loss.backward()
            optimizer.step()
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
        row = {"epoch": epoch, "train_loss": tot / max(cnt, 1)}
        row.update(_evaluate(model, x_val, y_val, clean_val_n, mu_val, sd_val, clean_val, dev, max(batch_size, 64)))
        row.update(run_callbacks(epoch))
        row["seconds"] = time.perf_counter() - t0
        add_row(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{row['val_loss']:.4g}",
                        snr_db=f"{row['val_snr_out_db']:.2f}")
        if hist_path is not None:
            _write_history(hist_path, history, attrs)
        if ckpt_path is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            _save_checkpoint(ckpt_path, model, optimizer, {"epoch": epoch, "settings": settings, "history": history})
    bar.close()

    model.eval()
    if out is not None:
        training = {"settings": settings, "epochs": epochs, "normalization": NORMALIZATION,
                    "data": {k: str(v) for k, v in (("noisy", noisy), ("clean", clean), ("noisy2", noisy2))
                             if isinstance(v, (str, os.PathLike))},
                    "pixel_size_A": voxel,
                    "final": {k: history[k][-1] for k in history if k != "seconds"}}
        training.update(metadata or {})
        save_model(out, model.cpu(), arch, config, training=_jsonable(training), force=force or resume)
        model.to(dev)
    return TrainResult(model=model, history=history, model_path=out, history_path=hist_path,
                       checkpoint_path=ckpt_path, config=config)


def _jsonable(d):
    return json.loads(json.dumps(d, default=_json_default, allow_nan=True))
