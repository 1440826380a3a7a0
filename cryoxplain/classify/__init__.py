"""Particle classification: applying a trained classifier (:mod:`~cryoxplain.classify.apply`) and
training one (:mod:`~cryoxplain.classify.train`, on the shared loop :mod:`cryoxplain.training`)."""
from .apply import ClassifyResult, classify_stack

__all__ = ["ClassifierResult", "ClassifyResult", "classify_stack", "simulate_labelled", "train_classifier"]


def __getattr__(name):  # the training side imports the loop (tqdm, h5py); load it only when used
    if name in ("train_classifier", "ClassifierResult", "simulate_labelled"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
