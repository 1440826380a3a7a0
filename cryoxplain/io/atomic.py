"""Atomic output files: write to a temporary sibling, rename on success, delete on failure.

The one home of the output rules (docs/conventions.md, "Reliability"):

* an output never resolves to an input — same resolved path, or same ``(st_dev, st_ino)`` (hard
  links, symlinks) — with or without ``force``; side outputs (histories, checkpoints, plots, PNG
  folders) go through the same check;
* an existing output is replaced only with ``force``; a path ending in ``/`` names a folder;
* the output folder must be writable: a read-only folder or file system is one
  :class:`~cryoxplain.errors.OutputLocationError` before any work;
* when the size is known (``size=`` bytes) the free space is checked first; a full disk met while
  writing (``ENOSPC``) becomes the same one-line error, and the temporary file is always removed;
* temporary files are hidden siblings ``.NAME.PID-HOST.XXXXXXXX.tmp``; those left by a killed run
  (their process on this machine is gone) are removed by the next write of the same output; error messages name
  the final output, never the temporary file;
* published files get the mode ``0o666 & ~umask`` like any file the user creates.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import OutputExistsError, OutputLocationError, ParameterError
from ..hooks import write_started

__all__ = ["atomic_path", "check_folder_writable", "check_output", "check_space", "disk_full_error",
           "input_files", "is_disk_full", "made_folders", "release_headroom", "reserve_headroom", "reserve_space", "same_file", "translate_os_error"]

#: our temporary names: ``.NAME.PID-HOST.RANDOM.tmp`` (files) and ``.cryoxplain-PID-HOST-RANDOM``
#: (folders); HOST is a 4-hex-digit tag of the machine's name, so that only temporary files of
#: processes of this machine are judged by their process id (shared file systems)
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{4})\.[A-Za-z0-9_]{6,}\.tmp$")
_TMPDIR_RE = re.compile(r"^\.cryoxplain-(?P<pid>\d+)-(?P<host>[0-9a-f]{4})-[A-Za-z0-9_]{6,}$")
_MB = 1024 * 1024


# ------------------------------------------------------------------------------------ inputs
def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` are the same file: same resolved path, or (both existing) the same
    device and inode — a hard link or a symlink to it."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):
        pass
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _input_paths(inputs: Iterable) -> list:
    out = []
    for inp in inputs or ():
        if inp is None:
            continue
        if isinstance(inp, (str, os.PathLike)):
            out.append(inp)
        else:  # nested sequences (e.g. the stacks of a particle set)
            out.extend(_input_paths(inp))
    return out


def input_files(*specs, project_dir=None) -> tuple:
    """The files a run reads, for the output checks: every spec that names an existing file (a
    stack, a model file, a design …; names of shipped models and arrays are skipped), plus the
    stacks a particle file (.star/.cs) lists."""
    out = []
    for s in specs:
        if not isinstance(s, (str, os.PathLike)) or not Path(s).is_file():
            continue
        out.append(s)
        from .particles import is_particle_file

        if is_particle_file(s):
            try:
                from .particles import open_particles

                out.extend(open_particles(s, project_dir).stacks)
            except Exception:  # noqa: BLE001 - the run itself reports a bad particle file
                pass
    return tuple(out)


def _refuse_inputs(path: Path, inputs: Iterable) -> None:
    for inp in _input_paths(inputs):
        if same_file(path, inp):
            same = "" if str(inp) == str(path) else f" (it is the same file as {inp})"
            raise ParameterError(f"output {path} is also an input; inputs are never modified, "
                                 f"choose another output name{same}")


# ------------------------------------------------------------------------------- the folder
def _existing_ancestor(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_folder_writable(folder: str | os.PathLike) -> None:
    """Refuse a folder (or, when it does not exist yet, the existing folder it would be created in)
    on a read-only file system or without write permission."""
    base = _existing_ancestor(Path(folder))
    if not base.is_dir():
        raise ParameterError(f"output folder {folder}: {base} is a file, not a folder")
    try:
        ro = bool(os.statvfs(base).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        ro = False
    if ro:
        raise OutputLocationError(f"cannot write to {base}: read-only file system; choose another output folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputLocationError(f"cannot write to {base}: permission denied; choose another output folder")


def check_output(path: str | os.PathLike, force: bool = False, inputs: tuple = (), *,
                 folder_must_exist: bool = True) -> Path:
    """Check an output path before any work; return it as a :class:`~pathlib.Path`.

    Refuses: an output that is one of ``inputs`` (paths, or nested sequences of paths; compared by
    resolved path and by device/inode), with or without ``force``; an existing file without
    ``force``; a folder, or a path ending in ``/`` (that names a folder); a missing output folder
    (unless ``folder_must_exist=False``, for writers that create it); a read-only or unwritable
    output folder.
    """
    if str(path).endswith(("/", os.sep)):
        raise ParameterError(f"output {path} ends in '/', so it names a folder, but a file is written here; "
                             "drop the '/' or give a file name")
    path = Path(path)
    _refuse_inputs(path, inputs)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a directory, not a file")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputExistsError(f"{path} exists; pass force=True to overwrite it")
    if folder_must_exist and not path.parent.exists():
        raise ParameterError(f"output folder {path.parent} does not exist")
    check_folder_writable(path.parent)
    return path


@contextlib.contextmanager
def made_folders(folder: str | os.PathLike) -> Iterator[Path]:
    """Create ``folder`` and its missing parents; remove those created here (when empty) if the
    block fails, so a failed run leaves no empty folders behind."""
    folder = Path(folder)
    created = []
    p = Path(os.path.abspath(folder))
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    check_folder_writable(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise translate_os_error(exc, folder) from None
    try:
        yield folder
    except BaseException:
        for d in created:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


# -------------------------------------------------------------------------------- disk space
def is_disk_full(exc: BaseException) -> bool:
    """True for an error that means the disk (or quota) is full, whatever library raised it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text or "errno = 28" in text


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(_existing_ancestor(folder)).free
    except OSError:
        return None


