"""Applying a particle classifier to a stack (library side of ``cryoxplain classify``).

:func:`classify_stack` streams a stack in batches through a classifier model file, normalising
each particle as in training (:func:`cryoxplain.imaging.normalize.normalize_images`), and returns (and optionally writes, atomically, as CSV) the
predicted class, its name and the softmax probability of every class per particle.  With
``true_label`` (all particles of the stack come from one known source) it also reports the
accuracy.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.batch import as_image_stack
from ..imaging.normalize import normalize_images


@dataclass
class ClassifyResult:
    predicted: np.ndarray       # (N,) class indices
    probabilities: np.ndarray   # (N, K) softmax
    class_names: list[str]
    accuracy: float | None = None
    output: Path | None = None

    def counts(self) -> dict[str, int]:
        return {name: int((self.predicted == i).sum()) for i, name in enumerate(self.class_names)}


def classify_stack(model, stack, output: str | os.PathLike | None = None, *, batch_size: int = 64,
                   device: str = "auto", true_label: str | int | None = None, force: bool = False) -> ClassifyResult:
    """Classify every particle of ``stack`` (MRC path or ``(N, H, W)`` array) with a classifier model file."""
    from ..io.atomic import atomic_path, check_output
    from ..io.mrc import open_stack
    from ..models.registry import load_model
    from ..utils import resolve_device

    dev = resolve_device(device)
    from ..io.atomic import input_files

    inputs = input_files(stack, model)  # the stack and the model file
    if output is not None:
        check_output(output, force=force, inputs=inputs)
    net, info = load_model(model, device=dev, task="classify")
    k = int(info.config.get("n_classes", 0)) or None
    names = list(info.training.get("class_names") or [])
    owned = isinstance(stack, (str, os.PathLike))
    if owned:
        images = open_stack(stack)
        batches = images.batches(batch_size)
        shape = images.image_shape
    else:
        arr = as_image_stack(stack, name="stack")
        batches = ((s, arr[s:s + batch_size]) for s in range(0, len(arr), batch_size))
        shape = arr.shape[1:]
    trained = info.training.get("image_shape")
    if trained and tuple(trained) != tuple(shape):
        raise ShapeError(f"the classifier was trained on {trained[1]}×{trained[0]} particles, the stack has "
                         f"{shape[1]}×{shape[0]}; re-extract or rescale the particles")
    probs = []
    try:
        with torch.no_grad():
            for _, b in batches:
                x = normalize_images(torch.from_numpy(np.array(b, dtype=np.float32)).to(dev)[:, None])
                probs.append(torch.softmax(net(x), dim=1).cpu().numpy())
    finally:
        if owned:
            images.close()
    p = np.concatenate(probs)
    k = p.shape[1]
    if len(names) != k:
        names = [f"class{i}" for i in range(k)]
    pred = p.argmax(1)
    acc = None
    if true_label is not None:
        t = str(true_label)
        if t in names:
            idx = names.index(t)
        elif t.isdigit() and int(t) < k:
            idx = int(t)
        else:
            raise ParameterError(f"true label {t!r} is neither a class name ({', '.join(names)}) nor an index 0…{k - 1}")
        acc = float((pred == idx).mean())
    res = ClassifyResult(pred, p, names, acc)
    if output is not None:
        with atomic_path(output, force=force, inputs=inputs) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["index", "predicted", "class_name"] + [f"p_{n}" for n in names])
                for i in range(len(pred)):
                    w.writerow([i, int(pred[i]), names[pred[i]]] + [f"{v:.6g}" for v in p[i]])
        res.output = Path(output)
    return res
