"""Architectures through entry points, the model protocol, and ``cryoxplain.testing.check_architecture``.

``check_architecture`` runs over every architecture installed in the environment (parametrised by
discovery, so a new entry point is covered automatically) and over the toy models; broken toys
show that it fails with a message naming the check.  The third-party architecture is the complete
example of docs/plugins.md, extracted from the page and installed through entry-point metadata.
"""
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from entry_point_helpers import doc_python_block, install_distribution
from cryoxplain.errors import ModelFileError
from cryoxplain.models import (ArchitectureSpec, CryoxplainModel, ModelBase, architectures, build_model,
                               list_architectures, load_model, register_architecture, save_model)
from cryoxplain.models.protocol import (conforms, inference_form, model_description, model_input_shape,
                                        model_receptive_radius, model_task)
from cryoxplain.models.registry import GROUP, rediscover_architectures
from cryoxplain.testing import TOY_SPECS, IsotropicBlur, check_architecture

INSTALLED = [r.name for r in list_architectures() if r.entry_point is not None]


def test_builtin_architectures_are_entry_points():
    assert {"cartesian", "spiral", "classifier"} <= set(INSTALLED)
    recs = {r.name: r for r in list_architectures()}
    assert recs["cartesian"].entry_point.group == GROUP
    assert recs["classifier"].spec.task == "classify" and recs["spiral"].spec.task == "denoise"
    assert "cryoxplain.models.cartesian:ARCHITECTURE" in (REPO / "pyproject.toml").read_text()


@pytest.mark.parametrize("arch", INSTALLED)
def test_every_installed_architecture_conforms(arch):
    check_architecture(arch)


@pytest.mark.parametrize("spec", TOY_SPECS, ids=lambda s: s.name)
def test_toy_models_conform(spec):
    check_architecture(spec)
    assert spec.name not in architectures()  # registered only for the duration of the check


def test_builtin_models_follow_the_protocol():
    for arch, task in (("cartesian", "denoise"), ("spiral", "denoise"), ("classifier", "classify")):
        m = build_model(arch, **dict(list_architectures_spec(arch).small_config))
        assert isinstance(m, CryoxplainModel) and conforms(m) and m.task == task == model_task(m)
    assert model_input_shape(build_model("spiral", box_size=24, depth=3, width=4)) == (24, 24)
    assert model_receptive_radius(build_model("cartesian", depth=3, width=4)) == 3


def list_architectures_spec(name):
    return {r.name: r.spec for r in list_architectures()}[name]


def test_protocol_helpers_accept_foreign_modules():
    plain = torch.nn.Conv2d(1, 1, 3, padding=1)
    assert not conforms(plain) and model_task(plain) is None and model_input_shape(plain) is None
    assert model_description(plain) == "Conv2d" and model_receptive_radius(plain) is None
    assert inference_form(plain) is plain and model_description(None) == ""
    plain.input_shape, plain.cryoxplain_task = [16, 12], "classify"  # pre-protocol attribute still read
    assert model_input_shape(plain) == (16, 12) and model_task(plain) == "classify"
    blur = IsotropicBlur(1.0)
    assert blur.description == "IsotropicBlur"
    blur.description = "blur (b.safetensors)"
    assert model_description(blur) == "blur (b.safetensors)"


def test_load_model_sets_the_description(tmp_path):
    m = build_model("cartesian", depth=3, width=4)
    save_model(tmp_path / "c.safetensors", m, "cartesian", m.config())
    loaded, _ = load_model(tmp_path / "c.safetensors")
    assert loaded.description == "cartesian (c.safetensors)"


@pytest.mark.parametrize("size", [16, 17])
def test_isotropic_blur_is_c4_equivariant(size):
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    f = IsotropicBlur(1.5).eval()
    for k in (1, 2, 3):
        assert torch.allclose(f(torch.rot90(x, k, (-2, -1))), torch.rot90(f(x), k, (-2, -1)), atol=1e-6)


# ---- broken toys: the suite must catch each ------------------------------------------------------

class _Good(ModelBase):
    task = "denoise"

    def __init__(self, width: int = 2):
        super().__init__()
        self.width = int(width)
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(1, self.width, 3, padding=1), torch.nn.Conv2d(self.width, 1, 1))

    def config(self):
        return {"width": self.width}

    def forward(self, x):
        return self.conv(x)


class _WrongShape(_Good):
    def forward(self, x):
        return self.conv(x)[..., 1:, :]


class _NoTask(torch.nn.Module):
    input_shape = None

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class _ForgetsConfig(_Good):
    def config(self):
        return {}  # the rebuilt model has the default width


class _NonDeterministic(_Good):
    def forward(self, x):
        return self.conv(x) + 1e-3 * torch.rand_like(x)


class _UnsavedState(_Good):
    """Output depends on a random non-persistent buffer: a reloaded model differs."""

    def __init__(self, width: int = 2):
        super().__init__(width)
        self.register_buffer("offset", torch.randn(1), persistent=False)

    def forward(self, x):
        return self.conv(x) + self.offset


class _TiedWeights(_Good):
    """Two layers share one weight tensor: safetensors refuses to save shared storage."""

    def __init__(self, width: int = 2):
        super().__init__(width)
        self.again = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.second = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.second.weight = self.again.weight

    def forward(self, x):
        return self.second(self.again(self.conv(x)))


class _BatchCoupled(_Good):
    def forward(self, x):
        return self.conv(x) - x.mean()


