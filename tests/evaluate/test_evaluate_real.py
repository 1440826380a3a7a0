"""``evaluate_real`` / ``cryoxplain evaluate real``: the no-ground-truth report on files (issue 13)."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.denoise import train_denoiser
from cryoxplain.evaluate import background_boxes, evaluate_real, read_picks
from cryoxplain.io.mrc import write_mrc

BOX, R, AMP = 32, 8, -0.5
PICKS = [(48 + 80 * i, 48 + 80 * j) for i in range(3) for j in range(2)]  # (row, column)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(0)
    mic = 3.0 + rng.standard_normal((256, 224)).astype(np.float32)
    yy, xx = np.mgrid[:256, :224]
    for y, x in PICKS:
        mic[(yy - y) ** 2 + (xx - x) ** 2 <= R * R] += AMP  # dark particles on ice of mean 3, σ 1
    write_mrc(d / "mic.mrc", mic, 4.0)
    parts = np.stack([mic[y - BOX // 2:y + BOX // 2, x - BOX // 2:x + BOX // 2] for y, x in PICKS])
    write_mrc(d / "parts.mrcs", parts, 4.0)
    rows = "\n".join(f"{i + 1:06d}@parts.mrcs {x * 2.0:.1f} {y * 2.0:.1f}" for i, (y, x) in enumerate(PICKS))
    (d / "parts.star").write_text("data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n"
                                  "_rlnMicrographOriginalPixelSize #3\n1 4.0 2.0\n\ndata_particles\nloop_\n"
                                  "_rlnImageName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n" + rows + "\n")
    return d


def test_picks_are_rescaled_to_the_micrograph_and_backgrounds_avoid_them(files):
    p = read_picks(files / "parts.star", 4.0)  # coordinates written at 2 Å/px (the "original" micrograph)
    assert np.allclose(p, PICKS)
    corners = background_boxes((256, 224), p, BOX)
    c = corners + BOX // 2
    assert len(corners) > 0
    assert np.sqrt(((c[:, None] - p[None]) ** 2).sum(-1)).min() >= 0.75 * BOX


def test_identity_gives_the_analytic_values(files):
    rep, _ = evaluate_real(files / "parts.star", torch.nn.Identity(), micrograph=files / "mic.mrc", n_noise=16,
                           n_offgrid=2, signal_radius=R, device="cpu")
    assert rep.n_images == len(PICKS) and rep.box == BOX and rep.pixel_size == pytest.approx(4.0)
    assert rep.equivariance["grid"] < 1e-6
    assert rep.contrast_sign["model"] == 0.0
    assert rep.lowpass_sigma_px == 0.0 and math.isinf(rep.half_gain_per_px)
    assert rep.j_invariant["model"] == pytest.approx(rep.j_invariant["identity"])
    for kind in ("white", "background"):
        assert rep.noise[kind]["energy"] == pytest.approx(1.0)
        assert rep.noise[kind]["energy_vs_lowpass"] == pytest.approx(1.0)
    s = rep.snr
    assert s["n_regions"] == len(PICKS) and s["raw_db"] == s["model_db"] == s["lowpass_db"]
    assert s["raw_db"] == pytest.approx(10 * math.log10(AMP ** 2), abs=2.0)  # μ_s² / v_b of the planted discs
    text = rep.format_table()
    assert "J-invariant" in text and "region SNR" in text


def test_cli_evaluate_real_with_a_trained_model(files, tmp_path):
    noisy = np.random.default_rng(1).standard_normal((16, BOX, BOX)).astype(np.float32)
    model = tmp_path / "m.safetensors"
    train_denoiser(noisy, method="masked", arch="cartesian", arch_config={"depth": 3, "width": 4}, epochs=1,
                   batch_size=8, device="cpu", progress=False, out=model)
    out = tmp_path / "r.json"
    args = ["evaluate", "real", str(files / "parts.star"), "-m", str(model), "--micrograph", str(files / "mic.mrc"),
            "--n-noise", "8", "--n-offgrid", "1", "--grid", "2", "-n", "4", "-d", "cpu", "--json", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["n_images"] == 4 and d["snr"]["n_regions"] == len(PICKS) and np.isfinite(d["j_invariant"]["model"])
    assert len(d["noise"]["white"]["spectrum"]) == BOX // 2 + 1
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "--force" in r.output  # never overwritten
    # picks without a micrograph, and a micrograph at another sampling, are refused in one line
    r = CliRunner().invoke(cli, ["evaluate", "real", str(files / "parts.mrcs"), "-m", str(model), "--picks",
                                 str(files / "parts.star"), "-d", "cpu"])
    assert r.exit_code == 2 and "--micrograph" in r.output, r.output
    write_mrc(tmp_path / "mic2.mrc", np.zeros((64, 64), np.float32), 8.0)
    r = CliRunner().invoke(cli, ["evaluate", "real", str(files / "parts.mrcs"), "-m", str(model), "--micrograph",
                                 str(tmp_path / "mic2.mrc"), "-d", "cpu"])
    assert r.exit_code == 2 and "Å/px" in r.output, r.output
