"""Deprecated location, use :mod:`cryoxplain.denoise.train` (and :mod:`cryoxplain.training`)."""
from ..denoise.train import AUGMENTATIONS  # noqa: F401
from ..denoise.train import TrainResult  # noqa: F401
from ..denoise.train import train_denoiser  # noqa: F401
from ..imaging.normalize import NORMALIZATION  # noqa: F401
from ..training.checkpoint import checkpoint_path_for  # noqa: F401
from ..training.checkpoint import history_path_for  # noqa: F401
from ..training.checkpoint import load_checkpoint  # noqa: F401
from ..training.history import read_history  # noqa: F401


def augment_pair(x, y, mode, gen):
    """Deprecated: use ``cryoxplain.imaging.augment.random_symmetry([x, y], mode, gen)``."""
    from ..imaging.augment import random_symmetry

    return tuple(random_symmetry([x, y], mode, gen))
