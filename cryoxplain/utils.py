"""Small shared helpers: device selection and seeding."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .checks import MAX_SEED, check_pixel_size, check_seed  # noqa: F401  (re-exported; home: checks.py)
from .errors import DeviceError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N`` (or Topaz's ``N`` / ``-1`` for GPU N / the CPU) into a :class:`torch.device`.

    ``auto`` takes the first GPU when CUDA is available and the CPU otherwise.  Asking for
    ``cuda`` explicitly when no GPU is visible is an error (never a silent CPU fallback).
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec.lstrip("-").isdigit():  # Topaz's -d N (GPU N) and -d -1 (CPU)
        spec = "cpu" if int(spec) < 0 else f"cuda:{int(spec)}"
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


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy Generator for explicit use."""
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return np.random.default_rng(seed)
