"""Architecture registry and the model file format.

Architectures are found **only** through the entry-point group ``cryoxplain.architectures``; each
entry point names an :class:`ArchitectureSpec`.  The built-in ones (``cartesian``, ``spiral``,
``classifier``) are declared in cryoxplain's ``pyproject.toml`` exactly as a third party declares
its own.  Entry points are read once and loaded one at a time when first needed; one that fails to
load is listed with its error by :func:`list_architectures` instead of breaking the others.
:func:`register_architecture` adds a spec in the running interpreter (tests, interactive use).

A model file is a `safetensors <https://github.com/huggingface/safetensors>`_ file: the tensors of
the ``state_dict`` plus one metadata entry ``"cryoxplain"`` holding JSON with

* ``arch``     – registered architecture name (``cartesian``, ``spiral``, ``classifier`` …)
* ``task``     – ``denoise`` or ``classify``
* ``config``   – the keyword arguments that rebuild the network with :func:`build_model`
* ``training`` – free-form training metadata (data, epochs, seed, metrics …)
* ``version``  – the cryoxplain version that wrote it
* ``format``   – file-format version (currently 1)

Loading parses JSON and raw tensors only; it can never execute code from the file.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from ..errors import ModelFileError, ParameterError
from ..io.atomic import atomic_path
from .protocol import TASKS

FORMAT_VERSION = 1

#: the entry-point group architectures are discovered through (built-ins included)
GROUP = "cryoxplain.architectures"

#: where shipped models live inside the package; `load_model("default")` looks here
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"


@dataclass(frozen=True)
class ArchitectureSpec:
    """What an entry point of the group ``cryoxplain.architectures`` names: one architecture.

    Parameters
    ----------
    name : str
        The architecture name written into model files (``arch``) and given to ``--arch``; must
        equal the entry-point name.
    task : ``"denoise"`` or ``"classify"``
        What the models do (decides the default target, normalisation and the commands that accept
        them).
    factory : callable
        ``factory(**config) -> nn.Module``; the module should follow
        :class:`cryoxplain.models.protocol.CryoxplainModel` (``config()`` returns the keyword
        arguments that rebuild it).
    legacy_defaults : mapping
        Values for config keys that were added after model files of this architecture were first
        written.  A model file whose config lacks such a key is read with this value (which can
        differ from the factory's current default), so old files keep their meaning.
    small_config : mapping
        A config that builds a small, fast instance (used by
        :func:`cryoxplain.testing.check_architecture`).
    description : str
        One line for listings.
    """

    name: str
    task: str
    factory: Callable[..., torch.nn.Module]
    legacy_defaults: Mapping = field(default_factory=dict)
    small_config: Mapping = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"architecture name must be a non-empty string, got {self.name!r}")
        if self.task not in TASKS:
            raise ValueError(f"architecture {self.name!r}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not callable(self.factory):
            raise TypeError(f"architecture {self.name!r}: factory must be callable, got {self.factory!r}")

    def build(self, **config) -> torch.nn.Module:
        """``factory(**config)`` (see :func:`build_model` for the error handling)."""
        return self.factory(**config)


@dataclass
class ArchitectureRecord:
    """One discovered architecture: its spec, or the error that kept it from loading."""

    name: str
    entry_point: EntryPoint | None  # None: registered with :func:`register_architecture`
    spec: ArchitectureSpec | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.spec is not None


_LOCK = threading.Lock()
#: entry points of the group, read once (see :func:`rediscover_architectures`)
_EPS: dict[str, EntryPoint] | None = None
#: entry points loaded so far (lazily, one at a time)
_LOADED: dict[str, ArchitectureRecord] = {}
#: specs registered with :func:`register_architecture`; they take precedence over entry points
_REGISTERED: dict[str, ArchitectureSpec] = {}


def _entry_points() -> dict[str, EntryPoint]:
    global _EPS
    with _LOCK:
        if _EPS is None:
            eps: dict[str, EntryPoint] = {}
            for ep in entry_points(group=GROUP):
                eps.setdefault(ep.name, ep)  # first distribution on sys.path wins, as for imports
            _EPS = eps
        return _EPS


def _load(ep: EntryPoint) -> ArchitectureRecord:
    with _LOCK:
        hit = _LOADED.get(ep.name)
    if hit is not None and hit.entry_point == ep:
        return hit
    try:
        spec = ep.load()
    except Exception as exc:  # a broken third-party architecture must not break the others
        rec = ArchitectureRecord(ep.name, ep, None, f"{type(exc).__name__}: {exc}")
    else:
        if not isinstance(spec, ArchitectureSpec):
            rec = ArchitectureRecord(ep.name, ep, None, f"{ep.value} is not a cryoxplain.models.ArchitectureSpec")
        elif spec.name != ep.name:
            rec = ArchitectureRecord(ep.name, ep, None, f"{ep.value} is named {spec.name!r}, the entry point {ep.name!r}")
        else:
            rec = ArchitectureRecord(ep.name, ep, spec, None)
    with _LOCK:
        _LOADED[ep.name] = rec
    return rec


def rediscover_architectures() -> None:
    """Forget the cached entry points (after installing a distribution into a running interpreter)."""
    global _EPS
    with _LOCK:
        _EPS = None
        _LOADED.clear()


def register_architecture(spec, task: str | None = None, legacy_defaults: dict | None = None):
    """Register ``spec`` (an :class:`ArchitectureSpec`) in this interpreter; returns it.

    For tests and interactive use; packages use the entry point group ``cryoxplain.architectures``
    (see docs/plugins.md).  A registered spec takes precedence over an entry point of the same name.

    The old decorator form ``@register_architecture(name, task, legacy_defaults)`` still works for
    one release and warns (``DeprecationWarning``).
    """
    if isinstance(spec, ArchitectureSpec):
        with _LOCK:
            _REGISTERED[spec.name] = spec
        return spec
    if not isinstance(spec, str) or task is None:
        raise TypeError("register_architecture takes an ArchitectureSpec")
    warnings.warn("register_architecture(name, task) as a decorator is deprecated; call "
                  "register_architecture(ArchitectureSpec(name, task, factory)) or declare an entry point "
                  f"in the group {GROUP}", DeprecationWarning, stacklevel=2)
    name = spec

    def deco(factory):
        register_architecture(ArchitectureSpec(name, task, factory, dict(legacy_defaults or {})))
        return factory

    return deco


@contextlib.contextmanager
def _registered(spec: ArchitectureSpec) -> Iterator[ArchitectureSpec]:
    """Register ``spec`` for the duration of a ``with`` block (what the conformance suite uses)."""
    with _LOCK:
        before = _REGISTERED.get(spec.name)
        _REGISTERED[spec.name] = spec
    try:
        yield spec
    finally:
        with _LOCK:
            if before is None:
                _REGISTERED.pop(spec.name, None)
            else:
                _REGISTERED[spec.name] = before


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def config_bool(value, key: str) -> bool:
    """A boolean config value: ``True/False``, 0/1, or the strings true/false/yes/no/on/off/1/0
    (any case; ``--config key=True`` reaches the factory as a string).  Anything else raises
    :class:`~cryoxplain.errors.ParameterError` (``bool("false")`` would silently be True)."""
    from ..errors import ParameterError

    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ParameterError(f"config {key} must be true or false, got {value!r}")


def list_architectures() -> list[ArchitectureRecord]:
    """Every discovered architecture (entry points and registered specs), broken ones with their error."""
    recs = {name: _load(ep) for name, ep in _entry_points().items()}
    with _LOCK:
        recs.update({name: ArchitectureRecord(name, None, spec, None) for name, spec in _REGISTERED.items()})
    return [recs[k] for k in sorted(recs)]


def architectures() -> dict[str, str]:
    """Registered architecture names → task (the ones that load)."""
    return {r.name: r.spec.task for r in list_architectures() if r.ok}


def get_architecture(arch: str) -> ArchitectureSpec:
    """The :class:`ArchitectureSpec` named ``arch``; :class:`ModelFileError` if unknown or broken."""
    with _LOCK:
        spec = _REGISTERED.get(arch)
    if spec is not None:
        return spec
    eps = _entry_points()
    if arch not in eps:
        known = ", ".join(sorted(architectures())) or "none"
        raise ModelFileError(f"unknown architecture {arch!r}; known: {known} (entry-point group {GROUP})")
    rec = _load(eps[arch])
    if not rec.ok:
        raise ModelFileError(f"architecture {arch!r} failed to load: {rec.error}")
    return rec.spec


#: the most parameter memory (bytes, float32) :func:`build_model` allocates; a config needing more
#: is refused before anything is allocated (the shipped default model has 56k parameters, 0.2 MB)
MAX_PARAMETER_BYTES = 4 * 2 ** 30


def _kind_of(default, annotation) -> str | None:
    """The config type a factory parameter declares by its default value (or annotation)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    if isinstance(default, (list, tuple)):
        return "list"
    text = str(annotation)
    for kind in ("bool", "int", "float", "str"):  # "int | None" and the like
        if text.split(" ")[0] == kind or text.startswith(kind + " |"):
            return kind
    return None


def _check_value(arch: str, key: str, value, kind: str | None, default) -> None:
    from ..errors import ParameterError

    if value is None and default is None:
        return
    bad = False
    if kind == "bool":
        config_bool(value, key)
    elif kind == "int":
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        bad = isinstance(value, bool) or not whole
    elif kind == "float":
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(float(value))
    elif kind == "str":
        bad = not isinstance(value, str)
    elif kind == "list":
        bad = not isinstance(value, (list, tuple))
    if bad:
        want = {"int": "an integer", "float": "a finite number", "str": "a string", "list": "a list like [1,2,3]"}[kind]
        raise ParameterError(f"architecture {arch!r}: config {key} must be {want}, got {value!r}")


def check_config(arch: str, config: dict) -> None:
    """Check ``config`` against the config keys and types the architecture's factory declares (its
    keyword parameters, typed by their defaults or annotations): unknown keys and values of the wrong
    type raise :class:`~cryoxplain.errors.ParameterError` naming the key, before anything is built.
    The same check serves ``--config KEY=VALUE`` and the config stored in a model file."""
    import inspect

    from ..errors import ParameterError

    spec = get_architecture(arch)
    try:
        params = inspect.signature(spec.factory).parameters
    except (TypeError, ValueError):  # a factory without an inspectable signature: nothing to check
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ParameterError(f"architecture {arch!r} has no config {', '.join(unknown)}; "
                                 f"its config keys are {', '.join(known)}")
    for key, value in config.items():
        p = params.get(key)
        if p is None or p.default is inspect.Parameter.empty and p.annotation is inspect.Parameter.empty:
            continue
        default = None if p.default is inspect.Parameter.empty else p.default
        _check_value(arch, key, value, _kind_of(default, p.annotation), default)


def parameter_bytes(arch: str, config: dict) -> int | None:
    """Bytes of the parameters ``build_model(arch, **config)`` would allocate, counted by building it
    on torch's ``meta`` device (nothing is allocated); ``None`` where the architecture cannot be
    built there (then no estimate is made)."""
    from ..errors import CryoxplainError

    spec = get_architecture(arch)
    try:
        with torch.device("meta"):
            m = spec.factory(**config)
    except CryoxplainError:
        raise
    except Exception:  # noqa: BLE001 - not buildable on meta (or a config error the real build reports)
        return None
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


def build_model(arch: str, **config) -> torch.nn.Module:
    """Instantiate a registered architecture with ``config``.

    The config is checked first (:func:`check_config`), and a config whose parameters would need
    more than :data:`MAX_PARAMETER_BYTES` is refused before allocating (:func:`parameter_bytes`).
    """
    from ..errors import ParameterError

    spec = get_architecture(arch)
    check_config(arch, config)
    need = parameter_bytes(arch, config)
    if need is not None and need > MAX_PARAMETER_BYTES:
        raise ParameterError(f"architecture {arch!r} with config {config} needs {need / 2 ** 30:,.1f} GiB of "
                             f"parameters (limit {MAX_PARAMETER_BYTES / 2 ** 30:g} GiB); use a smaller width/depth")
    try:
        return spec.factory(**config)
    except TypeError as exc:
        raise ModelFileError(f"architecture {arch!r} does not accept config {config}: {exc}") from None
    except ValueError as exc:  # e.g. int("abc") inside the factory
        raise ParameterError(f"architecture {arch!r}: invalid config {config}: {exc}") from None


@dataclass
class ModelInfo:
    arch: str
    task: str
    config: dict
    training: dict = field(default_factory=dict)
    version: str = ""
    path: str = ""

    def describe(self) -> str:
        return f"{self.arch} {self.task} model ({Path(self.path).name or 'in memory'})"

    @property
    def pixel_size(self) -> float | None:
        """The pixel size (Å/px) of the model's training data, ``None`` when unknown.

        Read from ``training["pixel_size_A"]`` (what :func:`cryoxplain.denoise.train_denoiser`
        records), else ``training["data"]["pixel_size_A"]`` (simulated training sets), else the
        documented legacy value of a shipped model whose file predates the field
        (:data:`LEGACY_PIXEL_SIZES`: the shipped ``default`` model was trained at 5 Å/px).
        """
        for v in (self.training.get("pixel_size_A"), (self.training.get("data") or {}).get("pixel_size_A")):
            try:
                if v is not None and float(v) > 0 and np.isfinite(float(v)):
                    return float(v)
            except (TypeError, ValueError):
                pass
        p = Path(self.path)
        if p.parent == SHIPPED_DIR and p.stem in LEGACY_PIXEL_SIZES:
            return LEGACY_PIXEL_SIZES[p.stem]
        return None


#: training pixel sizes (Å/px) of shipped models whose files do not record one (docs/models.md)
LEGACY_PIXEL_SIZES = {"default": 5.0}


def save_model(path: str | os.PathLike, model: torch.nn.Module, arch: str, config: dict,
               training: dict | None = None, force: bool = False) -> Path:
    """Write ``model`` with its architecture config and training metadata (atomically)."""
    from safetensors.torch import save_file

    from .. import __version__

    spec = get_architecture(arch)
    config = dict(config)
    own = model.config() if callable(getattr(model, "config", None)) else {}
    for key, legacy in dict(spec.legacy_defaults).items():
        # a key left out of ``config`` would load with its legacy default: record the model's own
        # value where it differs (e.g. ``odd=True`` of a net built from a partial config)
        if key not in config and key in own and own[key] != legacy:
            config[key] = own[key]
    meta = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "task": spec.task,
        "config": config,
        "training": training or {},
        "version": __version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # a diverged model is never written
        from ..errors import ParameterError

        n = sum(int((~torch.isfinite(state[k])).sum()) for k in bad)
        raise ParameterError(f"refusing to write {path}: {n} model value(s) are NaN/Inf (in {', '.join(bad[:3])}"
                             f"{', …' if len(bad) > 3 else ''}); the training diverged")
    with atomic_path(path, force=force) as tmp:
        save_file(state, str(tmp), metadata={"cryoxplain": json.dumps(meta)})
    return Path(path)


def shipped_models() -> dict[str, Path]:
    """Names of the models shipped inside the package → their files."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.safetensors"))}


def resolve_model_path(spec: str | os.PathLike) -> Path:
    """A file path, or the name of a shipped model (``default``, …)."""
    p = Path(spec)
    if p.exists():
        return p
    shipped = shipped_models()
    if str(spec) in shipped:
        return shipped[str(spec)]
    names = ", ".join(shipped) or "none"
    raise ModelFileError(f"model {spec!r} is neither a file nor a shipped model name (shipped: {names})")


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Read only the metadata of a model file."""
    from safetensors import safe_open

    path = resolve_model_path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("cryoxplain")
    except Exception as exc:  # safetensors raises its own error types for corrupted files
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if raw is None:
        raise ModelFileError(f"{path}: safetensors file without cryoxplain metadata; not a cryoxplain model")
    try:
        meta = json.loads(raw)
        if int(meta.get("format", 0)) > FORMAT_VERSION:
            raise ModelFileError(f"{path}: model format {meta['format']} is newer than this cryoxplain supports; upgrade")
        config = {**_legacy_defaults(meta["arch"]), **dict(meta["config"])}  # keys older files lack
        return ModelInfo(arch=meta["arch"], task=meta["task"], config=config,
                         training=dict(meta.get("training", {})), version=str(meta.get("version", "")),
                         path=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: corrupted model metadata ({exc})") from None


def _legacy_defaults(arch: str) -> dict:
    try:
        return dict(get_architecture(arch).legacy_defaults)
    except ModelFileError:  # unknown here: reading the metadata still works, building will say why
        return {}


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu", *,
               task: str | None = None) -> tuple[torch.nn.Module, ModelInfo]:
    """Load a model file (or shipped model name) in eval mode on ``device``.

    ``task``: ``"denoise"`` or ``"classify"`` to refuse (with :class:`ModelFileError`) a model made
    for another task — the one place where a model's task is checked.
    """
    from safetensors.torch import load_file

    info = read_model_info(spec)
    if task is not None and info.task != task:
        what = {"denoise": "a denoiser", "classify": "a particle classifier"}.get(task, f"a {task!r} model")
        raise ModelFileError(f"{info.path}: {info.arch!r} is a {info.task!r} model; {what} is needed here")
    try:
        model = build_model(info.arch, **info.config)
    except ParameterError as exc:  # the file's own config is wrong: name the file
        raise ModelFileError(f"{info.path}: {exc}") from None
    try:
        state = load_file(info.path, device="cpu")
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelFileError(f"{info.path}: weights do not match architecture {info.arch!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model.eval()
    _set_description(model, f"{info.arch} ({Path(info.path).name})")
    return model.to(device), info


def _set_description(model: torch.nn.Module, text: str) -> None:
    try:
        model.description = text
    except AttributeError:  # a read-only description of a foreign architecture
        pass


def require_architecture(arch: str, task: str) -> ArchitectureSpec:
    """The spec of ``arch``, or :class:`~cryoxplain.errors.ParameterError` unless it is an installed
    architecture for ``task`` (``"denoise"`` or ``"classify"``); the message lists the ones that are."""
    from ..errors import ParameterError

    archs = architectures()
    what = {"denoise": "denoiser", "classify": "classifier"}.get(task, f"{task} model")
    if arch not in archs:
        mine = sorted(a for a, t in archs.items() if t == task)
        raise ParameterError(f"unknown architecture {arch!r}; {what}s: {', '.join(mine) or 'none'}")
    if archs[arch] != task:
        raise ParameterError(f"architecture {arch!r} is a {archs[arch]} model, not a {what}")
    return get_architecture(arch)


def describe_architectures() -> str:
    """Human-readable listing of every discovered architecture (task, origin; broken ones with their error)."""
    recs = list_architectures()
    if not recs:
        return f"no architectures installed (entry-point group {GROUP})"
    lines = []
    for rec in recs:
        ep = rec.entry_point
        origin = (f"{ep.value}, from {getattr(getattr(ep, 'dist', None), 'name', None) or '?'}" if ep is not None
                  else "registered at run time")
        if not rec.ok:
            lines.append(f"{rec.name}  [BROKEN]  ({origin})")
            lines.append(f"    error: {rec.error}")
            continue
        desc = f" — {rec.spec.description}" if rec.spec.description else ""
        lines.append(f"{rec.name}  [{rec.spec.task}]  ({origin}){desc}")
    return "\n".join(lines)
