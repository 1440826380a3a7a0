"""Scale-out on ``torch.distributed``: who am I (rank, world), the process group, the device, the
static split of work units, and rank-0-only writes (docs/scale-out.md).

There is no scheduler of our own: the launcher is ``torchrun`` (one machine or several, the usual
rendezvous flags; ``srun torchrun`` on SLURM), and the process group is ``torch.distributed``'s
(``gloo`` on the CPU, ``nccl`` on CUDA).  What is defined here, once:

* :func:`context` — rank, world size and local rank from the launcher's environment: torchrun's
  ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; for *sharded inference only* (``allow_array=True``) a SLURM
  job array's ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` (relative to
  ``SLURM_ARRAY_TASK_MIN``) when no torchrun variables are set.  Array tasks share no process group:
  they coordinate through the files alone.  Nothing set: world size 1, exactly a plain run.
* :func:`init` — the process group for a torchrun world > 1 (idempotent); :func:`barrier`,
  :func:`all_reduce_sum`, :func:`broadcast_object` are no-ops without one.
* :func:`device` — :func:`cryoxplain.utils.resolve_device` with GPU binding: under a launcher
  ``auto``/``cuda`` mean ``cuda:LOCAL_RANK``.
* :func:`shard_range` / :func:`shard` — the static split of ``n`` work units into contiguous ranges,
  rank ``r`` getting ``[r·n//W + min(r, n%W)…)``: sizes differ by at most one, no unit is padded or
  duplicated, and the split depends on ``(n, W)`` alone.
* :func:`is_main` — rank 0, the only rank that writes shared outputs (history, checkpoints, models,
  merged particle files).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch

from .errors import ParameterError

__all__ = ["DEFAULT_UNIT_SIZE", "Context", "all_reduce_sum", "check_unit_size", "barrier", "broadcast_object", "context", "device", "init", "is_main",
           "is_initialized", "shard", "shard_range"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node).

    ``launcher``: ``"none"`` (a plain run), ``"torchrun"`` (any launcher that sets torchrun's
    variables) or ``"slurm-array"`` (a job-array task: rank/world for sharding, no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "none"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size} ({self.launcher})"


def _int_env(env, name: str) -> int:
    raw = env.get(name)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ParameterError(f"environment variable {name}={raw!r} is not an integer") from None


def context(allow_array: bool = False, env=None) -> Context:
    """The rank and world of this process from the launcher's environment (see the module docstring).

    ``allow_array``: also read a SLURM job array (sharded inference; training needs a process group
    and refuses it).  Inconsistent variables raise :class:`~cryoxplain.errors.ParameterError`.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env or "RANK" in env:
        world = _int_env(env, "WORLD_SIZE")
        rank = _int_env(env, "RANK")
        local = _int_env(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        launcher = "torchrun"
    elif allow_array and "SLURM_ARRAY_TASK_ID" in env:
        count = _int_env(env, "SLURM_ARRAY_TASK_COUNT")
        first = _int_env(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        world, rank, local, launcher = count, _int_env(env, "SLURM_ARRAY_TASK_ID") - first, 0, "slurm-array"
    else:
        return Context()
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ParameterError(f"inconsistent launcher environment: rank {rank} of world size {world} "
                             f"(local rank {local}, {launcher}); a job array must be contiguous (e.g. --array=0-7)")
    return Context(rank, world, local, launcher)


def is_initialized() -> bool:
    """True when a ``torch.distributed`` process group is up."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init(dev: torch.device | str | None = None, ctx: Context | None = None, backend: str | None = None) -> Context:
    """Initialise the process group of a torchrun world > 1 (``env://`` rendezvous; ``backend``,
    default ``nccl`` when ``dev`` is a CUDA device and ``gloo`` otherwise) and return the context.
    Idempotent; a world of size 1 or a job array initialises nothing.  Sharded inference only
    needs barriers and asks for ``gloo`` (which also lets several ranks share one GPU)."""
    ctx = context() if ctx is None else ctx
    if ctx.launcher != "torchrun" or not ctx.distributed or is_initialized():
        return ctx
    dev = torch.device(dev) if dev is not None else torch.device("cpu")
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    torch.distributed.init_process_group(backend=backend, init_method="env://",
                                         world_size=ctx.world_size, rank=ctx.rank)
    return ctx


def device(spec: str | torch.device | None = "auto", ctx: Context | None = None) -> torch.device:
    """:func:`cryoxplain.utils.resolve_device`, bound to this process's GPU under a launcher:
    ``auto`` (when CUDA is available) and ``cuda`` mean ``cuda:LOCAL_RANK``; ``cuda:N`` is kept."""
    from .utils import resolve_device

    dev = resolve_device(spec)
    ctx = context(allow_array=True) if ctx is None else ctx
    if dev.type == "cuda" and dev.index is None and ctx.launcher == "torchrun":
        return resolve_device(f"cuda:{ctx.local_rank % max(torch.cuda.device_count(), 1)}")
    return dev


def is_main(ctx: Context | None = None) -> bool:
    """True on rank 0 (and in a plain run): the rank that writes shared outputs."""
    return (context(allow_array=True) if ctx is None else ctx).rank == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_initialized():
        torch.distributed.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks in place (no-op without a process group); returns ``t``."""
    if is_initialized():
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (picklable; identity without a process group)."""
    if not is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


#: images per work unit of sharded denoise / explain (a unit is one atomic part file)
DEFAULT_UNIT_SIZE = 512


def check_unit_size(unit_size: int | None, batch_size: int, unit: str = "image") -> int:
    """The work-unit size of a sharded run (``None``: :data:`DEFAULT_UNIT_SIZE`), after checking it
    and the batch size (both ≥ 1; one-line errors)."""
    unit_size = DEFAULT_UNIT_SIZE if unit_size is None else int(unit_size)
    if unit_size < 1:
        raise ParameterError(f"unit_size must be ≥ 1 {unit}, got {unit_size}")
    if batch_size < 1:
        raise ParameterError(f"batch size must be ≥ 1, got {batch_size}")
    return unit_size


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous range of work units ``0 … n − 1`` that rank ``rank`` of ``world_size`` does.

    The first ``n % world_size`` ranks get one unit more; ranks beyond ``n`` get an empty range.
    Every unit belongs to exactly one rank (no padding, no duplicates).
    """
    n, rank, world_size = int(n), int(rank), int(world_size)
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ParameterError(f"cannot shard {n} units for rank {rank} of world size {world_size}")
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return range(start, start + q + (1 if rank < r else 0))


def shard(items: Sequence, ctx: Context | None = None) -> list:
    """This rank's contiguous part of ``items`` (:func:`shard_range`)."""
    ctx = context(allow_array=True) if ctx is None else ctx
    items = list(items)
    return [items[i] for i in shard_range(len(items), ctx.rank, ctx.world_size)]
