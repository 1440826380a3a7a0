"""Deprecated location: the normalisation lives in :mod:`cryoxplain.imaging.normalize`."""
from ..imaging.normalize import NORMALIZATION, denormalize, image_stats, normalize  # noqa: F401