def disk_full_error(folder: str | os.PathLike, needed: int | None = None) -> OutputLocationError:
    """The one-line error for a full disk: ``no space left on DIR (needed ≈ N MB, free M MB)``."""
    folder = _existing_ancestor(Path(folder))
    free = _free_bytes(folder)
    parts = []
    if needed:
        parts.append(f"needed ≈ {max(needed / _MB, 0.1):.1f} MB")
    if free is not None:
        parts.append(f"free {free / _MB:.1f} MB")
    extra = f" ({', '.join(parts)})" if parts else ""
    return OutputLocationError(f"no space left on {folder}{extra}; free some space or choose another output folder")


def check_space(folder: str | os.PathLike, needed: int) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when the disk has less free."""
    free = _free_bytes(Path(folder))
    if free is not None and needed > free:
        raise disk_full_error(folder, needed)


def reserve_space(path: str | os.PathLike, size: int, final: str | os.PathLike | None = None) -> None:
    """Allocate ``size`` bytes of the (existing) file ``path`` on disk, so a memory map of it can
    never meet a full disk later (which would kill the process with SIGBUS).  File systems without
    ``fallocate`` keep the up-front :func:`check_space` only."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, int(size))
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(Path(final or path).parent, size) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def reserve_headroom(path: str | os.PathLike, size: int, final: str | os.PathLike | None = None) -> bool:
    """Reserve ``size`` bytes of disk for a file that a library will write itself (HDF5), without
    changing its length (Linux ``fallocate(FALLOC_FL_KEEP_SIZE)``): its later writes can then not
    meet a full disk, which libhdf5 does not survive.  A full disk raises the one-line error now;
    elsewhere (no such call) only the up-front :func:`check_space` applies.  Release what was not
    used with :func:`release_headroom`.  Returns whether space was reserved."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_RDWR)
    try:
        if fallocate(fd, 1, 0, int(size)) != 0:  # 1: FALLOC_FL_KEEP_SIZE
            if ctypes.get_errno() in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full_error(Path(final or path).parent, size)
            return False
    finally:
        os.close(fd)
    return True


def release_headroom(path: str | os.PathLike) -> None:
    """Free the blocks :func:`reserve_headroom` reserved past the end of ``path``."""
    with contextlib.suppress(OSError):
        os.truncate(path, os.path.getsize(path))


def translate_os_error(exc: BaseException, final: str | os.PathLike, needed: int | None = None):
    """The one-line user error for an OS-level write failure (full disk, read-only, permission),
    naming ``final``'s folder; other errors are returned unchanged."""
    folder = Path(final).parent if not Path(final).is_dir() else Path(final)
    if is_disk_full(exc):
        return disk_full_error(folder, needed)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return OutputLocationError(f"cannot write to {folder}: read-only file system; choose another output folder")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        return OutputLocationError(f"cannot write to {folder}: permission denied; choose another output folder")
    return exc


