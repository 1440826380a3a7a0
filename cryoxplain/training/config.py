"""The settings of a training run: :class:`TrainConfig`, shared by every task.

A task (denoising, classification, …) adds its own data and loss; the schedule, optimiser, seed,
device, augmentation, validation split and checkpointing are set here, once, with one set of
checks.  Error messages name the fields (``epochs``, ``batch_size`` …), never command-line flags.
"""
from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields, replace

from ..errors import ParameterError
from ..imaging.augment import AUGMENTATIONS

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "TrainConfig", "parse_config_items"]

#: ``constant``: ``lr`` in every epoch; ``cosine``: ``lr·(1 + cos(π(e−1)/epochs))/2`` in epoch ``e``
LR_SCHEDULES = ("constant", "cosine")
#: optimisers: ``adam`` (``torch.optim.Adam``) and ``adamw`` (decoupled weight decay)
OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (any task).

    Fields
    ------
    epochs : total number of epochs (a resumed run continues up to this many).
    batch_size : samples per optimisation step.
    lr : learning rate (> 0); ``lr_schedule`` one of :data:`LR_SCHEDULES`.
    optimizer, weight_decay, betas : the optimiser (:data:`OPTIMIZERS`) and its settings.
    seed : initialisation, validation split, shuffling and augmentation.  Epoch ``e`` draws its
        shuffling and augmentation from a CPU generator seeded by ``(seed, e)``.
    device : ``auto|cpu|cuda|cuda:N``.
    augment : one of :data:`cryoxplain.imaging.augment.AUGMENTATIONS` (meanings defined there).
    val_fraction : fraction of the samples held out for validation, in ``[0, 1)``.
    crop : train on random ``crop``×``crop`` windows (tasks that support it), or None.
    checkpoint_every : write a checkpoint every this many epochs (and after the last one).
    resume : continue from the checkpoint of the run's output (see :func:`cryoxplain.training.fit`).
    progress : show a progress bar (None: only on a terminal).
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    lr_schedule: str = "constant"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    seed: int = 0
    device: str = "auto"
    augment: str = "none"
    val_fraction: float = 0.1
    crop: int | None = None
    checkpoint_every: int = 1
    resume: bool = False
    progress: bool | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~cryoxplain.errors.ParameterError` for an out-of-range field."""
        from ..checks import check_seed

        check_seed(self.seed)
        if not isinstance(self.epochs, numbers.Integral) or self.epochs < 1:
            raise ParameterError(f"epochs must be ≥ 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ParameterError(f"batch_size must be ≥ 1, got {self.batch_size!r}")
        if not isinstance(self.checkpoint_every, numbers.Integral) or self.checkpoint_every < 1:
            raise ParameterError(f"checkpoint_every must be ≥ 1, got {self.checkpoint_every!r}")
        if not self.lr > 0:
            raise ParameterError(f"lr (learning rate) must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ParameterError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not self.weight_decay >= 0:
            raise ParameterError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if len(tuple(self.betas)) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ParameterError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.augment not in AUGMENTATIONS:
            raise ParameterError(f"unknown augmentation {self.augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
        if not 0 <= self.val_fraction < 1:
            raise ParameterError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.crop is not None and (not isinstance(self.crop, numbers.Integral) or self.crop < 1):
            raise ParameterError(f"crop must be a positive number of pixels or None, got {self.crop!r}")

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` (checked)."""
        return replace(self, **changes)

    @classmethod
    def from_kwargs(cls, config: "TrainConfig | None" = None, **kwargs) -> "TrainConfig":
        """``config`` (or the defaults) updated with the keyword arguments that are not None."""
        names = {f.name for f in fields(cls)}
        unknown = set(kwargs) - names
        if unknown:
            raise ParameterError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in kwargs.items() if v is not None}
        return replace(config, **changes) if config is not None else cls(**changes)

    def settings(self) -> dict:
        """The fields a resumed run must share with its checkpoint (JSON-able).

        ``epochs`` is included only for the cosine schedule (whose shape depends on it);
        ``device``, ``resume``, ``progress`` and ``checkpoint_every`` do not change the result.
        """
        d = asdict(self)
        for k in ("device", "resume", "progress", "checkpoint_every"):
            d.pop(k)
        d["betas"] = list(d["betas"])
        if self.lr_schedule != "cosine":
            d.pop("epochs")
        return d

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (1-based) under ``lr_schedule``."""
        if self.lr_schedule == "cosine":
            import math

            return self.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.lr


def parse_config_items(items) -> dict:
    """``["depth=8", "width=32", "name=x"]`` → ``{"depth": 8, "width": 32, "name": "x"}``.

    Values are read as JSON when they parse (numbers, ``true``, lists …) and kept as strings
    otherwise.  An item without ``=`` raises :class:`~cryoxplain.errors.ParameterError`.
    """
    cfg = {}
    for item in items or ():
        if "=" not in str(item):
            raise ParameterError(f"config items must be KEY=VALUE, got {item!r}")
        k, v = str(item).split("=", 1)
        if not k.strip():
            raise ParameterError(f"config item {item!r} has an empty key")
        try:
            cfg[k.strip()] = json.loads(v)
        except ValueError:
            cfg[k.strip()] = v
    return cfg
