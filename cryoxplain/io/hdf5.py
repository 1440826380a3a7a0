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
from .atomic import atomic_path, release_headroom, reserve_headroom

JSON_ATTR = "cryoxplain_json"


def _jsonable(obj):
    from .jsonutil import jsonable

    return jsonable(obj)


def write_h5(path: str | os.PathLike, datasets: dict, attrs: dict | None = None, *, force: bool = False,
             inputs: tuple = (), compression: str | None = "gzip", group_attrs: dict | None = None) -> Path:
    """Write ``datasets`` (name → array) and ``attrs`` (JSON-able dict) atomically to ``path``.

    Dataset names may contain ``/`` (``"exp/model/loss"``): the groups are created.  ``group_attrs``
    maps a group path to attributes set on that group (values h5py can store: numbers, strings).
    """
    attrs = _jsonable(dict(attrs or {}))
    size = _headroom(sum(np.asarray(a).nbytes for a in datasets.values() if a is not None))
    with atomic_path(path, force=force, inputs=inputs, size=size) as tmp:
        with h5py.File(tmp, "w") as f:
            reserve_headroom(tmp, size, final=path)  # libhdf5 must never meet a full disk
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
            for group, gattrs in (group_attrs or {}).items():
                g = f.require_group(group)
                for k, v in gattrs.items():
                    g.attrs[k] = v
        release_headroom(tmp)
    return Path(path)


def _headroom(nbytes: int) -> int:
    """Bytes to reserve for an HDF5 file of ``nbytes`` of data: +25 % and 1 MiB for its structures."""
    return int(nbytes * 1.25) + 1024 * 1024


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


# ------------------------------------------------------------------------------ streamed results
def append_rows(group, name: str, arr, start: int) -> None:
    """Write ``arr`` (first axis = images) into dataset ``name`` of an open h5py ``group`` at rows
    ``start …``: created resizable on first use, grown as needed.  float64 is stored as float32."""
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if name not in group:
        group.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:], chunks=True)
        return
    ds = group[name]
    ds.resize(start + arr.shape[0], axis=0)
    ds[start:start + arr.shape[0]] = arr


def write_attribution(group, maps: np.ndarray, extras: dict, provenance: dict, start: int = 0) -> None:
    """One batch of attribution maps ``(B, H, W)`` and extras into an open h5py ``group``.

    Layout: ``maps`` (N, H, W) float32; ``extras/NAME`` for arrays whose first axis is the batch;
    other extras (scalars, shared arrays) as attributes of ``extras`` (written with the first batch);
    ``provenance`` (JSON) and ``method`` attributes of ``group``.
    """
    b = np.asarray(maps).shape[0]
    append_rows(group, "maps", maps, start)
    for k, v in extras.items():
        arr = np.asarray(v)
        if arr.ndim >= 1 and arr.shape[0] == b:
            append_rows(group.require_group("extras"), k, arr, start)
        elif start == 0:
            group.require_group("extras").attrs[k] = arr
    if start == 0:
        group.attrs["provenance"] = json.dumps(_jsonable(provenance), default=str)
        group.attrs["method"] = provenance.get("method", "")


class StreamingH5:
    """An HDF5 file written in pieces and published atomically: ``with StreamingH5(path) as f:``
    yields an open ``h5py.File`` on a temporary sibling, renamed onto ``path`` when the block
    succeeds (deleted on error).  ``attrs`` are written first: dicts/lists/None as JSON strings."""

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None, *, force: bool = False, inputs: tuple = (),
                 size: int | None = None):
        self.path, self.attrs, self.force, self.inputs = Path(path), dict(attrs or {}), force, inputs
        # expected bytes: checked against the free space, and reserved with headroom (+25 % + 1 MiB for
        # HDF5's own structures) so that libhdf5 never meets a full disk mid-write
        self.size = None if not size else _headroom(size)

    def __enter__(self) -> h5py.File:
        self._ctx = atomic_path(self.path, force=self.force, inputs=self.inputs, size=self.size)
        tmp = self._tmp = self._ctx.__enter__()
        try:
            self._file = h5py.File(tmp, "w")
            if self.size:
                reserve_headroom(tmp, self.size, final=self.path)
            for k, v in self.attrs.items():
                self._file.attrs[k] = (json.dumps(_jsonable(v), default=str)
                                       if isinstance(v, (dict, list, tuple)) or v is None else v)
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self._file

    def __exit__(self, *exc):
        try:
            self._file.close()
        except Exception as err:  # e.g. a full disk met while flushing
            if exc[0] is None:
                return self._ctx.__exit__(type(err), err, err.__traceback__)
        if self.size:
            release_headroom(self._tmp)
        return self._ctx.__exit__(*exc)
