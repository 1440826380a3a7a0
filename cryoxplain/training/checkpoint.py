"""Training checkpoints: safetensors tensors + JSON metadata (loading one never executes code).

A checkpoint holds the whole state of a run after an epoch: the model's ``state_dict`` (incl.
batch-norm statistics), the optimiser state, the global torch random-number state (CPU, and CUDA
when used), the epoch, the run's settings (incl. the data checksum) and the history so far.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io.jsonutil import json_default, jsonable
from ..errors import ParameterError
from ..io.atomic import atomic_path

__all__ = ["checkpoint_path_for", "data_checksum", "history_path_for", "load_checkpoint", "restore_checkpoint",
           "save_checkpoint", "settings_diff"]

META_KEY = "cryoxplain_checkpoint"


def _stem(out: Path) -> Path:
    name = out.name
    for suf in (".safetensors", ".pt", ".model"):
        if name.endswith(suf):
            name = name[: -len(suf)]
            break
    return out.with_name(name)


def history_path_for(out: str | os.PathLike) -> Path:
    """``MODEL.safetensors`` → ``MODEL.history.h5``."""
    s = _stem(Path(out))
    return s.with_name(s.name + ".history.h5")


def checkpoint_path_for(out: str | os.PathLike) -> Path:
    """``MODEL.safetensors`` → ``MODEL.checkpoint.safetensors``."""
    s = _stem(Path(out))
    return s.with_name(s.name + ".checkpoint.safetensors")


def data_checksum(*arrays) -> str:
    """SHA-1 over the bytes (and shapes) of ``arrays`` (None allowed): identifies a run's data, so a
    resume with other data is refused."""
    digest = hashlib.sha1()
    for a in arrays:
        if a is None:
            digest.update(b"-")
            continue
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict, device: torch.device | None = None) -> Path:
    """Write the run state atomically (see the module docstring); ``meta`` is JSON metadata."""
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    osd = optimizer.state_dict()
    scalars = {}
    for pid, st in osd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{pid}/{key}"] = val.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = val
    tensors["rng/torch"] = torch.get_rng_state()
    if device is not None and device.type == "cuda":
        tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
    meta = dict(meta, optim_param_groups=osd["param_groups"], optim_scalars=scalars)
    with atomic_path(path, force=True) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, default=json_default)})
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read a training checkpoint: ``(tensors, metadata)``; raises ParameterError when unusable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"cannot resume: no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
        tensors = load_file(str(path))
        meta = json.loads(raw)
    except Exception as exc:
        raise ParameterError(f"cannot resume: {path} is not a readable checkpoint ({type(exc).__name__})") from None
    return tensors, meta


def restore_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: dict, meta: dict,
                       device: torch.device | None = None) -> None:
    """Put the state of :func:`load_checkpoint` back into ``model``, ``optimizer`` and the torch RNG."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, strict=True)
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim/"):
            _, pid, key = k.split("/", 2)
            state.setdefault(int(pid), {})[key] = v
    for k, v in meta.get("optim_scalars", {}).items():
        pid, key = k.split("/", 1)
        state.setdefault(int(pid), {})[key] = v
    groups = meta["optim_param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng/cuda"], device)


def settings_diff(old: dict, new: dict) -> str:
    """``""`` when the settings agree, else a message listing every difference."""
    new, old = jsonable(new), jsonable(old)
    keys = [k for k in list(new) + [k for k in old if k not in new] if old.get(k) != new.get(k)]
    return "; ".join(f"{k}: {old.get(k)!r} (checkpoint) vs {new.get(k)!r} (now)" for k in keys)


def interrupted_error(out: str | os.PathLike, since: float | None = None):
    """The :class:`~cryoxplain.errors.TrainingInterrupted` for a run writing ``out`` that was stopped
    (Ctrl-C): names the checkpoint a ``resume`` continues from and its epoch, or says there is none
    (no checkpoint, or only one older than ``since``, a ``time.time()`` of the run's start)."""
    from safetensors import safe_open

    from ..errors import TrainingInterrupted

    ckpt = checkpoint_path_for(out)
    epoch = None
    try:
        if ckpt.is_file() and (since is None or ckpt.stat().st_mtime >= since):
            with safe_open(str(ckpt), framework="pt") as f:
                epoch = int(json.loads((f.metadata() or {})[META_KEY])["epoch"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint: say there is none
        epoch = None
    if epoch is None:
        return TrainingInterrupted("training interrupted before its first checkpoint; no model written, "
                                   "nothing to resume: start again")
    return TrainingInterrupted(f"training interrupted; no model written; the checkpoint of epoch {epoch} is in "
                               f"{ckpt}: run the same command with resume=True to continue from it")
