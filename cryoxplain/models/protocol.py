"""The model protocol: what every cryoxplain model offers, written once.

A cryoxplain model is a :class:`torch.nn.Module` that

* maps ``(B, 1, H, W)`` float tensors to ``(B, 1, H, W)`` (``task == "denoise"``) or to
  ``(B, K)`` class logits (``task == "classify"``), on the device and in the dtype of its input;
* says its :attr:`~CryoxplainModel.task`;
* says the image size it accepts, :attr:`~CryoxplainModel.input_shape`: ``None`` (fully
  convolutional, any ``H, W``) or ``(H, W)`` (fixed size; callers refuse other sizes with a
  clear message);
* returns from :meth:`~CryoxplainModel.config` the JSON-serialisable keyword arguments that
  rebuild it (``build_model(arch, **model.config())``), defaults resolved;
* has a one-line :attr:`~CryoxplainModel.description` (:func:`~cryoxplain.models.load_model`
  sets it to ``"arch (file name)"``; it is recorded in the provenance of explanations).

Optional capabilities, each its own protocol:

* :class:`Tileable` – ``receptive_radius`` (int): an output pixel depends only on the input
  pixels within this distance, so micrographs can be denoised in tiles without seams;
* :class:`HasValidDisc` – ``valid_radius`` (float pixels, or None): the model's output is
  defined (a prediction) only inside the disc of this radius about the box centre ``N // 2``
  (the spiral CNN: its mask radius); ``None`` means the whole box.  Metrics window the output
  by a smooth disc inside it (:func:`model_valid_radius`; docs/equivariance.md);
* :class:`HasInferenceForm` – ``for_inference()`` returns a frozen, numerically equivalent module
  that is faster to apply (batch norms folded, …); applying a denoiser uses it.
* ``cpu_pass_pixels`` (int, optional, no protocol class): on CPU, explainers put at most this
  many pixels through the model per forward/backward pass (``cryoxplain.explain.paths.pass_size``,
  read by ``paths.model_pass_pixels``; default ``paths.CPU_PASS_PIXELS``).  Only the grouping of
  path points changes, not the result beyond float rounding.

:class:`ModelBase` supplies the defaults (``input_shape = None``, a settable ``description``).
The ``model_*`` helpers below are the one place that reads these attributes; they also accept
foreign ``nn.Module``\\ s (explainers and metrics take any module), which then count as fully
convolutional models of unknown task.
"""
from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

__all__ = ["TASKS", "CryoxplainModel", "Tileable", "HasInferenceForm", "ModelBase", "conforms",
           "model_task", "model_input_shape", "model_description", "model_receptive_radius",
           "HasValidDisc", "model_valid_radius", "inference_form"]

#: the tasks a model can have
TASKS = ("denoise", "classify")


@runtime_checkable
class CryoxplainModel(Protocol):
    """What every cryoxplain model offers (see the module docstring)."""

    #: ``"denoise"`` or ``"classify"``
    task: str
    #: ``None`` (any size) or the ``(H, W)`` the model accepts
    input_shape: tuple[int, int] | None
    #: one line naming the model (architecture, file)
    description: str

    def config(self) -> dict:
        """The keyword arguments that rebuild this model with ``build_model(arch, **config)``."""
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → ``(B, 1, H, W)`` (denoise) or ``(B, K)`` logits (classify)."""
        ...


@runtime_checkable
class Tileable(Protocol):
    """A fully convolutional model whose output pixel sees only ``receptive_radius`` px of input."""

    receptive_radius: int


@runtime_checkable
class HasValidDisc(Protocol):
    """A model whose output is a prediction only inside the disc of ``valid_radius`` px (None: the box)."""

    valid_radius: float | None


@runtime_checkable
class HasInferenceForm(Protocol):
    """A model with a faster, numerically equivalent frozen form for applying it."""

    def for_inference(self) -> nn.Module:
        ...


class ModelBase(nn.Module):
    """Defaults for :class:`CryoxplainModel`: subclass it, set ``task``, implement ``config()``
    and ``forward()``; set ``self.input_shape = (H, W)`` for a fixed-size model."""

    task: ClassVar[str]
    input_shape: tuple[int, int] | None = None

    @property
    def description(self) -> str:
        return self.__dict__.get("_description") or type(self).__name__

    @description.setter
    def description(self, text: str) -> None:
        self.__dict__["_description"] = str(text)

    def config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} does not implement config()")


def conforms(model) -> bool:
    """True when ``model`` follows :class:`CryoxplainModel` (a task of :data:`TASKS` included)."""
    return isinstance(model, CryoxplainModel) and model.task in TASKS


def model_task(model) -> str | None:
    """The model's task, or None for a foreign module that does not say.

    ``cryoxplain_task``, the attribute foreign modules were asked to set before the protocol
    existed, is still read (deprecated; set ``task``).
    """
    task = getattr(model, "task", None)
    if task in TASKS:
        return task
    return getattr(model, "cryoxplain_task", None)


def model_input_shape(model) -> tuple[int, int] | None:
    """``None`` (any image size) or the ``(H, W)`` the model accepts."""
    shape = getattr(model, "input_shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def model_description(model) -> str:
    """One line naming the model: its ``description``, else its class name ("" for None)."""
    if model is None:
        return ""
    text = getattr(model, "description", None)
    if not isinstance(text, str) or not text:
        text = getattr(model, "cryoxplain_description", None)  # the pre-protocol attribute
    return text if isinstance(text, str) and text else type(model).__name__


def model_receptive_radius(model) -> int | None:
    """The receptive radius in pixels of a :class:`Tileable` model, else None (unknown)."""
    r = getattr(model, "receptive_radius", None)
    return None if r is None else int(r)


def model_valid_radius(model) -> float | None:
    """Radius in pixels of the disc about the box centre on which ``model``'s output is defined
    (:class:`HasValidDisc`), or None: the whole box (cartesian models, foreign modules, callables)."""
    r = getattr(model, "valid_radius", None)
    return None if r is None else float(r)


def inference_form(model: nn.Module) -> nn.Module:
    """``model.for_inference()`` for a :class:`HasInferenceForm` model, else ``model`` itself."""
    fast = getattr(model, "for_inference", None)
    return fast() if callable(fast) else model
