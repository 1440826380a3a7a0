"""The shipped default denoiser: loadable without code execution, and it denoises in-distribution data."""
import pytest

from cryoxplain.denoise import Denoiser
from cryoxplain.metrics.snr import snr, snr_db
from cryoxplain.models import load_model, shipped_models


def test_default_model_is_shipped_and_described():
    assert "default" in shipped_models()
    path = shipped_models()["default"]
    assert path.stat().st_size < 5e6
    model, info = load_model("default")
    assert info.arch == "cartesian" and info.task == "denoise"
    assert {"depth", "width", "kernel_size"} <= set(info.config)
    t = info.training
    assert t["script"] == "scripts/train_default_model.py" and "normalization" in t
    # the general model (issue 13): several structures, β-galactosidase held out, pixel size recorded
    dist = t["data"]["distribution"]
    assert len(dist["structures"]) >= 3 and t["data"]["held_out_structure"] == "ngl_betaGal.mrc"
    assert not any("gal" in s.lower() for s in dist["structures"])
    assert info.pixel_size == 5.0 and dist["snr_range"] == [0.01, 0.5] and dist["coloured_fraction"] > 0


def test_default_spiral_is_shipped_and_described():
    model, info = load_model("default-spiral")
    assert info.arch == "spiral" and info.task == "denoise" and info.config["odd"] is True
    assert info.pixel_size == 5.0 and info.training["data"]["held_out_structure"] == "ngl_betaGal.mrc"


def test_default_model_denoises_simulated_ribosome(shared_data):
    try:
        from cryoxplain.sim import load_density, simulate_particles
    except ImportError:
        pytest.skip("cryoxplain.sim not available yet")
    dens = load_density(shared_data / "aspire_clean70SRibosome_vol_65p.mrc", pixel_size=5.0)
    sim = simulate_particles(dens, 12, box=64, snr=0.25, seed=4242)
    out = Denoiser("default", device="cpu").denoise_images(sim.noisy)
    gain = snr_db(snr(sim.clean, out)) - snr_db(snr(sim.clean, sim.noisy))
    assert gain > 8.0  # the benchmark measures ≈ 13 dB at this SNR
