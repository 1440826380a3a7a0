"""Run a function in a small local ``torch.distributed`` world (gloo, CPU) — for tests.

:func:`spawn_world` starts ``world_size`` processes with ``torch.multiprocessing`` (``spawn``),
each with torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT`` on a free local port), so the library sees exactly what ``torchrun`` would give
it and initialises its own process group.  ``fn(rank, *args)`` must be importable (a module-level
function); what it returns is passed back through a file, so keep it picklable and small.
"""
from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path

__all__ = ["free_port", "spawn_world"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank, fn, world_size, port, result_dir, threads, args):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch

    torch.set_num_threads(threads)
    try:
        out = fn(rank, *args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    with open(Path(result_dir) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(out, f)


def spawn_world(fn, world_size: int, *args, threads: int = 1, timeout: float = 120.0) -> list:
    """``[fn(0, *args), …, fn(world_size − 1, *args)]``, each run in its own process of one local
    gloo world.  An exception in any rank is raised here (``torch.multiprocessing.ProcessRaisedException``)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="cryoxplain-world-") as d:
        ctx = mp.start_processes(_entry, args=(fn, world_size, free_port(), d, threads, args), nprocs=world_size,
                                 join=False, start_method="spawn")
        import time

        t_end = time.monotonic() + timeout
        while not ctx.join(timeout=1.0):
            if time.monotonic() > t_end:
                for p in ctx.processes:
                    if p.is_alive():
                        p.kill()
                raise TimeoutError(f"the {world_size}-process world did not finish within {timeout:g} s")
        out = []
        for r in range(world_size):
            with open(Path(d) / f"rank{r}.pkl", "rb") as f:
                out.append(pickle.load(f))
        return out
