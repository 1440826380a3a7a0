"""Training loops: denoisers (any registered ``denoise`` architecture) with history and checkpoints."""
from .denoise import AUGMENTATIONS, TrainResult, read_history, train_denoiser

__all__ = ["AUGMENTATIONS", "TrainResult", "read_history", "train_denoiser"]
