"""Peak resident memory versus stack length (issue 18, item 3): one table for docs/benchmarks.md.

Every measurement runs in its own child process and reports that process's own peak RSS
(``ru_maxrss`` of the child from ``os.wait4``), so the numbers do not add up across runs:

* ``write``: :class:`cryoxplain.io.StackWriter` writing N random 64² float32 images in batches
  of 64 (the images are generated batch by batch, so only the writer can make memory grow);
* ``denoise``: ``cryoxplain denoise IN.mrcs -o OUT.mrcs --device cpu -m tiny.safetensors`` of an
  N-image 64² stack, with a *tiny* cartesian model (depth 3, width 4, untrained weights) so that
  100k images take minutes; the network's activations are per batch and do not depend on N, so a
  bigger model adds a constant.

``python benchmarks/memory.py --sizes 2000 20000 100000`` (with ``OMP_NUM_THREADS=1 nice -n 10``
on a shared machine) prints a Markdown table.  ``--baseline SRC`` runs the same children with
``PYTHONPATH=SRC`` (e.g. an export of an older commit) for a before/after comparison.  The
scratch files (≈ 3.3 GB for 100k) go to ``--workdir`` (default: a temporary folder) and are
deleted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BOX = 64

WRITE_CHILD = r"""
import sys, numpy as np
from cryoxplain.io.mrc import StackWriter
n, box, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
with StackWriter(out, (n, box, box), 1.0) as w:
    for s in range(0, n, 64):
        b = min(64, n - s)
        w.write(s, rng.standard_normal((b, box, box), dtype=np.float32))
"""

MODEL_CHILD = r"""
import sys, torch
from cryoxplain.models.registry import build_model, save_model
torch.manual_seed(0)
cfg = {"depth": 3, "width": 4}
save_model(sys.argv[1], build_model("cartesian", **cfg), "cartesian", cfg, {"pixel_size_A": 1.0})
"""

BASELINE_CHILD = "import numpy, torch, cryoxplain.io.mrc, cryoxplain.denoise"


def _run(argv: list, env: dict) -> tuple[float, float]:
    """Run ``argv``; return (peak RSS in MB, wall seconds).  Fails loudly on a non-zero exit."""
    t0 = time.perf_counter()
    # cwd: not the repository, so that `python -c` does not import the tree it was started from
    proc = subprocess.Popen(argv, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{err}")
    return usage.ru_maxrss / 1024.0, wall  # ru_maxrss is in KiB on Linux


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--baseline", default=None, help="PYTHONPATH of an older cryoxplain to compare with")
    ap.add_argument("--skip-denoise", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cx-mem-", dir=args.workdir))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    here = str(Path(__file__).resolve().parent.parent)
    variants = [("this tree", dict(env, PYTHONPATH=here))]
    if args.baseline:
        variants.append(("baseline", dict(env, PYTHONPATH=args.baseline)))
    py = sys.executable
    cli = [py, "-c", "from cryoxplain.cli.main import main; main()"]
    rows = []
    try:
        model = work / "tiny.safetensors"
        _run([py, "-c", MODEL_CHILD, str(model)], variants[0][1])
        for label, e in variants:
            base, _ = _run([py, "-c", BASELINE_CHILD], e)
            rows.append((label, "imports only", "-", base, 0.0))
        for n in args.sizes:
            src = work / f"in{n}.mrcs"
            for label, e in variants:
                rss, wall = _run([py, "-c", WRITE_CHILD, str(n), str(BOX), str(src)], e)
                rows.append((label, "write", n, rss, wall))
                if args.skip_denoise:
                    src.unlink()
                    continue
                out = work / f"out{n}.mrcs"
                rss, wall = _run(cli + ["denoise", str(src), "-o", str(out), "--device", "cpu", "-m", str(model),
                                        "-b", "64"], e)
                rows.append((label, "denoise", n, rss, wall))
                out.unlink()
                src.unlink()
            print(f"done {n}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| code | run | images ({BOX}²) | stack size (MB) | peak RSS (MB) | wall (s) |")
    print("|---|---|---|---|---|---|")
    for label, what, n, rss, wall in rows:
        size = "-" if n == "-" else f"{n * BOX * BOX * 4 / 1e6:.0f}"
        print(f"| {label} | {what} | {n} | {size} | {rss:.0f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
