"""Entry-point discovery: a plugin registered only through metadata created here is found, listed and runs.

The plugin is the complete example of docs/plugins.md, extracted from the page, so the
documentation cannot drift from working code.
"""
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from entry_point_helpers import doc_python_block, install_distribution
from cryoxplain.cli.main import cli
from cryoxplain.errors import PluginError
from cryoxplain.explain import create_explainer, get_explainer, list_plugins
from cryoxplain.explain.targets import PixelOutput


def _doc_plugin_source() -> str:
    return doc_python_block("plugins.md", "class GradientTimesInput")


def _install(tmp_path, name, module, source, value, version="0.1"):
    """A minimal installed distribution: the module plus a dist-info with entry points."""
    return install_distribution(tmp_path, module, source, "cryoxplain.explainers", {name: value}, version)


@pytest.fixture
def doc_plugin(tmp_path, monkeypatch):
    site = _install(tmp_path, "gradient_x_input", "cx_doc_plugin", _doc_plugin_source(),
                    "cx_doc_plugin:GradientTimesInput")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("cx_doc_plugin", None)


def _denoiser():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(),
                               torch.nn.Conv2d(4, 1, 3, padding=1)).eval()


def test_plugin_from_entry_point_metadata_is_found_and_runs(doc_plugin):
    names = {r.name: r for r in list_plugins()}
    assert names["gradient_x_input"].ok
    assert {"gradient", "integrated_gradients", "smoothgrad"} <= set(names)
    cls = get_explainer("gradient_x_input")
    assert cls.__module__ == "cx_doc_plugin"
    model, x = _denoiser(), torch.randn(2, 1, 10, 10)
    att = create_explainer("gradient_x_input", reference_value="0.5").attribute(model, x, PixelOutput(4, 5))
    g = create_explainer("gradient").attribute(model, x, PixelOutput(4, 5)).maps
    assert np.allclose(att.maps, (x[:, 0].numpy() - 0.5) * g, atol=1e-6)
    assert att.provenance["params"] == {"reference_value": 0.5}
    from cryoxplain.testing import check_explainer

    check_explainer(cls)  # the documented example passes the conformance suite


def test_plugin_listed_and_run_by_cli(doc_plugin, tmp_path):
    from cryoxplain.io.mrc import write_mrc

    r = CliRunner().invoke(cli, ["plugins"])
    assert r.exit_code == 0, r.output
    assert "gradient_x_input" in r.output and "reference_value=0.0" in r.output and "arXiv:1605.01713" in r.output
    assert "integrated_gradients" in r.output and "steps=50" in r.output

    from cryoxplain.models.registry import ArchitectureSpec, register_architecture, save_model

    register_architecture(ArchitectureSpec("_test_plugins_denoiser", "denoise", lambda: _denoiser()))
    save_model(tmp_path / "m.safetensors", _denoiser(), "_test_plugins_denoiser", {})
    write_mrc(tmp_path / "s.mrcs", np.random.default_rng(0).normal(size=(3, 10, 10)).astype(np.float32))
    r = CliRunner().invoke(cli, ["explain", "--model", str(tmp_path / "m.safetensors"), "--method", "gradient_x_input",
                                 "--target", "pixel:3,3", str(tmp_path / "s.mrcs"), "-o", str(tmp_path / "a.h5")])
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["attribution/maps"].shape == (3, 10, 10)
        assert f.attrs["method"] == "gradient_x_input"


def test_broken_plugin_is_listed_with_its_error(tmp_path, monkeypatch):
    site = _install(tmp_path, "broken_thing", "cx_broken_plugin", "import does_not_exist_anywhere\n",
                    "cx_broken_plugin:Nope")
    _install(tmp_path, "not_an_explainer", "cx_wrong_plugin", "class Foo:\n    pass\n", "cx_wrong_plugin:Foo")
    monkeypatch.syspath_prepend(str(site))
    recs = {r.name: r for r in list_plugins()}
    assert not recs["broken_thing"].ok and "does_not_exist_anywhere" in recs["broken_thing"].error
    assert not recs["not_an_explainer"].ok and "not an Explainer" in recs["not_an_explainer"].error
    assert recs["gradient"].ok  # the others still load
    r = CliRunner().invoke(cli, ["plugins"])
    assert r.exit_code == 0 and "broken_thing  [BROKEN]" in r.output and "does_not_exist_anywhere" in r.output
    with pytest.raises(PluginError, match="failed to load"):
        get_explainer("broken_thing")
    sys.modules.pop("cx_wrong_plugin", None)


def test_noise_std_references():
    """SmoothGrad's σ per image: noise_level × range (paper) or × std; anything else is refused."""
    from cryoxplain.errors import ParameterError
    from cryoxplain.explain.sampling import noise_std

    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rng = x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))
    torch.testing.assert_close(noise_std(x, 0.2), 0.2 * rng)
    torch.testing.assert_close(noise_std(x, 0.2, "std"), 0.2 * x.reshape(3, -1).std(dim=1))
    with pytest.raises(ParameterError, match="noise_reference"):
        noise_std(x, 0.2, "max")


def test_smoothgrad_noise_reference_param():
    """noise_reference=std reaches the noise: extras report σ = level × image std."""
    from cryoxplain.testing.toys import toy_denoiser

    model = toy_denoiser()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    a = create_explainer("smoothgrad", n_samples=2, noise_level=0.1, noise_reference="std").attribute(
        model, x, PixelOutput(8, 8))
    torch.testing.assert_close(torch.as_tensor(a.extras["noise_std"]).float(), 0.1 * x.reshape(2, -1).std(dim=1))
