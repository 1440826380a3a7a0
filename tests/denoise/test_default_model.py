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
    assert t["data"]["density"] == "aspire_clean70SRibosome_vol_65p.mrc"


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
