"""The training-history callback (:class:`cryoxplain.metrics.callbacks.EquivarianceCallback`) and the
equivariance columns it adds to ``cryoxplain train`` histories (moved from tests/test_equivariance_cli.py)."""
import numpy as np
import torch
from click.testing import CliRunner

from cryoxplain.imaging.filters import gaussian_blur
from cryoxplain.io.mrc import write_mrc
from cryoxplain.metrics.callbacks import EquivarianceCallback


def _iso(x):
    """Exactly equivariant under the quarter turns: a periodic isotropic blur."""
    return gaussian_blur(x, 1.0, border="periodic")


def _shift(x):
    """Not equivariant: a one-pixel shift along x."""
    return torch.roll(x, 1, dims=-1)


def test_callback_columns():
    torch.manual_seed(0)
    x = torch.randn(5, 1, 24, 24)
    cb = EquivarianceCallback(n_images=3, n_offgrid=2, seed=1)
    iso = cb(_iso, 0, x, None)
    ani = cb(_shift, 0, x, None)
    assert set(iso) == {"equivariance", "equivariance_grid", "equivariance_floor", "equivariance_reference"}
    assert iso["equivariance_grid"] < 1e-5 < 0.3 < ani["equivariance_grid"]
    assert ani["equivariance"] > iso["equivariance"]
    assert iso["equivariance_floor"] == ani["equivariance_floor"] > 0


def test_callback_skips_non_square_and_empty():
    cb = EquivarianceCallback(n_images=2, n_offgrid=1)
    assert cb(_iso, 0, torch.randn(2, 1, 16, 20), None) == {}
    assert cb(_iso, 0, torch.randn(0, 1, 16, 16), None) == {}


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


