"""Training a particle classifier on particles labelled by their source.

The label of a particle is *where it came from*: one stack per class (e.g. particles simulated
from two structures or conformations with :func:`cryoxplain.sim.simulate_particles`), or one stack
with an integer label per particle (from simulation metadata).  :func:`train_classifier` splits
the particles into a stratified training and validation set (seeded), trains
:class:`cryoxplain.models.classifier.ParticleClassifier` with Adam and cross-entropy on
per-image-normalised particles, and reports the per-epoch loss and accuracy and the final
validation confusion matrix.  The model file's ``training`` metadata records the class names, the
sources, the accuracies, the confusion matrix and the seed.

Augmentations (the same vocabulary as the denoiser training): ``none``, ``rot90``, ``flip``,
``d4`` and ``rotate`` (arbitrary in-plane angle, bilinear, plus a random flip).  Particles of one
structure appear in every in-plane orientation, so ``rotate`` or ``d4`` is usually right.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError, ShapeError

AUGMENTATIONS = ("none", "rot90", "flip", "d4", "rotate")
NORMALIZATION = "per-image (x - mean) / std of the input particle"


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` returns."""

    model: torch.nn.Module
    class_names: list[str]
    history: dict          # column -> per-epoch list: epoch, train_loss, train_accuracy, val_loss, val_accuracy
    val_accuracy: float    # final validation accuracy (nan without validation set)
    train_accuracy: float  # final accuracy on the training set (eval mode)
    confusion: np.ndarray  # (K, K) validation counts, rows = true class, columns = predicted
    model_path: Path | None = None
    config: dict = field(default_factory=dict)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """Per-image ``(x − μ)/σ`` over the last two axes (σ = 0 → 1)."""
    mu = x.mean(dim=(-2, -1), keepdim=True)
    sd = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _as_images(src, what: str) -> tuple[np.ndarray, str]:
    if isinstance(src, (str, os.PathLike)):
        from ..io.mrc import read_mrc

        data, _ = read_mrc(src)
        name = Path(src).stem
    elif hasattr(src, "noisy") and hasattr(src, "params"):  # a cryoxplain.sim SimResult
        data = src.noisy
        p = getattr(src, "params", {}) or {}
        name = str(p.get("source", p.get("density", what)))
    else:
        data, name = src, what
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ShapeError(f"{what}: expected a stack (N, H, W), got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ParameterError(f"{what}: contains NaN or infinite values")
    return data, name


def load_labelled(stacks=None, images=None, labels=None, class_names=None) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Gather ``(images (N, H, W), labels (N,), class_names, sources)``.

    Either ``stacks`` — one stack (path, array or ``SimResult``) per class, the label being the
    stack's position — or ``images`` with integer ``labels``.
    """
    if (stacks is None) == (images is None):
        raise ParameterError("give either one stack per class (stacks; CLI: --class-stack A.mrcs --class-stack B.mrcs) "
                             "or images with integer labels")
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


def augment_batch(x: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    """A random symmetry per image of ``(B, 1, H, W)`` (see the module docstring)."""
    if mode == "none":
        return x
    b = x.shape[0]
    out = x
    if mode in ("rot90", "d4"):
        k = torch.randint(0, 4, (b,), generator=gen)
        out = torch.stack([torch.rot90(img, int(kk), dims=(-2, -1)) for img, kk in zip(out, k)])
    if mode == "rotate":
        ang = torch.rand(b, generator=gen) * 2 * math.pi
        c, s = torch.cos(ang), torch.sin(ang)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = c, -s, s, c
        grid = F.affine_grid(theta.to(out), list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if mode in ("flip", "d4", "rotate"):
        f = torch.rand(b, generator=gen) < 0.5
        out = torch.where(f.to(out.device).view(-1, 1, 1, 1), out.flip(-1), out)
    return out


@torch.no_grad()
def _evaluate(model, x, y, batch_size, device) -> tuple[float, float, np.ndarray]:
    model.eval()
    preds, loss = [], 0.0
    for s in range(0, len(x), batch_size):
        xb = normalize_images(torch.from_numpy(x[s:s + batch_size]).to(device)[:, None])
        yb = torch.from_numpy(y[s:s + batch_size]).to(device)
        out = model(xb)
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
        preds.append(out.argmax(1).cpu().numpy())
    p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return loss / max(len(x), 1), float((p == y).mean()) if len(y) else float("nan"), p


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """``(k, k)`` counts: row = true class, column = predicted class."""
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (true, pred), 1)
    return m


def train_classifier(stacks: Sequence | None = None, *, images=None, labels=None, class_names=None,
                     arch: str | None = "classifier", config: dict | None = None, epochs: int = 10, seed: int = 0,
                     out: str | os.PathLike | None = None, val_fraction: float = 0.2, batch_size: int = 32,
                     lr: float = 1e-3, augment: str = "d4", device: str = "auto", force: bool = False,
                     resume: bool = False, checkpoint_every: int = 1, progress=None,
                     metadata: dict | None = None) -> ClassifierResult:
    """Train a particle classifier and (with ``out``) save it.

    Parameters
    ----------
    stacks : one stack per class (MRC path, array ``(N, H, W)`` or ``cryoxplain.sim.SimResult``);
        the label of a particle is the position of its stack.  Or give ``images`` and ``labels``.
    class_names : names of the classes (default: the stacks' file stems / simulation sources).
    arch, config : a registered ``classify`` architecture (default ``classifier``) and its config;
        ``n_classes`` (and for ``classifier`` the ``image_shape``) are set from the data.
    epochs, batch_size, lr : Adam training schedule.
    seed : initialisation, validation split, shuffling and augmentation.
    val_fraction : fraction of each class held out for validation (stratified).
    augment : one of :data:`AUGMENTATIONS`.
    out, force : model file to write (atomic; refuses to overwrite without ``force``).
    resume, checkpoint_every : accepted for signature compatibility with ``train_denoiser``;
        classifier training is short and does not checkpoint — ``resume=True`` is an error.
    progress : optional callable ``progress(epoch, row)`` called after every epoch with the
        history row (``cryoxplain train`` prints it).
    metadata : extra entries for the model file's ``training`` metadata.
    """
    from ..models.protocol import conforms
    from ..models.registry import architectures, build_model, save_model
    from ..utils import resolve_device, seed_everything

    if resume:
        raise ParameterError("--resume is not supported for classifiers (training is short; start again)")
    arch = arch or "classifier"
    archs = architectures()
    if arch not in archs:
        raise ParameterError(f"unknown architecture {arch!r}; classifiers: "
                             f"{', '.join(a for a, t in archs.items() if t == 'classify')}")
    if archs[arch] != "classify":
        raise ParameterError(f"architecture {arch!r} is a {archs[arch]} model, not a classifier; use --arch classifier")
    if augment not in AUGMENTATIONS:
        raise ParameterError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ParameterError("epochs and batch size must be ≥ 1 and lr > 0")
    if not 0 <= val_fraction < 1:
        raise ParameterError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if out is not None:
        from ..io.atomic import check_output

        check_output(out, force=force, inputs=tuple(s for s in (stacks or ()) if isinstance(s, (str, os.PathLike))))

    x, y, names, sources = load_labelled(stacks, images, labels, class_names)
    k = len(names)
    tr, va = stratified_split(y, val_fraction, seed)
    seed_everything(seed)
    dev = resolve_device(device)
    cfg = dict(config or {})
    cfg["n_classes"] = k
    if arch == "classifier":
        cfg["image_shape"] = list(x.shape[1:])
    model = build_model(arch, **cfg).to(dev)
    if conforms(model):
        cfg = model.config()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # cosine decay of the learning rate over the epochs (settles the decision boundary)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs)))
    gen = torch.Generator().manual_seed(int(seed))
    history = {c: [] for c in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")}
    xtr, ytr, xva, yva = x[tr], y[tr], x[va], y[va]
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(tr), generator=gen).numpy()
        tot, correct = 0.0, 0
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            xb = torch.from_numpy(xtr[idx])[:, None]
            xb = normalize_images(augment_batch(xb, augment, gen)).to(dev)
            yb = torch.from_numpy(ytr[idx]).to(dev)
            out_b = model(xb)
            loss = F.cross_entropy(out_b, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((out_b.argmax(1) == yb).sum())
        sched.step()
        vl, vacc, _ = _evaluate(model, xva, yva, batch_size, dev) if len(va) else (float("nan"), float("nan"), None)
        row = {"epoch": epoch, "train_loss": tot / len(tr), "train_accuracy": correct / len(tr),
               "val_loss": vl, "val_accuracy": vacc, "seconds": time.perf_counter() - t0}
        for c, v in row.items():
            history[c].append(v)
        if progress is not None:
            progress(epoch, row)
    _, train_acc, _ = _evaluate(model, xtr, ytr, batch_size, dev)
    if len(va):
        _, val_acc, pred = _evaluate(model, xva, yva, batch_size, dev)
        conf = confusion_matrix(yva, pred, k)
    else:
        val_acc, conf = float("nan"), np.zeros((k, k), np.int64)
    model.eval()
    result = ClassifierResult(model, names, history, val_acc, train_acc, conf, None, cfg)
    if out is not None:
        training = {
            "task": "classify", "class_names": names, "sources": sources, "seed": seed, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "augment": augment, "val_fraction": val_fraction,
            "n_train": int(len(tr)), "n_val": int(len(va)),
            "n_per_class": [int((y == c).sum()) for c in range(k)],
            "train_accuracy": train_acc, "val_accuracy": None if math.isnan(val_acc) else val_acc,
            "confusion": conf.tolist(), "normalization": NORMALIZATION, "image_shape": list(x.shape[1:]),
            **(metadata or {}),
        }
        result.model_path = save_model(out, model.cpu(), arch, cfg, training=training, force=force)
        model.to(dev)
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
