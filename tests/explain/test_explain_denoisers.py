"""Explaining the real denoisers (shipped cartesian model, a spiral model) with every target type on CPU."""
import numpy as np
import pytest
import torch

from conftest import REPO
from cryoxplain.explain import explain_stack, read_attributions
from cryoxplain.io.mrc import read_mrc, write_mrc
from cryoxplain.models.registry import build_model, load_model, save_model

STACK = REPO / "sample_data" / "ribosome70S_noisy.mrcs"
CLEAN = REPO / "sample_data" / "ribosome70S_clean.mrcs"
TARGETS = ["pixel:32,32", "roi:mask.mrc", "roi:24,24,40,40", "roi:32,32,6", "disc-energy", "disc-energy:20",
           "reference:ref.mrc"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    if not STACK.exists():
        pytest.skip("sample_data not present")
    d = tmp_path_factory.mktemp("den")
    noisy, _ = read_mrc(STACK)
    clean, _ = read_mrc(CLEAN)
    mask = np.zeros((64, 64), np.float32)
    mask[clean[0] > np.percentile(clean[0], 90)] = 1  # the densest tenth of particle 0
    write_mrc(d / "mask.mrc", mask)
    write_mrc(d / "ref.mrc", clean[0])  # the ground-truth projection of particle 0
    torch.manual_seed(0)
    spiral = build_model("spiral", depth=3, width=4).eval()
    save_model(d / "spiral.safetensors", spiral, "spiral", {"depth": 3, "width": 4})
    return d, np.array(noisy[:3])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", ["default", "spiral"])
def test_every_target_on_real_denoisers(data, target, model, monkeypatch):
    d, particles = data
    monkeypatch.chdir(d)
    spec = "default" if model == "default" else d / "spiral.safetensors"
    out = d / f"{model}_{target.replace(':', '_').replace(',', '_').replace('.', '_')}.h5"
    res = explain_stack(spec, particles, out, method="gradient", target=target, batch_size=2, device="cpu")
    maps, extras, prov = read_attributions(out)
    assert maps.shape == (3, 64, 64) and np.isfinite(maps).all() and np.abs(maps).max() > 0
    assert prov["model_task"] == "denoise" and prov["target"] == res.target
    if target.startswith("pixel") and model == "default":
        net, _ = load_model("default")
        r = net.receptive_radius  # an output pixel depends only on inputs within this radius
        outside = np.ones((64, 64), bool)
        outside[32 - r:32 + r + 1, 32 - r:32 + r + 1] = False
        assert np.abs(maps[:, outside]).max() == 0
        assert np.abs(maps[:, 32, 32]).min() > 0


def test_ig_completeness_on_shipped_denoiser(data):
    d, particles = data
    explain_stack("default", particles[:2], d / "ig.h5", method="integrated_gradients",
                  params={"steps": 16, "baseline": "blur", "baseline_sigma": 4}, target="reference:" + str(d / "ref.mrc"),
                  device="cpu")
    _, extras, _ = read_attributions(d / "ig.h5")
    fx_fb = np.abs(extras["target_value"] - extras["baseline_value"])
    assert (np.abs(extras["completeness_gap"]) < 0.02 * fx_fb).all()
