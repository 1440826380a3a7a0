"""Config key ``odd``: exact contrast-sign equivariance F(−x) = −F(x) of the denoisers (issue 13),
for new nets, the shipped models (through the whole denoising path, normalisation included), and
old files that predate the key (they load unchanged, as non-odd nets)."""
import numpy as np
import pytest
import torch

from cryoxplain.models import build_model, load_model, read_model_info, save_model
from cryoxplain.models.cartesian import odd_part

BOX = 24
SMALL = {"cartesian": dict(depth=4, width=6), "spiral": dict(box_size=BOX, depth=4, width=6)}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CRYOXPLAIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def _trained_like(arch, **cfg):
    torch.manual_seed(0)
    m = build_model(arch, **SMALL[arch], **cfg)
    with torch.no_grad():
        m.train()(2 * torch.randn(6, 1, BOX, BOX) + 0.5)  # non-trivial batch-norm statistics
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.bias.uniform_(-1, 1)
    return m.eval()


def _sign_error(fn, x):
    with torch.no_grad():
        a, b = fn(x), fn(-x)
    return float((a + b).norm() / a.norm())


@pytest.mark.parametrize("arch", ["cartesian", "spiral"])
@pytest.mark.parametrize("residual", [True, False])
def test_new_nets_are_odd_exactly(arch, residual):
    m = _trained_like(arch, residual=residual)
    assert m.odd is True and m.config()["odd"] is True
    x = torch.randn(3, 1, BOX, BOX) + 0.3
    assert _sign_error(m, x) <= 1e-6
    assert _sign_error(m.for_inference(), x) <= 1e-6
    # and the odd net is the odd part of the same weights without the construction
    plain = _trained_like(arch, residual=residual, odd=False)
    state = {k: v for k, v in m.state_dict().items()}
    missing = plain.load_state_dict(state, strict=False)
    assert list(missing.unexpected_keys) == []  # the odd net has only fewer parameters (no output bias)
    for k in missing.missing_keys:
        assert k.endswith("bias")
        with torch.no_grad():
            plain.get_parameter(k).zero_()
    with torch.no_grad():
        torch.testing.assert_close(m(x), odd_part(plain, x), atol=1e-5, rtol=1e-5)
        assert _sign_error(plain, x) > 1e-3  # a non-odd net is not sign-equivariant by accident


@pytest.mark.parametrize("arch", ["cartesian", "spiral"])
def test_files_without_the_key_load_unchanged(tmp_path, arch):
    m = _trained_like(arch, odd=False)
    old_cfg = {k: v for k, v in m.config().items() if k != "odd"}
    path = save_model(tmp_path / "old.safetensors", m, arch, old_cfg)
    assert read_model_info(path).config["odd"] is False
    m2, _ = load_model(path)
    x = torch.randn(2, 1, BOX, BOX)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))


@pytest.mark.parametrize("name", ["default", "default-spiral"])
def test_shipped_models_are_contrast_sign_equivariant(name):
    """‖F(−x) + F(x)‖ ≤ 1e-6 ‖F(x)‖ for the shipped models, through the whole denoising path
    (per-image normalisation, inference form, back to input units)."""
    from cryoxplain.denoise import Denoiser

    model, info = load_model(name)
    assert info.config["odd"] is True and model.odd is True
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((4, 64, 64)) * 3 + 1.5).astype(np.float32)  # non-zero mean: normalisation matters
    den = Denoiser(name, device="cpu")
    a, b = den.denoise_images(x), den.denoise_images(-x)
    err = np.linalg.norm((a.astype(np.float64) + b).ravel()) / np.linalg.norm(a.astype(np.float64).ravel())
    assert err <= 1e-6
