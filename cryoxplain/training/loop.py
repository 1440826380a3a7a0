"""The one training loop: epochs, evaluation, callbacks, history, checkpoints and exact resume.

A task supplies only what differs between tasks — a :class:`Task` with its training samples,
how a batch is drawn (gathering, cropping, augmenting), its loss, and its validation metrics —
and :func:`fit` does the rest for every task:

* epoch ``e`` shuffles and augments from a CPU generator seeded by ``(seed, e)``
  (:func:`epoch_generator`), so an epoch does not depend on earlier random draws;
* the learning rate of epoch ``e`` is ``config.lr_at(e)``;
* row 0 of the history is measured before training; every epoch adds ``epoch``, ``train_loss``,
  the task's training and validation columns, the callbacks' columns and ``seconds``;
* callbacks ``cb(model, epoch, *task.callback_inputs(device)) -> {column: float}`` run after every
  epoch (and for epoch 0) in eval mode under ``torch.no_grad()``;
* the history is rewritten (HDF5) after every epoch and a checkpoint every
  ``config.checkpoint_every`` epochs and after the last one (:mod:`cryoxplain.training.checkpoint`);
* ``config.resume`` restores model, optimiser, torch RNG state and history from the checkpoint
  and continues to exactly the result of an uninterrupted run (same seed, same device) — refused
  when the settings or the data checksum differ from the checkpoint's;
* under ``torchrun`` (world size > 1) the step is data-parallel (:mod:`cryoxplain.training.ddp`):
  DDP, each rank a contiguous shard of every global batch, validation and callbacks once on rank 0,
  rank 0 alone writing history and checkpoints; with no launcher that module does nothing.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import ParameterError, TrainingDivergedError
from .checkpoint import (checkpoint_path_for, history_path_for, load_checkpoint, restore_checkpoint,
                         save_checkpoint, settings_diff)
from .config import TrainConfig
from .ddp import Replicas
from .history import add_row, write_history

__all__ = ["Callback", "FitResult", "Task", "epoch_generator", "fit", "make_optimizer",
           "prepare_outputs", "seeded_model"]

#: a callback adds history columns: ``(model, epoch, *task.callback_inputs(device)) -> {name: float}``
Callback = Callable[..., dict]


class Task:
    """What one task contributes to :func:`fit` (override the methods; see the module docstring)."""

    #: name shown in the progress bar
    name = "train"
    #: batch norm needs ≥ 2 samples: a shuffled remainder batch smaller than this is skipped
    min_batch = 1

    def n_train(self) -> int:
        """Number of training samples (indices ``0 … n_train − 1`` are shuffled every epoch)."""
        raise NotImplementedError

    def batch(self, idx: torch.Tensor, generator: torch.Generator):
        """The training batch of samples ``idx`` (on the CPU; crop/augment with ``generator``)."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, int, dict]:
        """``(mean loss, number of samples, {statistic: sum})`` of one batch (the sums of all batches
        of an epoch reach :meth:`train_metrics`)."""
        raise NotImplementedError

    def train_metrics(self, sums: dict, n: int) -> dict:
        """Extra training columns from the summed batch statistics (default: none)."""
        return {}

    def evaluate(self, model: torch.nn.Module, device: torch.device) -> dict:
        """Validation columns (model in eval mode, no gradients)."""
        return {}

    def callback_inputs(self, device: torch.device) -> tuple:
        """What the callbacks receive after ``(model, epoch)``."""
        return ()


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    history: dict  # column -> list of per-epoch values (row 0 is epoch 0, before training)
    history_path: Path | None = None
    checkpoint_path: Path | None = None
    resumed_from: int | None = None  # epoch of the checkpoint the run continued from
    extra: dict = field(default_factory=dict)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of epoch ``epoch`` (shuffling, crops, augmentation)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7919) % (2 ** 63))


def seeded_model(arch: str, config: dict, seed: int) -> torch.nn.Module:
    """Build ``arch`` with ``config``, its weights initialised from ``seed``."""
    from ..models.registry import build_model

    torch.manual_seed(int(seed))
    return build_model(arch, **config)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    kw = dict(lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), **kw)


