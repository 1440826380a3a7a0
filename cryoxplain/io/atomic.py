"""Atomic output files: write to a temporary sibling, rename on success, delete on failure."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import OutputExistsError, ParameterError


def check_output(path: str | os.PathLike, force: bool = False, inputs: tuple = (), *,
                 folder_must_exist: bool = True) -> Path:
    """Refuse to overwrite an existing file without ``force`` and never write over an input.

    ``folder_must_exist=False`` is for writers that create the output folder themselves.
    """
    path = Path(path)
    for inp in inputs:
        try:
            if Path(inp).resolve() == path.resolve():
                raise ParameterError(f"output {path} is also an input; inputs are never modified, choose another output name")
        except OSError:
            pass
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass force=True to overwrite it")
    if path.exists() and path.is_dir():
        raise OutputExistsError(f"{path} is a directory, not a file")
    if folder_must_exist and not path.parent.exists():
        raise ParameterError(f"output folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False, inputs: tuple = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed and ``path`` is untouched, so nothing is ever
    left half-written.
    """
    final = check_output(path, force=force, inputs=inputs)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary siblings that :func:`atomic_path` leaves for ``path`` when its process
    was killed (``.NAME.*.tmp``; an exception removes them itself) and return them.  Only for an
    output no live process is writing (a re-run of a sharded job redoing its own unit)."""
    import glob

    final = Path(path)
    gone = []
    if final.parent.is_dir():
        for tmp in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                gone.append(tmp)
    return gone