# ------------------------------------------------------------------------------ temp files
def host_tag() -> str:
    """4 hex digits naming this machine in our temporary file names."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, name: str | None = None, *,
                      any_process: bool = False) -> list[Path]:
    """Remove our temporary files (``.NAME.PID-HOST.XXXX.tmp``; of output ``name`` only, when given)
    and folders (``.cryoxplain-PID-HOST-XXXX``) in ``folder`` whose process — on this machine — no
    longer runs (a killed run); return what was removed.  ``any_process``: remove them whatever
    process or machine made them (only for an output nobody else can be writing)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    here = host_tag()
    for e in entries:
        m = _TMP_RE.match(e.name)
        if any_process and name is not None and e.name.startswith(f".{name}.") and e.name.endswith(".tmp"):
            m = True  # any naming of ours, older releases' included
        if (m and (m is True or name is None or m.group("name") == name)
                and (any_process or (m.group("host") == here and not _pid_alive(int(m.group("pid")))))):
            with contextlib.suppress(OSError):
                os.unlink(e.path)
                removed.append(Path(e.path))
            continue
        m = _TMPDIR_RE.match(e.name)
        if (m and e.is_dir(follow_symlinks=False)
                and ((any_process and name is None)
                     or (m.group("host") == here and not _pid_alive(int(m.group("pid")))))):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def temp_dir(folder: str | os.PathLike) -> Path:
    """A new hidden temporary folder of our naming inside ``folder`` (stale ones are cleaned)."""
    clean_stale_temps(folder)
    try:
        return Path(tempfile.mkdtemp(prefix=f".cryoxplain-{os.getpid()}-{host_tag()}-", dir=folder))
    except OSError as exc:
        raise translate_os_error(exc, Path(folder) / "x") from None


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _rename_in_message(exc: BaseException, tmp: Path, final: Path) -> None:
    """Make ``exc`` name ``final`` where it names the temporary file."""
    t, f = str(tmp), str(final)
    with contextlib.suppress(Exception):
        if any(t in str(a) or tmp.name in str(a) for a in exc.args):
            exc.args = tuple(str(a).replace(t, f).replace(tmp.name, final.name) if isinstance(a, str) else a
                             for a in exc.args)
    if isinstance(exc, OSError):
        with contextlib.suppress(Exception):
            if exc.filename and str(exc.filename) in (t, tmp.name):
                exc.filename = f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False, inputs: tuple = (), *,
                size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    ``path`` is checked first (:func:`check_output`: never an input, replaced only with ``force``,
    a writable folder); ``size`` (bytes, when known) is compared with the free space.  On any
    exception the temporary file is removed and ``path`` is untouched, so nothing is ever left
    half-written; a full disk or read-only folder becomes one :class:`OutputLocationError`.
    """
    final = check_output(path, force=force, inputs=inputs)
    clean_stale_temps(final.parent, final.name)
    if size:
        check_space(final.parent, int(size))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}-{host_tag()}.", suffix=".tmp",
                                   dir=final.parent)
    except OSError as exc:
        raise translate_os_error(exc, final, size) from None
    os.close(fd)
    os.unlink(tmp)  # writers create the file themselves
    tmp = Path(tmp)
    write_started()  # the CLI prints the warnings it held back
    try:
        yield tmp
        if tmp.is_file():
            with contextlib.suppress(OSError):
                os.chmod(tmp, _umask_mode() | (stat.S_IMODE(os.stat(tmp).st_mode) & 0o111))
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
        new = translate_os_error(exc, final, size) if isinstance(exc, Exception) else exc
        if new is not exc:
            raise new from None
        _rename_in_message(exc, tmp, final)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary siblings that :func:`atomic_path` leaves for ``path`` when its process
    was killed, from any process or machine, and return them: :func:`clean_stale_temps` with
    ``any_process``.  Only for an output no live process is writing (a re-run of a sharded job
    redoing its own unit, whose killed writer may have run on another node)."""
    final = Path(path)
    return clean_stale_temps(final.parent, final.name, any_process=True)
