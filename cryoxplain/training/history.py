"""The per-epoch history of a training run, kept as columns and written as HDF5.

One dataset per column (``float64``, one value per row; row 0 is epoch 0, measured before
training), written with :func:`cryoxplain.io.hdf5.write_h5`; the root attributes hold the column
order (``columns``) and the run's settings and normalisation.
"""
from __future__ import annotations

import contextlib
import math
import os

import numpy as np

from ..io.hdf5 import read_h5, write_h5

__all__ = ["add_row", "discard_unresumable_history", "read_history", "write_history"]


def add_row(history: dict, row: dict) -> None:
    """Append ``row`` (column → number) to ``history`` (column → list); a new column is NaN in
    earlier rows, a missing one NaN in this row."""
    n_before = len(next(iter(history.values()), []))
    for k in row:
        if k not in history:
            history[k] = [math.nan] * n_before
    for k in history:
        history[k].append(float(row.get(k, math.nan)))


def write_history(path: str | os.PathLike, history: dict, attrs: dict | None = None) -> None:
    """Write (replace) the history file atomically."""
    from ..io.jsonutil import jsonable

    datasets = {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}
    write_h5(path, datasets, jsonable({**(attrs or {}), "columns": list(history)}), force=True, compression=None)


def read_history(path: str | os.PathLike) -> dict:
    """Read a history file: ``{column: ndarray}`` plus ``"attrs"`` (the metadata dict)."""
    data, attrs = read_h5(path)
    cols = attrs.get("columns") or list(data)
    out = {c: data[c] for c in cols}
    out["attrs"] = attrs
    return out


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except (OSError, TypeError):
        return None


@contextlib.contextmanager
def discard_unresumable_history(history_path, checkpoint_path):
    """Around a training run: if it fails before writing a checkpoint (a full disk, an error in
    the first epoch), remove the history file it wrote, so a failed run leaves nothing behind; a
    run that checkpointed keeps its history for ``resume``."""
    hist0, ckpt0 = _mtime(history_path), _mtime(checkpoint_path)
    try:
        yield
    except BaseException:
        if history_path is not None and _mtime(checkpoint_path) in (None, ckpt0) and _mtime(history_path) != hist0:
            with contextlib.suppress(OSError):
                os.unlink(history_path)
        raise
