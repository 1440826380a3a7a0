"""HDF5 helpers for metadata and results: self-describing, atomic, no pickles.

A results file holds named datasets (numpy arrays, optionally in groups ``"group/name"``) and a
metadata dict.  The metadata is stored twice on the root group: once as the JSON attribute
``cryoxplain_json`` (exact round trip of nested dicts/lists) and once as plain attributes for every
scalar or string entry, so ``h5dump``/``h5ls -v`` users see it without parsing JSON.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputFileError
from .atomic import atomic_path

JSON_ATTR = "cryoxplain_json"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_h5(path: str | os.PathLike, datasets: dict, attrs: dict | None = None, *, force: bool = False,
             inputs: tuple = (), compression: str | None = "gzip") -> Path:
    """Write ``datasets`` (name → array) and ``attrs`` (JSON-able dict) atomically to ``path``."""
    attrs = _jsonable(dict(attrs or {}))
    with atomic_path(path, force=force, inputs=inputs) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs[JSON_ATTR] = json.dumps(attrs, sort_keys=True)
            for k, v in attrs.items():
                if isinstance(v, (int, float, str, bool)) and v is not None:
                    f.attrs[k] = v
            for name, arr in datasets.items():
                if arr is None:
                    continue
                arr = np.asarray(arr)
                if arr.dtype.kind == "U":
                    f.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
                else:
                    comp = compression if arr.size > 1024 else None
                    f.create_dataset(name, data=arr, compression=comp)
    return Path(path)


def read_h5(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a file written by :func:`write_h5`: ``(datasets, attrs)`` (every dataset in memory)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({' '.join(str(exc).split())})") from None
    data: dict = {}
    with f:
        raw = f.attrs.get(JSON_ATTR)
        attrs = json.loads(raw) if raw is not None else {k: _jsonable(v) for k, v in f.attrs.items()}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                v = obj[()]
                if obj.dtype.kind == "O" or h5py.check_string_dtype(obj.dtype):
                    v = np.array([s.decode() if isinstance(s, bytes) else s for s in np.ravel(v)]).reshape(np.shape(v))
                data[name] = v

        f.visititems(visit)
    return data, attrs
