"""Deprecated location, use :mod:`cryoxplain.denoise` / :mod:`cryoxplain.classify` (tasks) and
:mod:`cryoxplain.training` (the loop).  Kept for one release."""
from ..denoise.train import AUGMENTATIONS  # noqa: F401
from ..denoise.train import TrainResult  # noqa: F401
from ..denoise.train import train_denoiser  # noqa: F401
from ..training.history import read_history  # noqa: F401

__all__ = ["AUGMENTATIONS", "TrainResult", "read_history", "train_denoiser"]
