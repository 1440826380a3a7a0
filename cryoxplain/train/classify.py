"""Deprecated location, use :mod:`cryoxplain.classify.train` (and :mod:`cryoxplain.training`)."""
from ..classify.train import AUGMENTATIONS  # noqa: F401
from ..classify.train import ClassifierResult  # noqa: F401
from ..classify.train import confusion_matrix  # noqa: F401
from ..classify.train import load_labelled  # noqa: F401
from ..classify.train import simulate_labelled  # noqa: F401
from ..classify.train import stratified_split  # noqa: F401
from ..classify.train import train_classifier  # noqa: F401
from ..imaging.normalize import NORMALIZATION  # noqa: F401
from ..imaging.normalize import normalize_images  # noqa: F401


def augment_batch(x, mode, gen):
    """Deprecated: use ``cryoxplain.imaging.augment.random_symmetry(x, mode, gen)``."""
    from ..imaging.augment import random_symmetry

    return random_symmetry(x, mode, gen)