def prepare_outputs(out, config: TrainConfig, *, force: bool = False, inputs: Sequence = ()) -> tuple:
    """Check the output paths before any work: ``(out, history_path, checkpoint_path)`` (all None
    without ``out``).  A fresh run refuses an existing model or checkpoint without ``force``."""
    from ..io.atomic import check_output

    if out is None:
        if config.resume:
            raise ParameterError("resume needs the output path (out) whose checkpoint to continue")
        return None, None, None
    out = Path(out)
    check_output(out, force=force or config.resume, inputs=tuple(inputs))  # a resumed run replaces its own file
    ckpt, hist = checkpoint_path_for(out), history_path_for(out)
    # side outputs: never an input (even with force or resume), never replaced without force
    check_output(ckpt, force=True, inputs=tuple(inputs))
    if not config.resume and ckpt.exists() and not force:
        raise ParameterError(f"{ckpt} exists from an earlier run; resume it (resume=True) or start over (force=True)")
    check_output(hist, force=force or config.resume, inputs=tuple(inputs))
    return out, hist, ckpt


def _run_callbacks(model, epoch, callbacks, inputs) -> dict:
    extra = {}
    for cb in callbacks:
        extra.update({str(k): float(v) for k, v in (cb(model, epoch, *inputs) or {}).items()})
    return extra


#: a batch loss this many times the run's first one means the run has diverged (it would overflow soon)
EXPLODED = 1e6


