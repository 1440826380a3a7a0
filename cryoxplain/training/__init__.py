"""The one training loop shared by every task (denoising, classification, …).

* :class:`TrainConfig` — epochs, batch size, learning rate and schedule, optimiser, seed, device,
  augmentation, validation fraction, crop, checkpointing and resume;
* :func:`fit` with a :class:`Task` — epoch steps, evaluation, callbacks, HDF5 history, safetensors
  checkpoints and bit-exact resume (:mod:`~cryoxplain.training.loop`);
* :mod:`~cryoxplain.training.checkpoint` and :mod:`~cryoxplain.training.history` — the files.

The tasks live in :mod:`cryoxplain.denoise.train` and :mod:`cryoxplain.classify.train`.
"""
from .checkpoint import checkpoint_path_for, data_checksum, history_path_for, load_checkpoint
from .config import LR_SCHEDULES, OPTIMIZERS, TrainConfig, parse_config_items
from .history import read_history, write_history
from .loop import Callback, FitResult, Task, epoch_generator, fit, prepare_outputs, seeded_model

__all__ = ["Callback", "FitResult", "LR_SCHEDULES", "OPTIMIZERS", "Task", "TrainConfig",
           "checkpoint_path_for", "data_checksum", "epoch_generator", "fit", "history_path_for", "load_checkpoint",
           "parse_config_items", "prepare_outputs", "read_history", "seeded_model", "write_history"]
