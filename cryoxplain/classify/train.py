"""Training a particle classifier on particles labelled by their source, on the one loop.

The label of a particle is *where it came from*: one stack per class (e.g. particles simulated
from two structures or conformations with :func:`cryoxplain.sim.simulate_particles`), or one stack
with an integer label per particle (from simulation metadata).  :func:`train_classifier` splits
the particles into a stratified training and validation set (seeded), trains
:class:`cryoxplain.models.classifier.ParticleClassifier` (or another ``classify`` architecture)
with cross-entropy on per-image-normalised particles (:mod:`cryoxplain.imaging.normalize`), and
reports the per-epoch loss and accuracy and the final validation confusion matrix.  The loop —
history (HDF5 next to the model file), checkpoints, exact resume, callbacks — is
:func:`cryoxplain.training.fit`; this module supplies the classification task
(:class:`ClassifyTask`).  The model file's ``training`` metadata records the class names, the
sources, the accuracies, the confusion matrix and the settings.

Augmentations: :mod:`cryoxplain.imaging.augment` (the same modes as the denoiser training).
Particles of one structure appear in every in-plane orientation, so ``rotate`` or ``d4`` is
usually right.  ``rotate`` is now the band-limited rotation (formerly bilinear with reflected
borders) and, like every mode, about the box centre N//2.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError, ShapeError
from ..imaging.augment import AUGMENTATIONS, random_symmetry
from ..imaging.normalize import NORMALIZATION, normalize_images
from ..training import (Callback, Task, TrainConfig, data_checksum, fit, prepare_outputs,
                        seeded_model)
from ..io.jsonutil import jsonable
from ..training.history import discard_unresumable_history
from ..training.data import load_images

__all__ = ["AUGMENTATIONS", "ClassifierResult", "ClassifyTask", "DEFAULT_CONFIG", "confusion_matrix", "load_labelled",
           "simulate_labelled", "stratified_split", "train_classifier"]

#: the training defaults of a classifier (those that differ from :class:`~cryoxplain.training.TrainConfig`'s)
DEFAULT_CONFIG = TrainConfig(batch_size=32, augment="d4", val_fraction=0.2, lr_schedule="cosine")


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` returns."""

    model: torch.nn.Module
    class_names: list[str]
    history: dict          # column -> per-epoch list (row 0: epoch 0, before training): epoch, train_loss,
    #                        train_accuracy, val_loss, val_accuracy, seconds
    val_accuracy: float    # final validation accuracy (nan without validation set)
    train_accuracy: float  # final accuracy on the training set (eval mode)
    confusion: np.ndarray  # (K, K) validation counts, rows = true class, columns = predicted
    model_path: Path | None = None
    config: dict = field(default_factory=dict)  # the architecture config
    history_path: Path | None = None
    checkpoint_path: Path | None = None
    train_config: TrainConfig | None = None


def _as_images(src, what: str) -> tuple[np.ndarray, str]:
    if hasattr(src, "noisy") and hasattr(src, "params"):  # a cryoxplain.sim SimResult
        p = getattr(src, "params", {}) or {}
        return load_images(src.noisy, what)[0], str(p.get("source", p.get("density", what)))
    name = Path(src).stem if isinstance(src, (str, os.PathLike)) else what
    return load_images(src, what)[0], name


