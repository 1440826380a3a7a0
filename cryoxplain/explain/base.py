"""The explainer protocol and the :class:`Attribution` result.

An *explainer* is a class with

* ``name`` – the method name used on the command line (``--method NAME``);
* ``reference`` – the paper it implements (shown by ``cryoxplain plugins``);
* ``params`` – a tuple of :class:`Param` declaring every parameter with type, default and help,
  so the CLI can expose them as ``--param key=value``;
* ``attribute(model, inputs, target) -> Attribution``.

Conventions shared by every explainer:

* ``inputs`` is a float tensor ``(B, 1, H, W)`` already on the model's device; the explainer
  works in batches and never moves the model.
* ``target`` is a :class:`Target`: a scalar function of the model output, one value per image
  (``target(output) -> (B,)``).  The *explained function* is ``f(x) = target(model(x))``.
* The model is in eval mode; images in a batch are explained independently.
* Sign convention: a positive attribution means that increasing the pixel (or moving it from the
  baseline towards the input, for path methods) increases ``f``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..errors import ParameterError, PluginError
from ..models.protocol import model_description, model_input_shape

API_VERSION = 1


@dataclass(frozen=True)
class Param:
    """Declaration of one explainer parameter."""

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None

    def parse(self, value: Any) -> Any:
        """Convert a CLI string (or a Python value) to this parameter's type and check it."""
        try:
            if self.type is bool and isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                v = low in ("1", "true", "yes", "on")
            elif value is None:
                v = None
            else:
                v = self.type(value)
        except (TypeError, ValueError):
            raise ParameterError(f"parameter {self.name}: {value!r} is not a valid {self.type.__name__}") from None
        if v is None:
            return v
        if isinstance(v, float) and not np.isfinite(v):
            raise ParameterError(f"parameter {self.name}: {value!r} is not a finite number")
        if self.choices is not None and v not in self.choices:
            raise ParameterError(f"parameter {self.name}: {v!r} is not one of {', '.join(map(str, self.choices))}")
        if self.min is not None and v < self.min:
            raise ParameterError(f"parameter {self.name}: {v} is below the minimum {self.min}")
        if self.max is not None and v > self.max:
            raise ParameterError(f"parameter {self.name}: {v} is above the maximum {self.max}")
        return v


class Target:
    """A scalar function of the model's output, one value per image.

    Subclasses implement :meth:`__call__` (``output -> (B,)``) and :meth:`describe`.
    ``Target.from_callable(fn, description)`` wraps a plain function.
    """

    def __call__(self, output: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def check(self, output_shape: tuple) -> None:
        """Raise :class:`ParameterError` when the target does not fit an output of this shape."""

    def bind(self, model: torch.nn.Module, inputs: torch.Tensor) -> "Target":
        """The target resolved for this batch of inputs (e.g. *predicted class* → the class of each
        input).  Explainers call this once per batch before perturbing the inputs, so a target that
        depends on the model's answer stays fixed along a path or under noise.  Default: ``self``.
        """
        return self

    def select(self, idx: torch.Tensor) -> "Target":
        """The target for the images ``idx`` (a long tensor) of the bound batch, in that order —
        needed when path points of different images are evaluated together.  Targets that treat
        every image the same return ``self`` (the default)."""
        return self

    @staticmethod
    def from_callable(fn: Callable[[torch.Tensor], torch.Tensor], description: str = "custom") -> "Target":
        return _CallableTarget(fn, description)


class _CallableTarget(Target):
    def __init__(self, fn, description):
        self.fn, self.description = fn, description

    def __call__(self, output):
        return self.fn(output)

    def describe(self):
        return self.description


def explained_function(model: torch.nn.Module, target: Target) -> Callable[..., torch.Tensor]:
    """``f(x) = target(model(x))``: ``(B, 1, H, W) -> (B,)``.

    The returned function also accepts ``f(x, idx)``: row ``j`` of ``x`` then belongs to image
    ``idx[j]`` of the batch the target was bound to (``target.select(idx)`` is used), which is how
    :func:`cryoxplain.explain.paths.integrate_path` evaluates mixed chunks of path points.
    """

    def f(x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        t = target if idx is None else target.select(idx)
        out = t(model(x))
        if out.ndim != 1 or out.shape[0] != x.shape[0]:
            raise PluginError(f"target {target.describe()} returned shape {tuple(out.shape)}, expected ({x.shape[0]},)")
        return out

    return f


def gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(f(x), ∂f/∂x)`` for a batch; images are independent so one backward pass suffices."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = f(x)
        (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g.detach()


@dataclass
class Attribution:
    """An explanation of a batch: one map per input image plus method-specific extras.

    ``maps`` is ``(B, H, W)`` float32.  ``extras`` maps names to arrays (first axis = batch) or
    scalars, e.g. BlurIG's per-scale attribution or an ablation path.  ``provenance`` records
    method, parameters, model and target so a result file describes itself.
    """

    maps: np.ndarray
    method: str
    params: dict
    target: str = ""
    model: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        m = self.maps
        if isinstance(m, torch.Tensor):
            m = m.detach().cpu().numpy()
        m = np.asarray(m, dtype=np.float32)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3:
            raise ValueError(f"attribution maps must be (B, H, W), got {m.shape}")
        self.maps = m
        self.extras = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
                       for k, v in self.extras.items()}

    @property
    def provenance(self) -> dict:
        return {"method": self.method, "params": self.params, "target": self.target, "model": self.model}

    def to_hdf5(self, group, start: int = 0) -> None:
        """Write into an open h5py group (datasets created on first call, filled from ``start``)."""
        _write_batch(group, "maps", self.maps, start)
        for k, v in self.extras.items():
            arr = np.asarray(v)
            if arr.ndim >= 1 and arr.shape[0] == self.maps.shape[0]:
                _write_batch(group.require_group("extras"), k, arr, start)
            elif start == 0:
                group.require_group("extras").attrs[k] = arr
        if start == 0:
            group.attrs["provenance"] = json.dumps(self.provenance, default=str)
            group.attrs["method"] = self.method

    @staticmethod
    def concatenate(parts: list["Attribution"]) -> "Attribution":
        first = parts[0]
        extras = {}
        for k in first.extras:
            vals = [p.extras[k] for p in parts]
            arr0 = np.asarray(vals[0])
            extras[k] = (np.concatenate([np.asarray(v) for v in vals])
                         if arr0.ndim >= 1 and arr0.shape[0] == first.maps.shape[0] else vals[0])
        return Attribution(np.concatenate([p.maps for p in parts]), first.method, first.params,
                           first.target, first.model, extras)


def _write_batch(group, name: str, arr: np.ndarray, start: int) -> None:
    arr = np.asarray(arr)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if name not in group:
        group.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:], chunks=True)
        return
    ds = group[name]
    ds.resize(start + arr.shape[0], axis=0)
    ds[start:start + arr.shape[0]] = arr


