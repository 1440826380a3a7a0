"""Running the real ``cryoxplain`` entry point in-process, and the checks every bad-input run must pass
(issue 18): exit status 2, one stderr line, no traceback, nothing new in the output location, inputs
byte-identical."""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

import mrcfile
import numpy as np


def run_cli(args, capfd) -> tuple[int, str, str]:
    """``cryoxplain ARGS`` through :func:`cryoxplain.cli.main.main` (warnings, SIGTERM and error
    handling as installed): ``(exit status, stdout, stderr)``."""
    from cryoxplain.cli.main import main

    capfd.readouterr()
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capfd.readouterr()
    return code, out, err


def snapshot(*folders) -> dict:
    """Every file (hidden ones included) under ``folders`` → its SHA-1."""
    out = {}
    for f in folders:
        for p in sorted(Path(f).rglob("*")):
            if p.is_file() and not p.is_symlink():
                out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
            elif p.is_dir() or p.is_symlink():
                out[str(p)] = "dir" if p.is_dir() else "link"
    return out


def assert_clean_error(code, err, before: dict, after: dict, *, what=""):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (what, code, err)
    assert len(lines) == 1 and lines[0].startswith("cryoxplain: error: "), (what, err)
    assert "Traceback" not in err and ".tmp" not in err, (what, err)
    assert after == before, (what, set(after) ^ set(before))


def write_stack(path, n=6, box=32, seed=0, voxel=5.0) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, box, box)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.set_image_stack()
        m.voxel_size = voxel
    return Path(path)


def can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and _mount_works()


_MOUNT_OK = None


def _mount_works() -> bool:
    global _MOUNT_OK
    if _MOUNT_OK is None:
        import tempfile

        d = tempfile.mkdtemp(prefix="cx-mnt-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True)
        _MOUNT_OK = r.returncode == 0
        if _MOUNT_OK:
            subprocess.run(["umount", d], capture_output=True)
        os.rmdir(d)
    return _MOUNT_OK


@contextlib.contextmanager
def tmpfs(path, size: str, read_only: bool = False):
    """A small tmpfs at ``path`` (root and a mount-capable machine only)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mount failed: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
