"""``check_architecture``: the conformance suite every architecture must pass.

Run it in your plugin's tests::

    from cryoxplain.testing import check_architecture

    def test_my_architecture():
        check_architecture("my_arch")            # the name of your entry point
        # or check_architecture(MY_SPEC) before the package is installed

Every failure raises :class:`AssertionError` whose message names the architecture, the check and
what was expected.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..models.protocol import TASKS, CryoxplainModel, model_input_shape
from ..models.registry import ArchitectureSpec, _registered, build_model, get_architecture, load_model, save_model

__all__ = ["check_architecture"]

#: image size used for fully convolutional architectures (not square, to catch swapped axes)
FREE_SHAPE = (20, 24)


def _fail(spec: ArchitectureSpec, check: str, message: str):
    raise AssertionError(f"architecture {spec.name!r} ({spec.task}): {check}: {message}")


def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " …"


def _build(spec, config, check):
    try:
        return build_model(spec.name, **config)
    except Exception as exc:
        _fail(spec, check, f"build_model({spec.name!r}, **{config!r}) raised {type(exc).__name__}: {exc}")


def _forward(spec, model, x, check):
    try:
        with torch.no_grad():
            return model(x)
    except Exception as exc:
        _fail(spec, check, f"forward on a {tuple(x.shape)} {x.dtype} tensor raised {type(exc).__name__}: {exc}")


def _same(spec, check, a: torch.Tensor, b: torch.Tensor, what: str):
    if a.shape != b.shape or not torch.equal(a, b):
        diff = (a.double() - b.double()).abs().max().item() if a.shape == b.shape else f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
        _fail(spec, check, f"{what} differ (max |difference| {diff}); expected bit-identical outputs")


def check_architecture(name_or_spec: str | ArchitectureSpec, config: dict | None = None,
                       device: str | torch.device = "cpu", batch: int = 3, seed: int = 0) -> None:
    """Check that an architecture conforms to the model protocol and the model file format.

    Parameters
    ----------
    name_or_spec : str or ArchitectureSpec
        A registered architecture name (entry point), or a spec (registered for the duration of
        the check, so that a package can test its spec before it is installed).
    config : dict, optional
        Config to build (default: the spec's ``small_config``).
    device : str or torch.device
        Where to run the model (``"cpu"``, ``"cuda"`` …).
    batch : int
        Images per test batch.
    seed : int
        Seeds ``torch`` for the build and the test images.

    Checks, in order: the spec (name, task); building with ``config``; the protocol
    (:class:`~cryoxplain.models.protocol.CryoxplainModel`: ``task`` equals the spec's,
    ``input_shape`` None or two positive ints, ``description`` a string, ``config()`` a
    JSON-serialisable dict); forward on ``(batch, 1, H, W)`` float32 tensors on ``device``: output
    ``(batch, 1, H, W)`` (denoise) or ``(batch, K)`` with K ≥ 2 (classify), float32, on ``device``,
    finite; determinism in eval mode (two calls agree bit for bit); batch independence in eval
    mode (each image's output equals its output alone, to float tolerance); ``config()`` rebuilds
    the same model (same ``config()``, same outputs with the same weights); save → load through a
    safetensors model file is bit-exact (weights and outputs, task and config in the metadata).

    Raises
    ------
    AssertionError
        On the first failed check, with a message naming the architecture and the check.
    """
    if isinstance(name_or_spec, ArchitectureSpec):
        spec = name_or_spec
        with _registered(spec):
            _check(spec, config, torch.device(device), batch, seed)
        return
    if not isinstance(name_or_spec, str):
        raise TypeError(f"check_architecture takes an architecture name or an ArchitectureSpec, got {name_or_spec!r}")
    try:
        spec = get_architecture(name_or_spec)
    except Exception as exc:
        raise AssertionError(f"architecture {name_or_spec!r}: discovery: {exc}") from None
    _check(spec, config, torch.device(device), batch, seed)


def _check(spec: ArchitectureSpec, config, device: torch.device, batch: int, seed: int) -> None:
    if spec.task not in TASKS:
        _fail(spec, "spec", f"task must be one of {TASKS}")
    config = dict(spec.small_config if config is None else config)

    # ---- build and protocol ----------------------------------------------------------------
    torch.manual_seed(seed)
    model = _build(spec, config, "build")
    if not isinstance(model, torch.nn.Module):
        _fail(spec, "build", f"the factory returned {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(model, CryoxplainModel):
        missing = [a for a in ("task", "input_shape", "description", "config", "forward") if not hasattr(model, a)]
        _fail(spec, "protocol", f"{type(model).__name__} lacks {', '.join(missing)} "
                                "(see cryoxplain.models.protocol.CryoxplainModel; subclass ModelBase for defaults)")
    if model.task != spec.task:
        _fail(spec, "protocol", f"model.task is {model.task!r}, the spec says {spec.task!r}")
    shape = model.input_shape
    if shape is not None and not (len(tuple(shape)) == 2 and all(isinstance(s, int) and s > 0 for s in shape)):
        _fail(spec, "protocol", f"input_shape must be None or (H, W) positive ints, got {shape!r}")
    if not isinstance(model.description, str):
        _fail(spec, "protocol", f"description must be a string, got {model.description!r}")
    cfg = model.config()
    if not isinstance(cfg, dict):
        _fail(spec, "protocol", f"config() must return a dict, got {type(cfg).__name__}")
    try:
        json.dumps(cfg)
    except (TypeError, ValueError) as exc:
        _fail(spec, "protocol", f"config() {cfg!r} is not JSON-serialisable ({exc}); model files store it as JSON")

    # ---- forward: shape, dtype, device -------------------------------------------------------
    model = model.to(device).eval()
    h, w = model_input_shape(model) or FREE_SHAPE
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, h, w, generator=gen).to(device)
    y = _forward(spec, model, x, "forward")
    if not isinstance(y, torch.Tensor):
        _fail(spec, "forward", f"returned {type(y).__name__}, not a tensor")
    if spec.task == "denoise" and tuple(y.shape) != tuple(x.shape):
        _fail(spec, "forward", f"a denoiser must map {tuple(x.shape)} to the same shape, got {tuple(y.shape)}")
    if spec.task == "classify" and not (y.ndim == 2 and y.shape[0] == batch and y.shape[1] >= 2):
        _fail(spec, "forward", f"a classifier must map {tuple(x.shape)} to ({batch}, K ≥ 2) logits, got {tuple(y.shape)}")
    if y.dtype != torch.float32:
        _fail(spec, "forward", f"output dtype is {y.dtype}, expected torch.float32 for float32 input")
    if y.device != x.device:
        _fail(spec, "forward", f"output is on {y.device}, the input on {x.device}")
    if not torch.isfinite(y).all():
        _fail(spec, "forward", "output has NaN or infinite values for standard-normal input")

    # ---- eval mode: determinism and batch independence --------------------------------------
    _same(spec, "determinism", y, _forward(spec, model, x, "determinism"), "two eval-mode calls on the same batch")
    alone = torch.cat([_forward(spec, model, x[i:i + 1], "batch independence") for i in range(batch)])
    if not torch.allclose(alone, y, rtol=1e-4, atol=1e-5 * max(1.0, y.abs().max().item())):
        _fail(spec, "batch independence", f"in eval mode an image's output depends on the other images of the batch "
                                          f"(max |difference| {(alone - y).abs().max().item():.3g})")

    # ---- config() rebuilds the model ---------------------------------------------------------
    rebuilt = _build(spec, cfg, "config() rebuild")
    if rebuilt.config() != cfg:
        _fail(spec, "config() rebuild", f"build_model(**config()) has config {rebuilt.config()!r}, expected {cfg!r}")
    try:
        rebuilt.load_state_dict(model.state_dict(), strict=True)
    except Exception as exc:
        _fail(spec, "config() rebuild", f"the weights do not fit the rebuilt model ({type(exc).__name__}: "
                                        f"{_one_line(exc)}); does config() return every key that shapes the model?")
    _same(spec, "config() rebuild", y, _forward(spec, rebuilt.to(device).eval(), x, "config() rebuild"),
          "outputs of the model and of build_model(**config()) with its weights")

    # ---- save → load through a model file ----------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="cryoxplain-check-") as tmp:
        path = Path(tmp) / f"{spec.name}.safetensors"
        try:
            save_model(path, model, spec.name, cfg, {"check": "check_architecture"})
            loaded, info = load_model(path, device=device)
        except Exception as exc:
            _fail(spec, "save/load", f"{type(exc).__name__}: {_one_line(exc)}")
    if info.arch != spec.name or info.task != spec.task or info.config != {**spec.legacy_defaults, **cfg}:
        _fail(spec, "save/load", f"file metadata arch={info.arch!r} task={info.task!r} config={info.config!r} "
                                 f"do not match the model's")
    if loaded.training:
        _fail(spec, "save/load", "load_model must return the model in eval mode")
    sd, sl = model.state_dict(), loaded.state_dict()
    if sd.keys() != sl.keys():
        _fail(spec, "save/load", f"state_dict keys differ after loading: {sorted(set(sd) ^ set(sl))}")
    for k in sd:
        if not torch.equal(sd[k].cpu(), sl[k].cpu()):
            _fail(spec, "save/load", f"tensor {k!r} changed in the round trip")
    _same(spec, "save/load", y, _forward(spec, loaded, x, "save/load"), "outputs before saving and after loading")