def load_labelled(stacks=None, images=None, labels=None, class_names=None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Gather ``(images (N, H, W), labels (N,), class_names, sources)``.

    Either ``stacks`` — one stack (path, array or ``SimResult``) per class, the label being the
    stack's position — or ``images`` with integer ``labels``.
    """
    if (stacks is None) == (images is None):
        raise ParameterError("give either stacks (one particle stack per class) or images with integer labels")
    if stacks is not None:
        stacks = list(stacks)
        if len(stacks) < 2:
            raise ParameterError(f"a classifier needs at least two classes (one stack each), got {len(stacks)}")
        parts, names, sources = [], [], []
        for i, s in enumerate(stacks):
            data, name = _as_images(s, f"class {i}")
            parts.append(data)
            names.append(name)
            sources.append(str(s) if isinstance(s, (str, os.PathLike)) else name)
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) != 1:
            raise ShapeError(f"all class stacks must have the same particle size, got {sorted(shapes)}")
        x = np.concatenate(parts)
        y = np.concatenate([np.full(len(p), i, np.int64) for i, p in enumerate(parts)])
        if len(set(names)) != len(names):
            names = [f"{n}#{i}" for i, n in enumerate(names)]
    else:
        x, _ = _as_images(images, "images")
        y = np.asarray(labels)
        if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
            raise ParameterError(f"labels must be {x.shape[0]} integers, got shape {y.shape} of {y.dtype}")
        if y.min() < 0:
            raise ParameterError("labels must be ≥ 0")
        k = int(y.max()) + 1
        if k < 2:
            raise ParameterError("a classifier needs at least two classes; all labels are equal")
        names = [f"class{i}" for i in range(k)]
        sources = ["labels"]
        y = y.astype(np.int64)
    if class_names is not None:
        if len(class_names) != len(names):
            raise ParameterError(f"{len(class_names)} class names for {len(names)} classes")
        names = [str(n) for n in class_names]
    return x, y, names, sources


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: per class a fraction ``val_fraction`` (≥ 1 when > 0) held out."""
    rng = np.random.default_rng([int(seed), 7])
    tr, va = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        nv = 0 if val_fraction <= 0 else max(1, int(round(val_fraction * len(idx))))
        if nv >= len(idx):
            raise ParameterError(f"class {c} has only {len(idx)} particle(s): too few to hold out {val_fraction:.0%} for validation")
        va.append(idx[:nv])
        tr.append(idx[nv:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts: row = true class, column = predicted class."""
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (true, pred), 1)
    return m


class ClassifyTask(Task):
    """Classification as a :class:`~cryoxplain.training.Task`: particles ``x`` (N, H, W) with labels
    ``y`` (N,), augmented then normalised per image, cross-entropy loss, accuracy columns."""

    name = "train classifier"

    def __init__(self, x_tr, y_tr, x_val, y_val, *, augment: str = "none", eval_batch: int = 64):
        self.x_tr, self.y_tr, self.x_val, self.y_val = x_tr, y_tr, x_val, y_val
        self.augment, self.eval_batch = augment, int(eval_batch)

    def n_train(self) -> int:
        return len(self.x_tr)

    def batch(self, idx, generator):
        i = idx.numpy()
        xb = torch.from_numpy(self.x_tr[i])[:, None]
        return normalize_images(random_symmetry(xb, self.augment, generator)), torch.from_numpy(self.y_tr[i])

    def loss(self, model, batch, device):
        xb, yb = batch[0].to(device), batch[1].to(device)
        out = model(xb)
        return F.cross_entropy(out, yb), len(xb), {"correct": int((out.argmax(1) == yb).sum())}

    def train_metrics(self, sums, n):
        return {"train_accuracy": sums.get("correct", 0) / max(n, 1)}

    @torch.no_grad()
    def predict(self, model, x: np.ndarray, y: np.ndarray, device) -> tuple[float, float, np.ndarray]:
        """``(mean loss, accuracy, predictions)`` of ``model`` (eval mode) on particles ``x`` with labels ``y``."""
        model.eval()
        preds, loss = [], 0.0
        for s in range(0, len(x), self.eval_batch):
            xb = normalize_images(torch.from_numpy(x[s:s + self.eval_batch]).to(device)[:, None])
            yb = torch.from_numpy(y[s:s + self.eval_batch]).to(device)
            out = model(xb)
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
            preds.append(out.argmax(1).cpu().numpy())
        p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
        return loss / max(len(x), 1), float((p == y).mean()) if len(y) else float("nan"), p

    def evaluate(self, model, device) -> dict:
        if len(self.x_val) == 0:
            return {"val_loss": math.nan, "val_accuracy": math.nan}
        vl, vacc, _ = self.predict(model, self.x_val, self.y_val, device)
        return {"val_loss": vl, "val_accuracy": vacc}

    def callback_inputs(self, device):
        """``(val_particles, val_labels)``: normalised validation particles (B, 1, H, W) and labels on ``device``."""
        x = normalize_images(torch.from_numpy(self.x_val)[:, None]).to(device)
        return x, torch.from_numpy(self.y_val).to(device)


def train_classifier(stacks: Sequence | None = None, *, images=None, labels=None, class_names=None,
                     arch: str | None = "classifier", arch_config: dict | None = None,
                     config: TrainConfig | None = None, out: str | os.PathLike | None = None,
                     callbacks: Sequence[Callback] = (), force: bool = False, progress=None,
                     metadata: dict | None = None, **settings) -> ClassifierResult:
    """Train a particle classifier and (with ``out``) save it, its history and checkpoints.

    Parameters
    ----------
    stacks : one stack per class (MRC path, array ``(N, H, W)`` or ``cryoxplain.sim.SimResult``);
        the label of a particle is the position of its stack.  Or give ``images`` and ``labels``.
    class_names : names of the classes (default: the stacks' file stems / simulation sources).
    arch, arch_config : a registered ``classify`` architecture (default ``classifier``) and its
        config; ``n_classes`` (and for ``classifier`` the ``image_shape``) are set from the data.
    config : a :class:`~cryoxplain.training.TrainConfig` (default :data:`DEFAULT_CONFIG`: batch 32,
        ``d4`` augmentation, 20 % stratified validation, cosine learning-rate decay).  ``resume``
        continues from the checkpoint next to ``out`` to exactly the uninterrupted result.
    out, force : model file to write (atomic; refuses to overwrite without ``force``); the history
        goes to ``history_path_for(out)`` and checkpoints to ``checkpoint_path_for(out)``.
    callbacks : ``(model, epoch, val_particles, val_labels) -> {column: float}`` after every epoch.
    progress : a callable ``progress(epoch, row)`` called after every epoch with the history row
        (``cryoxplain train`` prints it), or a bool: show a progress bar (``TrainConfig.progress``).
    metadata : extra entries for the model file's ``training`` metadata.
    **settings : :class:`~cryoxplain.training.TrainConfig` fields overriding ``config``.
    """
    from ..models.registry import save_model
    from .. import distributed

    if isinstance(config, dict):  # the former signature: config was the architecture config
        import warnings

        warnings.warn("train_classifier(config=dict) is deprecated: pass the architecture config as arch_config",
                      DeprecationWarning, stacklevel=2)
        arch_config, config = config, None
    if config is not None and not isinstance(config, TrainConfig):
        raise ParameterError(f"config must be a TrainConfig, got {type(config).__name__}")
    report = progress if callable(progress) else None
    if report is None and progress is not None:
        settings["progress"] = progress
    cfg = TrainConfig.from_kwargs(config if config is not None else DEFAULT_CONFIG, **settings)
    arch = arch or "classifier"
    from ..models.registry import require_architecture

    require_architecture(arch, "classify")
    inputs = tuple(s for s in (stacks or ()) if isinstance(s, (str, os.PathLike)))
    out, hist_path, ckpt_path = prepare_outputs(out, cfg, force=force, inputs=inputs)

    x, y, names, sources = load_labelled(stacks, images, labels, class_names)
    k = len(names)
    tr, va = stratified_split(y, cfg.val_fraction, cfg.seed)
    if cfg.augment == "rotate" and x.shape[1] != x.shape[2]:
        raise ShapeError(f"augmentation 'rotate' needs square boxes, the particles are {x.shape[1]}x{x.shape[2]}")
    dev = distributed.device(cfg.device)  # resolve_device; under torchrun cuda:LOCAL_RANK
    acfg = dict(arch_config or {})
    acfg["n_classes"] = k
    if arch == "classifier":
        acfg["image_shape"] = list(x.shape[1:])
    model = seeded_model(arch, acfg, cfg.seed)
    from ..models.protocol import conforms

    if conforms(model):
        acfg = dict(model.config())
    task = ClassifyTask(x[tr], y[tr], x[va], y[va], augment=cfg.augment, eval_batch=cfg.batch_size)
    run_settings = {"task": "classify", "arch": arch, "config": acfg, "class_names": names,
                    "n_train": int(len(tr)), "n_val": int(len(va)), "data_sha1": data_checksum(x, y)}
    with discard_unresumable_history(hist_path, ckpt_path):  # a run that never checkpointed leaves nothing
        res = fit(model, task, cfg, settings=run_settings, callbacks=callbacks, history_path=hist_path,
                  checkpoint_path=ckpt_path, history_attrs={"normalization": NORMALIZATION}, report=report,
                  device=dev)
    _, train_acc, _ = task.predict(model, task.x_tr, task.y_tr, dev)
    if len(va):
        _, val_acc, pred = task.predict(model, task.x_val, task.y_val, dev)
        conf = confusion_matrix(task.y_val, pred, k)
    else:
        val_acc, conf = float("nan"), np.zeros((k, k), np.int64)
    model.eval()
    result = ClassifierResult(model, names, res.history, val_acc, train_acc, conf, None, acfg,
                              history_path=hist_path, checkpoint_path=ckpt_path, train_config=cfg)
    if out is not None:
        training = {
            "task": "classify", "class_names": names, "sources": sources, "seed": cfg.seed, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "augment": cfg.augment, "val_fraction": cfg.val_fraction,
            "settings": {**cfg.settings(), **run_settings},
            "n_train": int(len(tr)), "n_val": int(len(va)),
            "n_per_class": [int((y == c).sum()) for c in range(k)],
            "train_accuracy": train_acc, "val_accuracy": None if math.isnan(val_acc) else val_acc,
            "confusion": conf.tolist(), "normalization": NORMALIZATION, "image_shape": list(x.shape[1:]),
            **(metadata or {}),
        }
        if distributed.context().main:  # under torchrun the replicas are equal: rank 0 writes (job arrays: every task)
            save_model(out, model.cpu(), arch, acfg, training=jsonable(training), force=force or cfg.resume)
            model.to(dev)
        result.model_path = Path(out)
        distributed.barrier()
    return result


def simulate_labelled(sources: Sequence, n_per_class: int, box: int | None = None, snr: float = 0.25,
                      seed: int = 0, pixel_size: float | None = None, **sim_kwargs) -> tuple[list, list[str]]:
    """Simulate ``n_per_class`` particles of every density in ``sources`` (paths, ``"phantom"``
    or :class:`cryoxplain.sim.Density`) with :func:`cryoxplain.sim.simulate_particles`.

    Returns ``(results, names)``: one ``SimResult`` per class (label = position, ready for
    :func:`train_classifier`) and the class names (the densities' names).  Class ``c`` uses the
    seed ``seed + 1000·c`` so the classes' orientations and noise are independent.
    """
    try:
        from ..sim import load_density, simulate_particles
    except ImportError as exc:  # the simulator is developed on another branch
        raise ParameterError(f"particle simulation is not available in this installation ({exc})") from None
    results, names = [], []
    for c, src in enumerate(sources):
        density = src if not isinstance(src, (str, os.PathLike)) else load_density(src, pixel_size=pixel_size)
        res = simulate_particles(density, n_per_class, box=box, pixel_size=pixel_size, snr=snr,
                                 seed=int(seed) + 1000 * c, **sim_kwargs)
        results.append(res)
        names.append(str(getattr(density, "name", None) or getattr(density, "source", None) or f"class{c}"))
    if len(set(names)) != len(names):
        names = [f"{n}#{i}" for i, n in enumerate(names)]
    return results, names