class _Float64(_Good):
    def forward(self, x):
        return self.conv(x).double()


class _WrongTask(_Good):
    task = "classify"


class _NotJson(_Good):
    def config(self):
        return {"width": self.width, "dtype": torch.float32}


BROKEN = [
    (_WrongShape, {"width": 3}, "forward: a denoiser must map"),
    (_NoTask, {}, "protocol: _NoTask lacks task"),
    (_ForgetsConfig, {"width": 3}, r"config\(\) rebuild"),
    (_NonDeterministic, {"width": 3}, "determinism"),
    (_UnsavedState, {"width": 3}, r"config\(\) rebuild: outputs"),  # weights outside the state_dict
    (_TiedWeights, {"width": 3}, "save/load"),
    (_BatchCoupled, {"width": 3}, "batch independence"),
    (_Float64, {"width": 3}, "dtype is torch.float64"),
    (_WrongTask, {"width": 3}, "model.task is 'classify'"),
    (_NotJson, {"width": 3}, "not JSON-serialisable"),
]


@pytest.mark.parametrize("cls, config, match", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_check_architecture_fails_on_broken_toys(cls, config, match):
    spec = ArchitectureSpec("_broken_toy", "denoise", cls, small_config=config)
    with pytest.raises(AssertionError, match=match) as err:
        check_architecture(spec)
    assert "architecture '_broken_toy' (denoise)" in str(err.value)
    assert "_broken_toy" not in architectures()
    check_architecture(ArchitectureSpec("_good_toy", "denoise", _Good, small_config={"width": 3}))


def test_check_architecture_reports_unknown_names():
    with pytest.raises(AssertionError, match="unknown architecture 'nosuch'"):
        check_architecture("nosuch")


def test_spec_validation():
    with pytest.raises(ValueError, match="task must be one of"):
        ArchitectureSpec("x", "segment", _Good)
    with pytest.raises(TypeError, match="factory must be callable"):
        ArchitectureSpec("x", "denoise", None)


def test_register_architecture_spec_and_deprecated_decorator(tmp_path):
    spec = register_architecture(ArchitectureSpec("_test_registered", "denoise", _Good))
    assert architectures()["_test_registered"] == "denoise" and spec.name == "_test_registered"
    with pytest.warns(DeprecationWarning, match="ArchitectureSpec"):
        @register_architecture("_test_old_style", task="denoise", legacy_defaults={"width": 5})
        def _factory(width=2):
            return _Good(width)
    assert _factory(3).width == 3 and architectures()["_test_old_style"] == "denoise"
    m = _factory(5)
    save_model(tmp_path / "o.safetensors", m, "_test_old_style", {})
    assert load_model(tmp_path / "o.safetensors")[0].width == 5  # legacy default fills the missing key


# ---- third-party architectures through entry-point metadata ---------------------------------------

def _install(tmp_path, module, source, entries: dict):
    return install_distribution(tmp_path, module, source, GROUP, entries)


def _doc_architecture_source() -> str:
    return doc_python_block("plugins.md", "class ShallowDenoiser")


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    site = _install(tmp_path, "cx_doc_arch", _doc_architecture_source(), {"shallow": "cx_doc_arch:SHALLOW"})
    _install(tmp_path, "cx_broken_arch", "import does_not_exist_anywhere\n", {"broken_arch": "cx_broken_arch:X"})
    _install(tmp_path, "cx_wrong_arch", "X = 3\nfrom cx_doc_arch import SHALLOW\n",
             {"not_a_spec": "cx_wrong_arch:X", "misnamed": "cx_wrong_arch:SHALLOW"})
    monkeypatch.syspath_prepend(str(site))
    rediscover_architectures()
    yield
    rediscover_architectures()
    for mod in ("cx_doc_arch", "cx_broken_arch", "cx_wrong_arch"):
        sys.modules.pop(mod, None)


def test_third_party_architecture_is_found_and_conforms(third_party, tmp_path):
    assert architectures()["shallow"] == "denoise"
    check_architecture("shallow")
    m = build_model("shallow", kernel_size=7)
    save_model(tmp_path / "s.safetensors", m, "shallow", m.config())
    loaded, info = load_model(tmp_path / "s.safetensors")
    assert info.arch == "shallow" and loaded.kernel_size == 7 and loaded.receptive_radius == 3


def test_broken_entry_points_are_reported_not_fatal(third_party):
    recs = {r.name: r for r in list_architectures()}
    assert not recs["broken_arch"].ok and "ModuleNotFoundError" in recs["broken_arch"].error
    assert "not a cryoxplain.models.ArchitectureSpec" in recs["not_a_spec"].error
    assert "is named 'shallow'" in recs["misnamed"].error
    known = architectures()
    assert "broken_arch" not in known and "cartesian" in known and "shallow" in known
    with pytest.raises(ModelFileError, match="broken_arch.*failed to load.*does_not_exist_anywhere"):
        build_model("broken_arch")
    with pytest.raises(AssertionError, match="discovery.*failed to load"):
        check_architecture("broken_arch")


def test_discovery_is_lazy():
    code = ("import sys\nfrom cryoxplain.models import build_model\nbuild_model('cartesian', depth=3, width=4)\n"
            "assert 'cryoxplain.models.cartesian' in sys.modules\n"
            "assert 'cryoxplain.models.spiral' not in sys.modules, 'spiral imported for a cartesian build'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
