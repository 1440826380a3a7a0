"""`cryoxplain evaluate equivariance` and :func:`cryoxplain.evaluate.evaluate_stack_equivariance`."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.evaluate import evaluate_stack_equivariance
from cryoxplain.io.mrc import write_mrc
from cryoxplain.models.registry import ArchitectureSpec, register_architecture, save_model


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


register_architecture(ArchitectureSpec("_eqv_test_net", "denoise", _Net))


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