def _parameters_finite(model: torch.nn.Module) -> bool:
    """True when every floating-point parameter and buffer of ``model`` is finite (one sync)."""
    checks = [torch.isfinite(t).all() for t in list(model.parameters()) + list(model.buffers())
              if t.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def _newly_non_finite(row: dict, history: dict) -> list:
    """``"column value"`` for the columns of ``row`` that are non-finite although their last value in
    ``history`` was finite (a column that is NaN by design, e.g. without validation set, is allowed)."""
    bad = []
    for k, v in row.items():
        prev = history.get(k) or []
        if k != "seconds" and isinstance(v, float) and not math.isfinite(v) and prev and math.isfinite(float(prev[-1])):
            bad.append(f"{k} {v}")
    return bad


def _diverged(epoch: int, where: str, what: str, checkpoint_path, checkpoint_epoch, lr: float, bar=None):
    """The one-line error of a diverged run: where, why, and which checkpoint is kept (closes ``bar``)."""
    if bar is not None:
        bar.close()
    if checkpoint_path is None:
        kept = "no checkpoints without an output path"
    elif checkpoint_epoch is None:
        kept = "no checkpoint had been written yet"
    else:
        kept = f"the last good checkpoint (epoch {checkpoint_epoch}) is kept in {checkpoint_path}"
    return TrainingDivergedError(f"training diverged at epoch {epoch}{where} ({what}); stopped without writing "
                                 f"a model; {kept}; lower the learning rate (lr={lr:g}) and start again")


def fit(model: torch.nn.Module, task: Task, config: TrainConfig, *, settings: dict | None = None,
        callbacks: Sequence[Callback] = (), history_path: str | os.PathLike | None = None,
        checkpoint_path: str | os.PathLike | None = None, history_attrs: dict | None = None,
        report: Callable[[int, dict], None] | None = None, device: torch.device | None = None) -> FitResult:
    """Train ``model`` on ``task`` for ``config.epochs`` epochs (see the module docstring).

    ``settings``: the task's own settings (architecture, data checksum …), stored with the
    checkpoint together with ``config.settings()``; a resume must match all of them.
    ``report(epoch, row)`` is called after every epoch with its history row.  The run stops with
    :class:`~cryoxplain.errors.TrainingDivergedError` at the first non-finite loss, parameter or
    history value, or a batch loss :data:`EXPLODED` times the run's first (nothing diverged is
    checkpointed; earlier checkpoints and history stay).  ``device``: where the model is trained
    (default: ``config.device`` resolved).  The model ends in eval mode.
    """
    from tqdm.auto import tqdm

    from ..utils import resolve_device

    dev = device if device is not None else resolve_device(config.device)
    model.to(dev)
    optimizer = make_optimizer(model, config)
    settings = {**config.settings(), **(settings or {})}
    history_path = Path(history_path) if history_path is not None else None
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    cb_inputs = task.callback_inputs(dev)
    # world size 1: a no-op; under torchrun: DDP, batch shards, rank 0 measures and writes (training/ddp.py)
    replicas = Replicas(model, dev, config.batch_size, task.min_batch)

    def measure(row: dict, t0: float) -> dict:
        model.eval()
        with torch.no_grad():
            row.update(task.evaluate(model, dev))
            row.update(_run_callbacks(model, row["epoch"], callbacks, cb_inputs))
        row["seconds"] = time.perf_counter() - t0
        return row

    history: dict[str, list] = {"epoch": [], "train_loss": []}
    start_epoch, resumed_from = 1, None
    if config.resume:
        if checkpoint_path is None:
            raise ParameterError("resume needs a checkpoint path")
        tensors, meta = load_checkpoint(checkpoint_path)
        diff = settings_diff(meta.get("settings", {}), settings)
        if diff:
            raise ParameterError(f"cannot resume: the checkpoint was made with different settings: {diff}")
        restore_checkpoint(model, optimizer, tensors, meta, dev)
        history = {k: list(v) for k, v in meta["history"].items()}
        resumed_from = int(meta["epoch"])
        start_epoch = resumed_from + 1
        if start_epoch > config.epochs:
            raise ParameterError(f"the checkpoint is already at epoch {resumed_from} ≥ epochs {config.epochs}; "
                                 "raise epochs to train further")
    else:
        add_row(history, replicas.measured(measure, {"epoch": 0, "train_loss": math.nan}, time.perf_counter()))

    attrs = {"settings": settings, **(history_attrs or {})}
    n_tr = int(task.n_train())
    bs = config.batch_size
    per_epoch = sum(1 for s in range(0, n_tr, bs) if not replicas.skip(min(bs, n_tr - s), n_tr))
    bar = tqdm(desc=task.name, unit="batch",
               disable=(None if config.progress is None else not config.progress) if replicas.main else True,
               initial=(start_epoch - 1) * per_epoch, total=config.epochs * per_epoch)
    last_ckpt = resumed_from  # epoch of the last checkpoint this run wrote or continued from
    ref_loss = None  # the run's first batch loss: a loss EXPLODED times larger has diverged
    for epoch in range(start_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        for g in optimizer.param_groups:
            g["lr"] = config.lr_at(epoch)
        gen = epoch_generator(config.seed, epoch)
        perm = torch.randperm(n_tr, generator=gen)
        tot, cnt, sums = 0.0, 0, {}
        for s in range(0, n_tr, bs):
            idx = perm[s:s + bs]
            if replicas.skip(len(idx), n_tr):  # fold a too-small remainder
                continue
            batch = replicas.local(task.batch(idx, gen), len(idx))
            optimizer.zero_grad(set_to_none=True)
            loss, n, stats = task.loss(replicas.module, batch, dev)
            loss, lv = replicas.step_loss(loss, n, len(idx))  # lv: the global batch's loss (all ranks)
            if not math.isfinite(lv) or (ref_loss is not None and lv > EXPLODED * max(ref_loss, 1e-12)):
                what = f"loss {lv:g}"
                if math.isfinite(lv):
                    what += f", over {EXPLODED:g}× the first batch's {ref_loss:g}"
                raise _diverged(epoch, f", batch {s // bs + 1}", what, checkpoint_path, last_ckpt,
                                config.lr_at(epoch), bar)
            ref_loss = lv if ref_loss is None else ref_loss
            loss.backward()
            optimizer.step()
            if not _parameters_finite(model):
                raise _diverged(epoch, f", batch {s // bs + 1}", "non-finite model parameters after the update",
                                checkpoint_path, last_ckpt, config.lr_at(epoch), bar)
            bar.update(1)
            n = len(idx) if replicas.distributed else n
            tot += lv * n
            cnt += n
            for k, v in (stats or {}).items():
                sums[k] = sums.get(k, 0) + v
        row = {"epoch": epoch, "train_loss": tot / max(cnt, 1), **task.train_metrics(replicas.reduce_sums(sums), cnt)}
        row = replicas.measured(measure, row, t0)
        bad = _newly_non_finite(row, history)
        if bad:
            raise _diverged(epoch, "", ", ".join(bad), checkpoint_path, last_ckpt, config.lr_at(epoch), bar)
        add_row(history, row)
        bar.set_postfix({"epoch": epoch, **{k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_loss")}})
        if report is not None and replicas.main:
            report(epoch, row)
        if history_path is not None and replicas.main:
            write_history(history_path, history, attrs)
        if checkpoint_path is not None and replicas.main and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
            save_checkpoint(checkpoint_path, model, optimizer,
                            {"epoch": epoch, "settings": settings, "history": history}, dev)
            last_ckpt = epoch
    bar.close()
    model.eval()
    return FitResult(history=history, history_path=history_path, checkpoint_path=checkpoint_path,
                     resumed_from=resumed_from)
