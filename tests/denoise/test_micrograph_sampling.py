"""Micrographs at their own sampling: Fourier-binned to the model's training pixel size by default
(the shipped model: 5 Å/px), --bin overrides, --upsample returns to the input size; the real
3838×3710 EPU micrograph end to end (slow)."""
import resource
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.denoise import Denoiser, denoise_micrograph, plan_binning
from cryoxplain.errors import FileQuirkWarning, ParameterError
from cryoxplain.imaging.fourier import fourier_crop
from cryoxplain.io.mrc import read_mrc, write_mrc
from cryoxplain.models.registry import read_model_info


def test_model_pixel_size_and_plan():
    assert read_model_info("default").pixel_size == 5.0
    p = plan_binning((3838, 3710), 0.8538, 5.0)
    assert p.shape == (655, 633) and p.binned and p.pixel_size == pytest.approx(5.0, rel=1e-3)
    assert p.crop[0] <= 3838 and p.crop[1] <= 3710
    p = plan_binning((3838, 3710), 0.8538, 5.0, bin=6)
    assert p.shape == (639, 618) and p.crop == (3834, 3708) and p.pixel_size == pytest.approx(6 * 0.8538)
    assert not plan_binning((100, 90), 0.85, 5.0, bin=1).binned
    assert not plan_binning((100, 90), 0.85, None).binned  # a model without a training pixel size
    with pytest.warns(UserWarning, match="coarser than the model"):
        assert not plan_binning((100, 90), 8.0, 5.0).binned
    with pytest.warns(UserWarning, match="pixel size unknown"):
        assert not plan_binning((100, 90), None, 5.0).binned
    with pytest.raises(ParameterError, match="bin must be"):
        plan_binning((100, 90), 1.0, 5.0, bin=0.5)


def test_default_bins_to_model_sampling_bin_and_upsample(tmp_path):
    rng = np.random.default_rng(0)
    mic = rng.standard_normal((250, 240)).astype(np.float32)
    src = tmp_path / "mic.mrc"
    write_mrc(src, mic, 1.0)
    den = Denoiser("default", device="cpu")
    out = denoise_micrograph(src, tmp_path / "a.mrc", den)
    a, px = read_mrc(out)
    assert a.shape == (50, 48) and px == pytest.approx(5.0)
    np.testing.assert_allclose(a, den.denoise_micrograph(fourier_crop(mic, (50, 48))), rtol=1e-5, atol=1e-5)
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(tmp_path / "b.mrc"), "--bin", "2", "-d", "cpu"])
    assert r.exit_code == 0, r.output
    assert read_mrc(tmp_path / "b.mrc")[0].shape == (125, 120) and read_mrc(tmp_path / "b.mrc")[1] == pytest.approx(2.0)
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(tmp_path / "c.mrc"), "--upsample", "-d", "cpu",
                                 "--pixel-size", "2.5"])
    assert r.exit_code == 0, r.output
    c, pxc = read_mrc(tmp_path / "c.mrc")
    assert c.shape == (250, 240) and pxc == pytest.approx(2.5)
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(tmp_path / "d.mrc"), "--bin", "0", "-d", "cpu"])
    assert r.exit_code == 2 and not (tmp_path / "d.mrc").exists()


@pytest.mark.slow
def test_real_epu_micrograph_end_to_end(tmp_path, shared_data):
    src = shared_data / "real" / "mrcfile_fei-extended.mrc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FileQuirkWarning)
        out = denoise_micrograph(src, tmp_path / "den.mrc", "default", device="cpu", patch_size=256)
        up = denoise_micrograph(src, tmp_path / "up.mrc", "default", device="cpu", upsample=True)
    a, px = read_mrc(out)
    assert a.shape == (655, 633) and px == pytest.approx(5.0, rel=1e-3) and np.isfinite(a).all()
    b, pxb = read_mrc(up)
    assert b.shape == (3838, 3710) and pxb == pytest.approx(0.8538, rel=1e-3)
    # bounded memory: the process never held more than a few copies of the 57 MB float32 image
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2.5e6  # KB
