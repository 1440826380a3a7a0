"""Benchmark: 1 vs 2 processes (``torchrun``, gloo, CPU) for training and for sharded denoising.

Prints one table (docs/scale-out.md):

* **training** — ``cryoxplain train`` on the shipped sample stack (200 simulated 70S particles,
  64 px; the default cartesian net, depth 8 / width 32, batch 16, ``--no-equivariance``): the
  median of the per-epoch ``seconds`` of epochs 2…E from the history file (rank 0);
* **sharded denoise** — ``cryoxplain denoise`` of a STAR file listing ``--stacks`` stacks of the
  sample particles with the shipped default model, units of 200 particles (8 units): wall time of
  the whole command (start-up of the processes and the rank-0 merge included).

Each configuration ``PxT`` runs as its own command: ``P = 1`` without a launcher, ``P > 1`` under
``torchrun --nproc-per-node P``; ``T`` threads per process (``OMP_NUM_THREADS``).  The default
compares one process on both cores (1x2), one process on one core (1x1) and two one-core
processes (2x1).  On a 2-core machine shared with other jobs the speed-up is bounded by 2 and by
the load.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/distributed.py [--epochs 3] [--stacks 8] [--configs 1x2,1x1,2x1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
NOISY = REPO / "sample_data" / "ribosome70S_noisy.mrcs"
CLEAN = REPO / "sample_data" / "ribosome70S_clean.mrcs"


def command(procs: int, args: list) -> list:
    if procs == 1:
        return [sys.executable, "-m", "cryoxplain", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
            str(_port()), "-m", "cryoxplain", *args]


def _port() -> int:
    from cryoxplain.testing.distributed import free_port

    return free_port()


def run(procs: int, threads: int, args: list, cwd: Path) -> float:
    """Wall time of one command: ``procs`` processes with ``threads`` threads each."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    r = subprocess.run(command(procs, args), cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(command(procs, args))} failed:\n{r.stdout}\n{r.stderr}")
    return time.perf_counter() - t0


def star_project(root: Path, n_stacks: int) -> Path:
    """``n_stacks`` copies of the sample stack listed, interleaved, by one RELION 3.1 STAR file."""
    from cryoxplain.io.mrc import read_mrc, write_mrc

    data, px = read_mrc(NOISY)
    root.mkdir(parents=True)
    names = []
    for j in range(n_stacks):
        write_mrc(root / f"mic{j:03d}.mrcs", data, px, kind="stack")
        names += [f"{k + 1:06d}@mic{j:03d}.mrcs" for k in range(len(data))]
    lines = ["", "data_optics", "", "loop_", "_rlnOpticsGroup #1", "_rlnImagePixelSize #2", "_rlnImageSize #3",
             "_rlnImageDimensionality #4", f"1 {px:.6f} {data.shape[-1]} 2", "", "", "data_particles", "", "loop_",
             "_rlnImageName #1", "_rlnOpticsGroup #2"]
    lines += [f"{n} 1" for n in names]
    (root / "particles.star").write_text("\n".join(lines) + "\n")
    return root / "particles.star"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--stacks", type=int, default=8, help="stacks of 200 particles in the STAR file")
    ap.add_argument("--configs", default="1x2,1x1,2x1",
                    help="PROCESSESxTHREADS configurations (the first one is the speed-up's baseline)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from cryoxplain.training import read_history

    rows = []
    with tempfile.TemporaryDirectory(prefix="cryoxplain-bench-dist-") as d:
        d = Path(d)
        star = star_project(d / "proj", a.stacks)
        n_particles = 200 * a.stacks
        configs = [tuple(int(v) for v in c.split("x")) for c in a.configs.split(",")]
        for k, (procs, threads) in enumerate(configs):
            out = d / f"m{k}.safetensors"
            run(procs, threads, ["train", "--noisy", str(NOISY), "--clean", str(CLEAN), "--epochs", str(a.epochs),
                                   "-b", "16", "--no-equivariance", "-d", "cpu", "-o", str(out)], d)
            secs = list(read_history(d / f"m{k}.history.h5")["seconds"][2:])
            rows.append({"task": "train (epoch, s)", "processes": procs, "threads_each": threads,
                         "seconds": statistics.median(secs)})
        for k, (procs, threads) in enumerate(configs):
            out = d / "proj" / f"den{k}"
            wall = run(procs, threads, ["denoise", "particles.star", "-o", out.name, "-d", "cpu", "--unit-size", "200"], d / "proj")
            rows.append({"task": f"denoise {n_particles} particles (wall, s)", "processes": procs,
                         "threads_each": threads, "seconds": wall})
            shutil.rmtree(out)
    for r in rows:
        base = next(b for b in rows if b["task"] == r["task"])  # the first configuration
        r["speed_up"] = base["seconds"] / r["seconds"]
    print("| task | processes × threads | seconds | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['processes']} × {r['threads_each']} | {r['seconds']:.2f} | {r['speed_up']:.2f} |")
    res = {"rows": rows, "cpus": os.cpu_count(), "load_avg": os.getloadavg(), "epochs": a.epochs}
    print(f"machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
