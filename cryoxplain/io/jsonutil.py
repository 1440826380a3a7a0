"""JSON for metadata: the one conversion of numpy values, tuples and paths to plain JSON types
(used by model files, checkpoints, histories, HDF5 attributes and result summaries)."""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["json_default", "jsonable"]


def json_default(o):
    """``default=`` hook for :func:`json.dumps`: numpy scalars/arrays, tuples/sets and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def jsonable(obj):
    """``obj`` with every value turned into plain JSON types (dict keys become strings; NaN kept)."""
    return json.loads(json.dumps(obj, default=json_default, allow_nan=True))
