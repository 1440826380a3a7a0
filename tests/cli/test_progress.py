"""Issue 18, items 10/11: tiles smaller than the receptive field are refused; simulate, evaluate
equivariance, and micrograph tiles report progress (training: tests/training/test_divergence.py) on stderr (tqdm, only on a
terminal by default)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.denoise.apply import Denoiser
from cryoxplain.errors import ParameterError
from cryoxplain.metrics.equivariance import evaluate_equivariance
from cryoxplain.models.registry import build_model
from cryoxplain.sim import simulate_to_files

S = Path(__file__).resolve().parents[2] / "sample_data"


def test_micrograph_tiles_smaller_than_the_receptive_field_are_refused_before_any_work(tmp_path):
    r = CliRunner().invoke(cli, ["denoise", str(S / "epu_bin6_crop.mrc"), "-o", str(tmp_path / "m.mrc"), "-s", "1",
                                 "--device", "cpu"])
    assert r.exit_code == 2, r.output
    (line,) = r.output.strip().splitlines()
    assert "receptive field (35 px)" in line and "--patch-size 35 or more" in line
    assert list(tmp_path.iterdir()) == []


def test_tiles_show_progress_and_still_match_whole_image_denoising(capsys):
    torch.manual_seed(0)
    den = Denoiser(build_model("cartesian", depth=3, width=4), device="cpu")
    img = np.random.default_rng(0).standard_normal((40, 40)).astype(np.float32)
    whole = den.denoise_micrograph(img, patch_size=64)
    tiled = den.denoise_micrograph(img, patch_size=den.receptive_radius * 2 + 1, progress=True)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert "tiles" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="receptive field"):
        den.denoise_micrograph(img, patch_size=2)


def test_simulate_reports_progress_per_chunk(tmp_path):
    seen = []
    simulate_to_files("phantom", 10, tmp_path / "s", box=16, chunk=4, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_equivariance_progress_counts_model_passes(capsys):
    x = torch.randn(2, 1, 16, 16)
    evaluate_equivariance(lambda z: z, x, n_offgrid=2, progress=True)
    err = capsys.readouterr().err
    assert "equivariance" in err and "0/6 [" in err  # total: 1 + 3 grid + 2 off-grid passes
