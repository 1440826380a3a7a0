"""Small shared helpers: device selection and seeding."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

from .errors import DeviceError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` into a :class:`torch.device`.

    ``auto`` takes the first GPU when CUDA is available and the CPU otherwise.  Asking for
    ``cuda`` explicitly when no GPU is visible is an error (never a silent CPU fallback).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={spec} was requested but no CUDA GPU is available; use device=cpu or device=auto")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible (indices 0..{torch.cuda.device_count() - 1})"
            )
        return dev
    raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")


#: the largest seed accepted everywhere (torch and numpy take 0 … 2**63 − 1 in every use we make)
MAX_SEED = 2 ** 63 - 1


def check_seed(seed, name: str = "seed") -> int:
    """The one seed validator: an integer in ``0 … 2**63 − 1`` (what numpy's and torch's generators
    accept), returned as ``int``; anything else raises :class:`~cryoxplain.errors.ParameterError`."""
    from .errors import ParameterError

    if isinstance(seed, bool):
        raise ParameterError(f"{name} must be a whole number from 0 to 2**63-1, got {seed!r}")
    if not isinstance(seed, (int, np.integer)):
        try:
            as_float = float(seed)
        except (TypeError, ValueError):
            as_float = None
        if as_float is None or not as_float.is_integer():
            raise ParameterError(f"{name} must be a whole number from 0 to 2**63-1, got {seed!r}")
        seed = int(as_float)
    if not 0 <= int(seed) <= MAX_SEED:
        raise ParameterError(f"{name} must be a whole number from 0 to 2**63-1 ({MAX_SEED}), got {int(seed)}")
    return int(seed)


def check_pixel_size(value, name: str = "pixel_size") -> float | None:
    """The one pixel-size validator: ``None`` (unknown: use the file header) or a finite number of
    Å/px > 0, returned as float.  0, negative, NaN and Inf raise
    :class:`~cryoxplain.errors.ParameterError` (a header voxel size of 0 is read as ``None`` by
    :func:`cryoxplain.io.mrc.sniff`; an explicit 0 is never taken to mean "use the header")."""
    from .errors import ParameterError

    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not (math.isfinite(v) and v > 0):
        raise ParameterError(f"pixel size must be a finite number of Å/px > 0, got {value!r} "
                             f"(give {name}=... or leave it out to use the file header)")
    return v


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy Generator for explicit use."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return np.random.default_rng(seed)