class Explainer:
    """Base class of explainer plugins (see the module docstring for the protocol)."""

    name: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    api_version: ClassVar[int] = API_VERSION
    params: ClassVar[tuple[Param, ...]] = ()
    #: global index (in the stack) of the first image of the batch being explained; set by
    #: :func:`cryoxplain.explain.explain_stack` before each ``attribute`` call.  Explainers that
    #: draw random numbers seed them per image from ``(seed, index_offset + i)`` so that results do
    #: not depend on how a stack is split into batches.
    index_offset: int = 0

    def __init__(self, **kwargs):
        declared = {p.name: p for p in self.params}
        unknown = set(kwargs) - set(declared)
        if unknown:
            known = ", ".join(declared) or "none"
            raise ParameterError(f"{self.name}: unknown parameter(s) {', '.join(sorted(unknown))}; known: {known}")
        self.config = {n: (p.parse(kwargs[n]) if n in kwargs else p.default) for n, p in declared.items()}
        self.validate()

    def validate(self) -> None:
        """Check cross-parameter constraints; raise :class:`ParameterError`."""

    def __getattr__(self, item):
        cfg = self.__dict__.get("config")
        if cfg is not None and item in cfg:
            return cfg[item]
        raise AttributeError(item)

    def attribute(self, model: torch.nn.Module, inputs: torch.Tensor, target: Target) -> Attribution:
        raise NotImplementedError

    def make_attribution(self, maps, target: Target, model=None, **extras) -> Attribution:
        """Helper for subclasses: wrap maps and extras with full provenance."""
        return Attribution(maps=maps, method=self.name, params=dict(self.config), target=target.describe(),
                           model=model_description(model),
                           extras=extras)


def image_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for image ``index`` of a stack explained with ``seed``.

    ``torch.Generator().manual_seed(image_seed(seed, i))`` gives every image its own reproducible
    random stream, independent of batching and of the other images.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def check_inputs(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """The checks every explainer runs first: ``(B, 1, H, W)``, finite, the model's input size."""
    from ..errors import ShapeError

    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or inputs.shape[1] != 1:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ShapeError(f"inputs must be a (B, 1, H, W) tensor, got {shape}")
    if not torch.isfinite(inputs).all():
        raise ParameterError("inputs contain NaN or infinite values")
    fixed = model_input_shape(model)
    if fixed is not None and tuple(fixed) != tuple(inputs.shape[-2:]):
        raise ShapeError(f"the model expects {fixed[1]}×{fixed[0]} images, got {inputs.shape[-1]}×{inputs.shape[-2]}")
