"""The explainer template, the :class:`Attribution` result and the SDK's gradient helpers.

An *explainer* is a class with

* ``name`` – the method name used on the command line (``--method NAME``);
* ``reference`` – the paper it implements (shown by ``cryoxplain plugins``);
* ``params`` – a tuple of :class:`Param` declaring every parameter with type, default and help,
  so the CLI can expose them as ``--param key=value``;
* the hook ``_attribute(self, f, inputs, ctx)`` – the method itself (see below).

:meth:`Explainer.attribute` (``attribute(model, inputs, target) -> Attribution``) is a *template
method*; plugins do not override it.  It

1. validates the inputs (:func:`cryoxplain.imaging.batch.as_image_batch`: an image ``(H, W)``, a
   stack ``(B, H, W)`` or a batch ``(B, 1, H, W)``, finite) and the model's fixed input size;
2. binds the target: a CLI string (``"class:3"``) or a :class:`Target` → the :class:`Target`
   resolved for this batch (e.g. *predicted class* fixed to the class predicted for each input);
3. builds the explained function ``f(x) = target(model(x))`` (:func:`explained_function`);
4. seeds: image ``i`` of the batch gets its own generator seeded with
   ``image_seed(seed, index_offset + i)`` (``ctx.generators()``), so results depend neither on
   batching nor on the other images;
5. calls the hook, which returns the maps ``(B, H, W)`` (or ``(B, 1, H, W)``), optionally with a
   dict of extras ``(maps, extras)``;
6. validates the :class:`Attribution` (shape, finite values) and records the provenance.

Conventions shared by every explainer (docs/plugins.md):

* ``inputs`` is a float tensor ``(B, 1, H, W)`` already on the model's device; the explainer
  works in batches and never moves the model.
* ``f(x) -> (B,)``: one value per image; ``f(x, idx)`` for mixed chunks (row ``j`` belongs to
  image ``idx[j]``).
* The model is in eval mode; images in a batch are explained independently.
* Sign convention: a positive attribution means that increasing the pixel (or moving it from the
  baseline towards the input, for path methods) increases ``f``.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..errors import ParameterError, PluginError, ShapeError
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


def batched_gradients(f: Callable[..., torch.Tensor], points: torch.Tensor, idx: torch.Tensor,
                      internal_batch_size: int) -> torch.Tensor:
    """∇f at ``points`` ``(N, 1, H, W)`` whose row ``j`` belongs to image ``idx[j]`` of the bound
    batch, at most ``internal_batch_size`` points per forward/backward pass."""
    out = torch.empty_like(points)
    for i in range(0, points.shape[0], internal_batch_size):
        sl = slice(i, i + internal_batch_size)
        ii = idx[sl]
        _, out[sl] = gradient(lambda z: f(z, ii), points[sl])
    return out


@torch.no_grad()
def batched_values(f: Callable[..., torch.Tensor], x: torch.Tensor, internal_batch_size: int) -> torch.Tensor:
    """``f`` on the images ``x`` of the bound batch (row ``i`` is image ``i``), ``(B,)``, at most
    ``internal_batch_size`` images per forward pass."""
    idx = torch.arange(x.shape[0], device=x.device)
    return torch.cat([f(x[i:i + internal_batch_size], idx[i:i + internal_batch_size]).detach()
                      for i in range(0, x.shape[0], internal_batch_size)])


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
        """Write into an open h5py group (datasets created on first call, filled from ``start``);
        the writing is :func:`cryoxplain.io.hdf5.write_attribution`."""
        from ..io.hdf5 import write_attribution

        write_attribution(group, self.maps, self.extras, self.provenance, start)

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


class Explainer:
    """Base class of explainer plugins (see the module docstring for the protocol)."""

    name: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    api_version: ClassVar[int] = API_VERSION
    params: ClassVar[tuple[Param, ...]] = ()
    #: old parameter name → new name; an old name is accepted with a DeprecationWarning
    renamed: ClassVar[dict[str, str]] = {}
    #: True when the method satisfies completeness, ``Σ maps = f(x) − f(baseline)`` (it then
    #: returns ``extras["completeness_gap"]``); checked by :func:`cryoxplain.testing.check_explainer`
    completeness: ClassVar[bool] = False
    #: False when an image's map depends on the other images of the batch (a plugin may make it a
    #: property of its parameters); checked by :func:`cryoxplain.testing.check_explainer`
    batch_independent: ClassVar[bool] = True
    #: global index (in the stack) of the first image of the batch being explained; set by
    #: :func:`cryoxplain.explain.explain_stack` before each ``attribute`` call.  Explainers that
    #: draw random numbers seed them per image from ``(seed, index_offset + i)`` so that results do
    #: not depend on how a stack is split into batches.
    index_offset: int = 0

    def __init__(self, **kwargs):
        declared = {p.name: p for p in self.params}
        for old, new in self.renamed.items():
            if old in kwargs:
                warnings.warn(f"{self.name}: parameter {old!r} is deprecated, use {new!r}", DeprecationWarning,
                              stacklevel=3)
                if new in kwargs:
                    raise ParameterError(f"{self.name}: give {new!r} only (the deprecated {old!r} is the same parameter)")
                kwargs[new] = kwargs.pop(old)
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

    def attribute(self, model: torch.nn.Module, inputs, target, *, index_offset: int | None = None) -> Attribution:
        """Explain ``f(x) = target(model(x))`` on every image of ``inputs`` (the template method).

        ``inputs``: an image ``(H, W)``, a stack ``(B, H, W)`` or a batch ``(B, 1, H, W)`` (tensor or
        array) on the model's device.  ``target``: a :class:`Target` or a target string
        (``"predicted"``, ``"class:1"``, ``"pixel:X,Y"``, … see docs/targets.md).  ``index_offset``:
        stack index of the first image (seeds the per-image random streams; default
        ``self.index_offset``).  Plugins implement :meth:`_attribute`, not this method.
        """
        x = check_inputs(model, inputs).detach()
        target = bind_target(target, model, x)
        f = explained_function(model, target)
        off = self.index_offset if index_offset is None else int(index_offset)
        from ..checks import check_seed

        ctx = ExplainContext(model=model, target=target, seed=check_seed(self.config.get("seed", 0) or 0),
                             index_offset=off)
        from .paths import model_pass_pixels

        with model_pass_pixels(model):
            out = self._attribute(f, x, ctx)
        if isinstance(out, Attribution):
            att = out
        else:
            maps, extras = out if isinstance(out, tuple) else (out, {})
            att = self.make_attribution(maps, target, model, **extras)
        return validate_attribution(att, x, self.name)

    def _attribute(self, f: Callable[..., torch.Tensor], inputs: torch.Tensor, ctx: "ExplainContext"):
        """The method: return the maps ``(B, H, W)`` of ``inputs`` ``(B, 1, H, W)``, or
        ``(maps, extras)``.  ``f`` is the explained function; ``ctx`` holds the model, the bound
        target and the per-image random generators (:class:`ExplainContext`)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _attribute nor attribute")

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


