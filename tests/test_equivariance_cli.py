"""`cryoxplain evaluate equivariance` and the training-history callback."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.io.mrc import write_mrc
from cryoxplain.metrics.equivariance import EquivarianceCallback, evaluate_stack_equivariance
from cryoxplain.models.registry import register_architecture, save_model


@register_architecture("_eqv_test_net", task="denoise")
class _Net(torch.nn.Module):
    """Tiny conv net; ``isotropic=True`` makes its kernels rotation-symmetric (a radial blur)."""

    input_shape = None

    def __init__(self, isotropic: bool = False):
        super().__init__()
        # circular padding: a zero-padded convolution commutes with quarter turns only about the box
        # middle (N-1)/2, not about the particle centre N//2 on even boxes (docs/conventions.md)
        self.conv = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False, padding_mode="circular")
        with torch.no_grad():
            if isotropic:
                y, x = torch.meshgrid(torch.arange(5.) - 2, torch.arange(5.) - 2, indexing="ij")
                k = torch.exp(-(x ** 2 + y ** 2) / 2)
            else:
                k = torch.zeros(5, 5)
                k[2, 3:] = 1.0
                k[2, 0] = -0.5
            self.conv.weight.copy_((k / k.abs().sum())[None, None])

    def forward(self, x):
        return self.conv(x)


def _stack(path, n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    imgs = []
    for _ in range(n):
        cx, cy = rng.uniform(-5, 5, 2)
        imgs.append(np.exp(-((x - cx) ** 2 / 18 + (y - cy) ** 2 / 8)) + 0.3 * rng.standard_normal((size, size)))
    write_mrc(path, np.asarray(imgs, dtype=np.float32), voxel_size=2.0)
    return path


@pytest.fixture
def models(tmp_path):
    iso = save_model(tmp_path / "iso.safetensors", _Net(True), "_eqv_test_net", {"isotropic": True})
    ani = save_model(tmp_path / "ani.safetensors", _Net(False), "_eqv_test_net", {"isotropic": False})
    return iso, ani


def test_stack_equivariance_ranks_models(tmp_path, models):
    st = _stack(tmp_path / "p.mrcs")
    r_iso, info = evaluate_stack_equivariance(st, models[0], n_images=4, n_offgrid=3, device="cpu")
    r_ani, _ = evaluate_stack_equivariance(st, models[1], n_images=4, n_offgrid=3, device="cpu")
    assert info.arch == "_eqv_test_net" and r_iso.n_images == 4
    assert r_iso.summary["grid"] < 1e-5  # a 5x5 Gaussian kernel is symmetric under 90° rotations
    assert r_ani.summary["grid"] > 0.3
    assert r_ani.summary["offgrid"] > 10 * r_iso.summary["offgrid"]


def test_cli_table_json_plot_and_errors(tmp_path, models):
    from cryoxplain.cli.evaluate_equivariance import equivariance

    st = _stack(tmp_path / "p.mrcs")
    before = st.read_bytes()
    r = CliRunner().invoke(equivariance, [str(st), "--model", str(models[1]), "-n", "3", "--n-offgrid", "2",
                                          "--device", "cpu", "--plot", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    assert "off-grid" in r.output and "floor" in r.output and "mean grid" in r.output
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert st.read_bytes() == before
    r = CliRunner().invoke(equivariance, [str(st), "-m", str(models[0]), "-n", "3", "--angles", "33,200.5",
                                          "--device", "cpu", "--json", "--taper", "0"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d["offgrid"]) == {"33", "200.5"} and set(d["grid"]) == {"90", "180", "270"}
    assert d["summary"]["grid"] < 1e-5 and d["arch"] == "_eqv_test_net" and "taper 0" in d["mask"]
    assert d["summary"]["reference"] >= 0 and set(d["reference"]) == {"33", "200.5", "90", "180", "270"}
    assert max(d["reference"][a] for a in ("90", "180", "270")) < 1e-10
    assert d["summary"]["reference"] == pytest.approx((d["reference"]["33"] + d["reference"]["200.5"]) / 2)
    # existing plot without --force: refused before any work
    r = CliRunner().invoke(equivariance, [str(st), "-m", str(models[0]), "--plot", str(tmp_path / "e.png")])
    assert r.exit_code != 0
    r = CliRunner().invoke(equivariance, [str(st), "-m", str(models[0]), "--angles", "x,y"])
    assert r.exit_code != 0


def test_callback_columns():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 24, 24)
    cb = EquivarianceCallback(n_images=3, n_offgrid=2, seed=1)
    iso = cb(_Net(True), 0, x, None)
    ani = cb(_Net(False), 0, x, None)
    assert set(iso) == {"equivariance", "equivariance_grid", "equivariance_floor", "equivariance_reference"}
    assert iso["equivariance_grid"] < 1e-5 < 0.3 < ani["equivariance_grid"]
    assert ani["equivariance"] > iso["equivariance"]
    assert iso["equivariance_floor"] == ani["equivariance_floor"] > 0


def test_callback_skips_non_square_and_empty():
    cb = EquivarianceCallback(n_images=2, n_offgrid=1)
    assert cb(_Net(True), 0, torch.randn(2, 1, 16, 20), None) == {}
    assert cb(_Net(True), 0, torch.randn(0, 1, 16, 16), None) == {}


def test_cli_group_exit_codes(tmp_path, models):
    from cryoxplain.cli.main import cli

    st = _stack(tmp_path / "p.mrcs")
    r = CliRunner().invoke(cli, ["evaluate", "equivariance", str(st), "-m", str(models[1]), "-n", "2",
                                 "--n-offgrid", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "mean off-grid" in r.output
    r = CliRunner().invoke(cli, ["evaluate", "equivariance", str(st), "-m", str(tmp_path / "missing.safetensors")])
    assert r.exit_code == 2 and "error" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["evaluate", "equivariance", str(st), "-m", str(models[0]), "--angles", "x"])
    assert r.exit_code == 2


def test_train_command_records_equivariance(tmp_path):
    import h5py

    from cryoxplain.cli.main import cli

    rng = np.random.default_rng(0)
    clean = np.zeros((12, 16, 16), np.float32)
    clean[:, 5:11, 6:10] = 1.0
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32)
    write_mrc(tmp_path / "n.mrcs", noisy, voxel_size=1.0)
    write_mrc(tmp_path / "c.mrcs", clean, voxel_size=1.0)
    base = ["train", "--noisy", str(tmp_path / "n.mrcs"), "--clean", str(tmp_path / "c.mrcs"), "--epochs", "1",
            "--config", "depth=2", "--config", "width=2", "--device", "cpu", "--val-fraction", "0.25"]
    r = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "m.history.h5", "r") as f:
        for col in ("equivariance", "equivariance_grid", "equivariance_floor", "equivariance_reference"):
            assert f[col].shape == (2,) and np.all(np.isfinite(f[col][()])) and np.all(f[col][()] >= 0)
    r = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "m2.safetensors"), "--no-equivariance"])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "m2.history.h5", "r") as f:
        assert "equivariance" not in f


def test_rotation_augmentation_keeps_noise_variance():
    from cryoxplain.geometry.rotate import disc_mask
    from cryoxplain.imaging.augment import random_symmetry  # the one training augmentation (was train.denoise._rotate)

    torch.manual_seed(0)
    x = torch.randn(32, 1, 33, 33)
    m = torch.as_tensor(disc_mask(33, radius=10)).bool()
    v = random_symmetry(x, "rotate", torch.Generator().manual_seed(0))[:, 0][:, m].var().item()
    assert abs(v - 1.0) < 0.05  # bilinear interpolation would give ~0.5-0.7
