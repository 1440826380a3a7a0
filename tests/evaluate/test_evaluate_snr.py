"""`cryoxplain evaluate snr` and :func:`cryoxplain.evaluate.evaluate_snr_files` (moved from tests/test_metrics_snr.py)."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.io.mrc import write_mrc


def test_cli_evaluate_snr(tmp_path):
    rng = np.random.default_rng(4)
    clean = rng.normal(size=(6, 32, 32)).astype(np.float32)
    noisy = clean + rng.normal(scale=2.0, size=clean.shape).astype(np.float32)
    est = clean + rng.normal(scale=0.5, size=clean.shape).astype(np.float32)
    for name, a in (("c", clean), ("n", noisy), ("e", est)):
        write_mrc(tmp_path / f"{name}.mrcs", a, 1.5)
    args = ["evaluate", "snr", "--clean", str(tmp_path / "c.mrcs"), "--estimate", str(tmp_path / "e.mrcs"),
            "--noisy", str(tmp_path / "n.mrcs")]
    r = CliRunner().invoke(cli, args + ["--json", "--plot", str(tmp_path / "frc.png")])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["snr_out_db"] == pytest.approx(10 * math.log10(1 / 0.25), abs=0.5)
    assert res["snr_in_db"] == pytest.approx(10 * math.log10(1 / 4), abs=0.5)
    assert res["frc_0.5"]["resolution_A"] >= 3.0  # never better than Nyquist (2 × 1.5 Å)
    assert (tmp_path / "frc.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0 and "SNR_out (dB)" in r.output and "Å" in r.output
    write_mrc(tmp_path / "short.mrcs", est[:3], 1.5)
    r = CliRunner().invoke(cli, ["evaluate", "snr", "--clean", str(tmp_path / "c.mrcs"), "--estimate",
                                 str(tmp_path / "short.mrcs"), "--plot", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and not (tmp_path / "x.png").exists()


def test_evaluate_snr_files_matches_the_accumulator(tmp_path):
    from cryoxplain.evaluate import evaluate_snr_files
    from cryoxplain.metrics.snr import DenoiseMetrics

    rng = np.random.default_rng(1)
    clean = rng.normal(size=(5, 24, 24)).astype(np.float32)
    est = clean + rng.normal(scale=0.3, size=clean.shape).astype(np.float32)
    write_mrc(tmp_path / "c.mrcs", clean, 2.0)
    write_mrc(tmp_path / "e.mrcs", est, 2.0)
    res = evaluate_snr_files(tmp_path / "c.mrcs", tmp_path / "e.mrcs", batch_size=2)
    m = DenoiseMetrics(clean.shape[1:], pixel_size=2.0)
    m.update(clean, est)
    assert res["snr_out"] == pytest.approx(m.snr_out()) and res["psnr_db"] == pytest.approx(m.psnr())
    np.testing.assert_allclose(res["frc_curve"]["frc"], m.frc().frc)
    assert set(res["files"]) == {"clean", "estimate"}


def test_metrics_import_no_io_models_or_plotting():
    """metrics is math only: importing it (and the old names' shims) pulls in no I/O, models or matplotlib."""
    import subprocess
    import sys

    code = ("import sys, cryoxplain.metrics.snr, cryoxplain.metrics.equivariance, cryoxplain.metrics.report, "
            "cryoxplain.metrics.callbacks, cryoxplain.metrics.plots\n"
            "bad = [m for m in sys.modules if m.startswith(('cryoxplain.io', 'cryoxplain.models', 'cryoxplain.evaluate', "
            "'matplotlib', 'mrcfile'))]\n"
            "assert not bad, bad\n"
            "from cryoxplain.metrics.snr import evaluate_files\n"
            "from cryoxplain.metrics.equivariance import evaluate_stack_equivariance, EquivarianceCallback\n"
            "import cryoxplain.evaluate as E, cryoxplain.metrics.callbacks as C\n"
            "assert evaluate_files is E.evaluate_snr_files and evaluate_stack_equivariance is E.evaluate_stack_equivariance\n"
            "assert EquivarianceCallback is C.EquivarianceCallback\n")
    subprocess.run([sys.executable, "-c", code], check=True)
