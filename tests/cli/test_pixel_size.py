"""Issue 18, item 7: one pixel-size validator (finite, > 0) behind every --pixel-size; evaluate snr
never prints an inf/NaN resolution."""
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.errors import ParameterError
from cryoxplain.metrics.report import format_snr_table
from cryoxplain.metrics.snr import DenoiseMetrics, FRCResult, frc_resolution
from cryoxplain.utils import check_pixel_size

S = Path(__file__).resolve().parents[2] / "sample_data"
NOISY, CLEAN = str(S / "ribosome70S_noisy.mrcs"), str(S / "ribosome70S_clean.mrcs")
BAD = ["-1", "nan", "0", "inf", "-inf"]


def test_check_pixel_size():
    assert check_pixel_size(None) is None and check_pixel_size(1.5) == 1.5 and check_pixel_size("2") == 2.0
    for bad in (0, -1.0, math.nan, math.inf, "x", True):
        with pytest.raises(ParameterError, match="finite number of Å/px > 0"):
            check_pixel_size(bad)
    with pytest.raises(ParameterError):
        DenoiseMetrics((8, 8), pixel_size=-1)


@pytest.mark.parametrize("px", BAD)
@pytest.mark.parametrize("command", [
    ["evaluate", "snr", "--clean", CLEAN, "--estimate", NOISY],
    ["denoise", NOISY, "-o", "{tmp}/d.mrcs", "--device", "cpu"],
    ["simulate", "--phantom", "-n", "2", "--box", "16", "-o", "{tmp}/s"],
])
def test_every_pixel_size_option_refuses_bad_values_on_one_line(tmp_path, command, px):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command] + ["--pixel-size", px]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--pixel-size" in lines[0] and "finite number" in lines[0], r.output
    assert list(tmp_path.iterdir()) == []


def test_a_curve_below_threshold_from_the_first_ring_has_no_resolution_not_inf():
    res = FRCResult(frc=np.array([1.0, 0.1, 0.05, 0.0]), ring=np.arange(4), box=8, pixel_size=2.0)
    res.frc[0] = 0.1  # below 0.5 already at ring 0 → crossing at ring 0
    c = frc_resolution(res, 0.5)
    assert c["resolution_A"] is None
    table = format_snr_table({"n_images": 1, "mask": "disc", "snr_out": 1.0, "snr_out_db": 0.0, "psnr_db": 1.0,
                              "psnr_data_range": 1.0, "frc_0.5": c, "frc_0.143": c})
    assert "inf" not in table and "nan" not in table.lower() and "no resolution" in table


def test_evaluate_snr_with_a_pixel_size_prints_finite_resolutions():
    r = CliRunner().invoke(cli, ["evaluate", "snr", "--clean", CLEAN, "--estimate", NOISY, "--pixel-size", "2.5"])
    assert r.exit_code == 0, r.output
    assert "inf" not in r.output and "nan" not in r.output.lower() and " Å" in r.output
