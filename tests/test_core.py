"""Core pieces: device selection, model files, explainer protocol, CLI error handling."""
import json

import pytest
import torch
from click.testing import CliRunner

from cryoxplain.errors import DeviceError, ModelFileError, ParameterError, PluginError
from cryoxplain.explain.base import Explainer, Param, Target, explained_function, gradient
from cryoxplain.explain.registry import get_explainer
from cryoxplain.models.registry import (ArchitectureSpec, build_model, load_model, read_model_info,
                                        register_architecture, save_model)
from cryoxplain.utils import resolve_device, seed_everything


class _Tiny(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, 1, 1)
        self.input_shape = None

    def forward(self, x):
        return self.out(torch.relu(self.conv(x)))


register_architecture(ArchitectureSpec("_test_tiny", "denoise", _Tiny))


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_seed_reproducible():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_model_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = build_model("_test_tiny", width=5)
    p = save_model(tmp_path / "m.safetensors", m, "_test_tiny", {"width": 5}, {"epochs": 3})
    info = read_model_info(p)
    assert info.arch == "_test_tiny" and info.task == "denoise" and info.config == {"width": 5}
    assert info.training == {"epochs": 3} and info.version
    m2, _ = load_model(p)
    x = torch.randn(2, 1, 8, 8)
    m.eval()
    assert torch.allclose(m(x), m2(x))
    with pytest.raises(Exception):  # no overwrite without force
        save_model(p, m, "_test_tiny", {"width": 5})


def test_model_file_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelFileError):
        load_model(bad)
    with pytest.raises(ModelFileError, match="neither a file nor a shipped"):
        load_model("no-such-model-name")
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelFileError, match="not a cryoxplain model"):
        load_model(tmp_path / "foreign.safetensors")
    # wrong weights for the declared architecture
    m = build_model("_test_tiny", width=5)
    p = save_model(tmp_path / "m.safetensors", m, "_test_tiny", {"width": 5})
    from safetensors import safe_open
    from safetensors.torch import save_file as sf
    with safe_open(str(p), framework="pt") as f:
        meta = json.loads(f.metadata()["cryoxplain"])
    meta["config"] = {"width": 7}
    sf({k: v for k, v in m.state_dict().items()}, str(tmp_path / "mism.safetensors"),
       metadata={"cryoxplain": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="do not match"):
        load_model(tmp_path / "mism.safetensors")


def test_param_parsing():
    p = Param("steps", int, 32, min=1)
    assert p.parse("64") == 64
    with pytest.raises(ParameterError):
        p.parse("x")
    with pytest.raises(ParameterError):
        p.parse("0")
    assert Param("sq", bool, False).parse("true") is True
    with pytest.raises(ParameterError):
        Param("m", str, "a", choices=("a", "b")).parse("c")


class _Grad(Explainer):
    name = "_grad"
    params = (Param("absolute", bool, False),)

    def attribute(self, model, inputs, target):
        _, g = gradient(explained_function(model, target), inputs)
        return self.make_attribution(g.abs() if self.absolute else g, target, model)


def test_explainer_protocol_and_hdf5(tmp_path):
    import h5py

    model = _Tiny().eval()
    x = torch.randn(3, 1, 8, 8)
    tgt = Target.from_callable(lambda out: out.sum(dim=(1, 2, 3)), "sum")
    with pytest.raises(ParameterError, match="unknown parameter"):
        _Grad(bogus=1)
    att = _Grad(absolute="yes").attribute(model, x, tgt)
    assert att.maps.shape == (3, 8, 8) and (att.maps >= 0).all()
    assert att.provenance["params"] == {"absolute": True}
    with h5py.File(tmp_path / "a.h5", "w") as f:
        att.to_hdf5(f.create_group("g"))
        att.to_hdf5(f["g"], start=3)
        assert f["g/maps"].shape == (6, 8, 8)
        assert json.loads(f["g"].attrs["provenance"])["method"] == "_grad"


def test_linear_model_gradient_is_weight():
    # f(x) = <w, x>: the gradient must equal w exactly (sign convention: positive = increases f)
    w = torch.randn(1, 1, 6, 6)

    class Lin(torch.nn.Module):
        def forward(self, x):
            return (x * w).sum(dim=(1, 2, 3))[:, None]

    tgt = Target.from_callable(lambda out: out[:, 0], "logit0")
    _, g = gradient(explained_function(Lin(), tgt), torch.randn(2, 1, 6, 6))
    assert torch.allclose(g, w.expand(2, -1, -1, -1))


def test_unknown_explainer():
    with pytest.raises(PluginError, match="unknown explainer"):
        get_explainer("definitely-not-installed")


def test_cli_version_and_unknown_command():
    from cryoxplain.cli.main import cli

    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and "cryoxplain" in r.output
    r = CliRunner().invoke(cli, ["no-such-command"])
    assert r.exit_code == 2


def test_sigterm_leaves_no_partial_output(tmp_path):
    """A run killed by SIGTERM (a scheduler, `timeout`) leaves neither output nor temp file."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "from cryoxplain.cli.main import main, cli\n"
        "import click\n"
        "from cryoxplain.io.atomic import atomic_path\n"
        "@cli.command('_slow')\n"
        "@click.argument('out')\n"
        "def _slow(out):\n"
        "    with atomic_path(out) as tmp:\n"
        "        open(tmp, 'w').write('partial')\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "main(['_slow', sys.argv[1]])\n")
    out = tmp_path / "out.dat"
    p = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode != 0
    assert not out.exists()
    assert [f.name for f in tmp_path.iterdir()] == ["slow.py"]
