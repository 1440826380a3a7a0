"""The commands under a real ``torchrun`` (``python -m torch.distributed.run``), 2 CPU processes."""
import os
import subprocess
import sys

import numpy as np
import pytest

from cryoxplain.io.mrc import read_mrc, write_mrc
from cryoxplain.testing.distributed import free_port
from dist_workers import make_star_project, toy_pairs


def torchrun(args, cwd):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "-m", "cryoxplain", *args]
    r = subprocess.run(cmd, cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.slow  # two torchrun launches (~40 s on the shared 2-core machine)
def test_train_then_sharded_denoise_under_torchrun(tmp_path):
    noisy, clean = toy_pairs(24, 16)
    write_mrc(tmp_path / "n.mrcs", noisy, 2.0, kind="stack")
    write_mrc(tmp_path / "c.mrcs", clean, 2.0, kind="stack")
    out = torchrun(["train", "--noisy", "n.mrcs", "--clean", "c.mrcs", "--epochs", "2", "-b", "6", "--config", "depth=3",
                    "--config", "width=4", "-d", "cpu", "-o", "m.safetensors"], tmp_path)
    assert out.count("wrote m.safetensors") == 1  # rank 0 reports
    from cryoxplain.training import read_history

    assert len(read_history(tmp_path / "m.history.h5")["epoch"]) == 3
    star, _ = make_star_project(tmp_path / "proj", box=16)
    out = torchrun(["denoise", "particles.star", "-o", "den", "-m", "../m.safetensors", "-d", "cpu", "-b", "2",
                    "--unit-size", "4"], tmp_path / "proj")
    assert out.count("wrote den/particles_denoised.star") == 1
    assert sorted(p.name for p in (tmp_path / "proj" / "den").iterdir()) == [
        "mic0_denoised.mrcs", "mic1_denoised.mrcs", "mic2_denoised.mrcs", "particles_denoised.star"]
    assert np.isfinite(read_mrc(
        tmp_path / "proj" / "den" / "mic0_denoised.mrcs")[0]).all()