def check_inputs(model: torch.nn.Module, inputs) -> torch.Tensor:
    """The checks every explanation runs first; returns the batch ``(B, 1, H, W)``.

    :func:`cryoxplain.imaging.batch.as_image_batch` (an image, a stack or a batch; finite) and the
    model's fixed input size (``model.input_shape``, when it has one).  A numpy array is converted
    to the dtype and device of the model's parameters.
    """
    from ..imaging.batch import as_image_batch

    dtype = device = None
    if not isinstance(inputs, torch.Tensor):  # an array: in the model's precision, on its device
        p = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
        dtype, device = (p.dtype, p.device) if p is not None else (torch.float32, None)
    x = as_image_batch(inputs, name="inputs", dtype=dtype, device=device)
    check_input_size(model, tuple(x.shape[-2:]))
    return x


def check_input_size(model: torch.nn.Module, image_shape: tuple[int, int], what: str = "images") -> None:
    """:class:`ShapeError` unless a model with a fixed input size (``model.input_shape``) accepts
    ``(H, W)`` images."""
    fixed = model_input_shape(model)
    h, w = image_shape
    if fixed is not None and tuple(fixed) != (h, w):
        hint = "; re-extract or rescale the particles" if what == "particles" else ""
        raise ShapeError(f"the model expects {fixed[1]}×{fixed[0]} {what}, got {w}×{h}{hint}")


def bind_target(target, model: torch.nn.Module, inputs: torch.Tensor) -> Target:
    """``target`` (a :class:`Target` or a target string) resolved for this batch of ``inputs``.

    A string is parsed (:func:`cryoxplain.explain.targets.parse_target`) and checked against the
    model's output shape; then :meth:`Target.bind` fixes input-dependent targets (e.g. the
    predicted class) before anything is perturbed.
    """
    if isinstance(target, str):
        from .targets import parse_target

        target = parse_target(target, tuple(inputs.shape[-2:]))
        target.check(_output_shape(model, inputs))
    if not isinstance(target, Target):
        if callable(target):
            target = Target.from_callable(target)
        else:
            raise ParameterError(f"target must be a Target or a target string, got {type(target).__name__}")
    return target.bind(model, inputs)


#: model → {(C, H, W, dtype, device): output shape of one image}: the shape check of a target string
#: costs one forward pass per model and input size, not one per ``attribute()`` call
_OUTPUT_SHAPES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _output_shape(model: torch.nn.Module, inputs: torch.Tensor) -> tuple:
    """Shape of ``model``'s output for one image of ``inputs`` (one forward pass the first time for
    this model and input size and type, remembered for the model's lifetime after that)."""
    key = (tuple(inputs.shape[1:]), inputs.dtype, str(inputs.device))
    try:
        known = _OUTPUT_SHAPES.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no memory
        known = {}
    if key not in known:
        with torch.no_grad():
            known[key] = tuple(model(inputs[:1]).shape)
    return known[key]


@dataclass
class ExplainContext:
    """What :meth:`Explainer._attribute` gets besides ``f`` and the inputs."""

    model: torch.nn.Module
    #: the target bound to this batch
    target: Target
    #: the explainer's ``seed`` parameter (0 when it declares none)
    seed: int = 0
    #: stack index of the batch's first image
    index_offset: int = 0

    def generators(self, inputs: torch.Tensor) -> list[torch.Generator]:
        """One generator per image, seeded with ``image_seed(seed, index_offset + i)`` — the one
        seeding rule of cryoxplain's explainers."""
        return [torch.Generator(device=inputs.device).manual_seed(image_seed(self.seed, self.index_offset + i))
                for i in range(inputs.shape[0])]


def validate_attribution(att: Attribution, inputs: torch.Tensor, method: str = "") -> Attribution:
    """Check that ``att`` explains ``inputs``: maps ``(B, H, W)`` of the inputs' size, finite values."""
    b, _, h, w = inputs.shape
    if att.maps.shape != (b, h, w):
        raise PluginError(f"explainer {method or att.method} returned maps {att.maps.shape}, expected {(b, h, w)}")
    if not np.isfinite(att.maps).all():
        raise ParameterError(f"explainer {method or att.method} produced NaN/infinite attributions; "
                             "check the inputs and the parameters")
    return att
