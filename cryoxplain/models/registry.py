"""Architecture registry and the model file format.

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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import ModelFileError
from ..io.atomic import atomic_path

FORMAT_VERSION = 1
_ARCHS: dict[str, tuple[Callable[..., torch.nn.Module], str]] = {}
#: per architecture: config values that files written before a config key existed must load with
_LEGACY_DEFAULTS: dict[str, dict] = {}

#: where shipped models live inside the package; `load_model("default")` looks here
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "models"


def register_architecture(name: str, task: str, legacy_defaults: dict | None = None):
    """Decorator: register a factory ``f(**config) -> nn.Module`` under ``name``.

    ``legacy_defaults``: values for config keys that were added after model files of this
    architecture were first written.  A model file whose config lacks such a key is read with this
    value (which can differ from the factory's current default), so old files keep their meaning.
    """

    def deco(factory):
        _ARCHS[name] = (factory, task)
        _LEGACY_DEFAULTS[name] = dict(legacy_defaults or {})
        return factory

    return deco


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


def _ensure_builtin_archs() -> None:
    # importing the modules registers their architectures
    import importlib

    for mod in ("cartesian", "spiral", "classifier"):
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as exc:  # an architecture not built yet / optional
            if exc.name != f"{__package__}.{mod}":
                raise


def architectures() -> dict[str, str]:
    """Registered architecture names → task."""
    _ensure_builtin_archs()
    return {k: v[1] for k, v in _ARCHS.items()}


def build_model(arch: str, **config) -> torch.nn.Module:
    """Instantiate a registered architecture with ``config``."""
    _ensure_builtin_archs()
    if arch not in _ARCHS:
        raise ModelFileError(f"unknown architecture {arch!r}; known: {', '.join(sorted(_ARCHS)) or 'none'}")
    try:
        return _ARCHS[arch][0](**config)
    except TypeError as exc:
        raise ModelFileError(f"architecture {arch!r} does not accept config {config}: {exc}") from None


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


def save_model(path: str | os.PathLike, model: torch.nn.Module, arch: str, config: dict,
               training: dict | None = None, force: bool = False) -> Path:
    """Write ``model`` with its architecture config and training metadata (atomically)."""
    from safetensors.torch import save_file

    from .. import __version__

    _ensure_builtin_archs()
    if arch not in _ARCHS:
        raise ModelFileError(f"unknown architecture {arch!r}")
    meta = {
        "format": FORMAT_VERSION,
        "arch": arch,
        "task": _ARCHS[arch][1],
        "config": config,
        "training": training or {},
        "version": __version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
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
        _ensure_builtin_archs()
        config = {**_LEGACY_DEFAULTS.get(meta["arch"], {}), **dict(meta["config"])}  # keys older files lack
        return ModelInfo(arch=meta["arch"], task=meta["task"], config=config,
                         training=dict(meta.get("training", {})), version=str(meta.get("version", "")),
                         path=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: corrupted model metadata ({exc})") from None


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
    model = build_model(info.arch, **info.config)
    try:
        state = load_file(info.path, device="cpu")
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelFileError(f"{info.path}: weights do not match architecture {info.arch!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model.eval()
    return model.to(device), info
