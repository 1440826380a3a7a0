"""`train --noisy particles.star`, `evaluate equivariance particles.star`, `explain ... particles.star`:
the commands that read particles take RELION STAR files (real ones, ../shared/data/real) and
resolve their stacks as RELION does (cwd = project directory)."""
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.io.mrc import read_mrc
from cryoxplain.io.particles import open_images, open_particles
import torch

from cryoxplain.models import build_model, save_model
from cryoxplain.models.registry import load_model
from cryoxplain.training.data import load_images

STAR = "real/fei-extended_picked105_bin6_box64.star"
STACK = "real/fei-extended_picked105_bin6_box64.mrcs"


@pytest.fixture
def relion_project(tmp_path, shared_data, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "Select" / "job007").mkdir(parents=True)
    shutil.copy(shared_data / STAR, proj / "Select" / "job007" / "particles.star")
    shutil.copy(shared_data / STACK, proj / "fei-extended_picked105_bin6_box64.mrcs")
    monkeypatch.chdir(proj)
    return proj


def test_particle_stack_view_reads_in_set_order(relion_project, tmp_path):
    star = relion_project / "Select" / "job007" / "particles.star"
    # a subset in shuffled order across two stacks
    lines = star.read_text().splitlines()
    st = open_particles(star)
    imgs = st.read()
    head = [ln for ln in lines if "@" not in ln]
    rows = [ln for ln in lines if "@" in ln]
    shutil.copy(relion_project / "fei-extended_picked105_bin6_box64.mrcs", relion_project / "copy.mrcs")
    pick = [7, 3, 50, 4, 99]
    new_rows = [rows[i] if k % 2 == 0 else rows[i].replace("fei-extended_picked105_bin6_box64.mrcs", "copy.mrcs")
                for k, i in enumerate(pick)]
    sub = relion_project / "sub.star"
    sub.write_text("\n".join(head + new_rows) + "\n")
    with open_images(sub) as view:
        assert len(view) == 5 and view.shape == (5, 64, 64) and view.voxel_size == pytest.approx(5.122653)
        assert np.array_equal(view[1], imgs[3]) and np.array_equal(view[1:4], imgs[[3, 50, 4]])
        got = np.concatenate([b for _, b in view.batches(2)])
        assert [s for s, _ in view.batches(2)] == [0, 2, 4]
    assert np.array_equal(got, imgs[pick])


def test_load_images_reads_a_star(relion_project):
    x, px = load_images("Select/job007/particles.star", "noisy")
    assert x.shape == (105, 64, 64) and x.dtype == np.float32 and px == pytest.approx(5.122653)
    assert np.array_equal(x, read_mrc("fei-extended_picked105_bin6_box64.mrcs")[0])


@pytest.mark.slow
def test_train_takes_a_star(relion_project):
    run = lambda *a: CliRunner().invoke(cli, list(a))  # noqa: E731
    # the STAR as the noisy input (the stack itself as a stand-in Noise2Noise target)
    r = run("train", "--noisy", "Select/job007/particles.star", "--noisy2", "fei-extended_picked105_bin6_box64.mrcs",
            "--config", "depth=2", "--config", "width=4", "--epochs", "1", "--no-equivariance", "-d", "cpu",
            "-o", "model.safetensors")
    assert r.exit_code == 0, r.output
    _, info = load_model(relion_project / "model.safetensors")
    assert info.training["pixel_size_A"] == pytest.approx(5.122653, rel=1e-6)
    assert info.training["settings"]["n_images"] == 105


def test_evaluate_explain_take_a_star(relion_project):
    cfg = {"depth": 2, "width": 4, "kernel_size": 3}
    torch.manual_seed(0)
    save_model(relion_project / "tiny.safetensors", build_model("cartesian", **cfg), "cartesian", cfg)
    run = lambda *a: CliRunner().invoke(cli, list(a) + ["-m", "tiny.safetensors"])  # noqa: E731
    # evaluate equivariance on the STAR = on its stack
    a = run("evaluate", "equivariance", "Select/job007/particles.star", "-n", "4", "--n-offgrid", "1", "--json",
            "-d", "cpu")
    b = run("evaluate", "equivariance", "fei-extended_picked105_bin6_box64.mrcs", "-n", "4", "--n-offgrid", "1",
            "--json", "-d", "cpu")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    import json

    ja, jb = json.loads(a.output), json.loads(b.output)
    ja.pop("stack"), jb.pop("stack")
    assert ja == jb
    # explain the particles a STAR lists (the first 3, via a subset STAR)
    star = relion_project / "Select" / "job007" / "particles.star"
    lines = star.read_text().splitlines()
    rows = [i for i, ln in enumerate(lines) if "@" in ln]
    (relion_project / "three.star").write_text("\n".join(lines[:rows[3]]) + "\n")
    r = run("explain", "three.star", "--method", "gradient", "-o", "att.h5", "-d", "cpu")
    assert r.exit_code == 0, r.output
    with h5py.File(relion_project / "att.h5") as f:
        assert f.attrs["n_images"] == 3 and f.attrs["voxel_size"] == pytest.approx(5.122653)
    # a STAR whose stack is missing: exit 2, nothing written
    (relion_project / "fei-extended_picked105_bin6_box64.mrcs").rename(relion_project / "gone.mrcs")
    for args in (("evaluate", "equivariance", "three.star", "--plot", "p.png"),
                 ("explain", "three.star", "--method", "gradient", "-o", "att2.h5"),
                 ("train", "--noisy", "three.star", "--noisy2", "gone.mrcs", "-o", "m2.safetensors")):
        r = CliRunner().invoke(cli, list(args) + ["-d", "cpu"])
        assert r.exit_code == 2 and "not found" in r.output, (args, r.output)
    assert not any((relion_project / n).exists() for n in ("p.png", "att2.h5", "m2.safetensors"))
    assert read_mrc(relion_project / "gone.mrcs")[0].shape == (105, 64, 64)


def test_real_sample_data_star(shared_data):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "sample_data"
    ps = open_particles(sample / "epu_particles.star")  # stack found next to the STAR
    assert len(ps) == 24 and ps.box == 64 and ps.pixel_size == pytest.approx(5.122653)
    real = read_mrc(shared_data / STACK)[0]
    assert all(any(np.array_equal(img, r) for r in real) for img in ps.read()[:3])
    mic, px = read_mrc(sample / "epu_bin6_crop.mrc")
    assert mic.shape == (320, 320) and px == pytest.approx(5.122653)
