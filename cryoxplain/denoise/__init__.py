"""Denoising: applying a trained denoiser (:mod:`~cryoxplain.denoise.apply`) and training one
(:mod:`~cryoxplain.denoise.train`, on the shared loop :mod:`cryoxplain.training`)."""
from .apply import (DEFAULT_PATCH, FORMATS, Denoiser, denoise_file, denoise_files, denoise_micrograph, denoise_stack,
                    plan_outputs)

__all__ = ["DEFAULT_PATCH", "Denoiser", "FORMATS", "TrainResult", "denoise_file", "denoise_files",
           "denoise_micrograph", "denoise_stack", "plan_outputs", "train_denoiser"]


def __getattr__(name):  # the training side imports the loop (tqdm, h5py); load it only when used
    if name in ("train_denoiser", "TrainResult"):
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
