"""Validators of values that many commands take (seeds, pixel sizes): one home each, importing
only numpy, so the I/O modules can use them without loading torch."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_SEED", "check_pixel_size", "check_seed"]


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
