"""Issue 18, item 6: bad values give one-line errors (exit 2), never a traceback — seeds, --config
values of the wrong type (CLI and a model file's stored config), absurd model sizes (refused
before allocating), simulate --box, evaluate equivariance --angles nan/inf."""
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from cryoxplain.cli.main import cli
from cryoxplain.errors import ModelFileError, ParameterError
from cryoxplain.models.registry import build_model, check_config, load_model, parameter_bytes, save_model
from cryoxplain.utils import MAX_SEED, check_seed

S = Path(__file__).resolve().parents[2] / "sample_data"
NOISY, CLEAN = str(S / "ribosome70S_noisy.mrcs"), str(S / "ribosome70S_clean.mrcs")


def one_line_error(args, tmp_path, code=2):
    before = set(tmp_path.rglob("*"))
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("cryoxplain: error:")]
    assert len(errors) == 1, r.output
    assert set(tmp_path.rglob("*")) == before  # nothing written
    return errors[0]


def test_check_seed_accepts_the_whole_range_and_nothing_else():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED and check_seed(7.0) == 7
    for bad in (-1, MAX_SEED + 1, 1.5, "x", True, None):
        with pytest.raises(ParameterError, match="seed must be a whole number"):
            check_seed(bad)


@pytest.mark.parametrize("seed", ["-1", str(2 ** 63)])
@pytest.mark.parametrize("command", [
    ["simulate", "--phantom", "-n", "2", "--box", "16", "-o", "{tmp}/p"],
    ["train", "--noisy", NOISY, "--clean", CLEAN, "--epochs", "1", "-o", "{tmp}/m.safetensors"],
    ["explain", NOISY, "--method", "gradient", "-o", "{tmp}/e.h5"],
    ["evaluate", "equivariance", NOISY, "-n", "2"],
])
def test_bad_seeds_are_one_line_errors_in_every_command(tmp_path, command, seed):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command] + ["--seed", seed, "--device", "cpu"]
    assert "seed must be a whole number from 0 to 2**63-1" in one_line_error(args, tmp_path)


@pytest.mark.parametrize("items, message", [
    (["depth=eight"], "config depth must be an integer, got 'eight'"),
    (["dilations=abc"], "invalid config"),
    (["residual=maybe"], "residual must be true or false"),
    (["colour=3"], "has no config colour"),
    (["width=100000", "depth=200"], "GiB of parameters"),
])
def test_cli_config_values_are_checked_against_the_architecture(tmp_path, items, message):
    args = ["train", "--noisy", NOISY, "--clean", CLEAN, "--epochs", "1", "-o", str(tmp_path / "m.safetensors"),
            "--device", "cpu"]
    for it in items:
        args += ["--config", it]
    assert message in one_line_error(args, tmp_path)


def test_absurd_configs_are_refused_before_allocating():
    need = parameter_bytes("cartesian", {"width": 100000, "depth": 200})
    assert need > 10 ** 13  # counted on the meta device, instantly
    with pytest.raises(ParameterError, match="limit"):
        build_model("cartesian", width=100000, depth=200)
    assert parameter_bytes("cartesian", {}) == pytest.approx(56289 * 4, rel=0.01)


def test_check_config_types():
    check_config("cartesian", {"depth": 8, "width": 32.0, "residual": "true", "dilations": [1, 2, 3, 4, 3, 2]})
    with pytest.raises(ParameterError, match="depth must be an integer"):
        check_config("cartesian", {"depth": True})
    with pytest.raises(ParameterError, match="image_shape must be a list"):
        check_config("classifier", {"image_shape": "64x64"})


def _broken_model(tmp_path, arch="cartesian", config=None, **bad):
    config = config or {"depth": 2, "width": 4}
    path = save_model(tmp_path / f"{arch}.safetensors", build_model(arch, **config), arch, config)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["cryoxplain"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"].update(bad)
    save_file(tensors, str(path), metadata={"cryoxplain": json.dumps(meta)})
    return path


def test_a_model_file_with_a_badly_typed_config_names_the_file(tmp_path):
    path = _broken_model(tmp_path, depth="eight")
    with pytest.raises(ModelFileError, match=r"cartesian\.safetensors: .*depth must be an integer"):
        load_model(path)


@pytest.mark.parametrize("command", [
    ["denoise", NOISY, "-o", "{out}/d.mrcs", "-m", "{model}"],
    ["evaluate", "equivariance", NOISY, "-n", "2", "-m", "{model}"],
    ["explain", NOISY, "--method", "gradient", "-o", "{out}/e.h5", "-m", "{model}"],
])
def test_commands_refuse_a_model_file_whose_config_says_depth_eight(tmp_path, command):
    model = _broken_model(tmp_path, depth="eight")
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace("{out}", str(out)).replace("{model}", str(model)) for a in command] + ["--device", "cpu"]
    assert "depth must be an integer" in one_line_error(args, tmp_path)


def test_classify_refuses_a_classifier_file_whose_config_says_depth_eight(tmp_path):
    cfg = {"n_classes": 2, "width": 4, "depth": 2, "image_shape": [64, 64]}
    model = _broken_model(tmp_path, "classifier", cfg, depth="eight")
    assert "depth must be an integer" in one_line_error(["classify", NOISY, "-m", str(model), "--device", "cpu"],
                                                         tmp_path)


@pytest.mark.parametrize("extra", [["--phantom"], [str(S / "ribosome70S_clean.mrcs"), "--pixel-size", "5"]])
def test_simulate_box_above_the_limit_is_one_line(tmp_path, extra):
    line = one_line_error(["simulate", *extra, "-n", "2", "--box", "100000", "-o", str(tmp_path / "s")], tmp_path)
    assert "above the simulator's limit of 1024 px" in line


@pytest.mark.parametrize("angles", ["nan", "inf", "30,-inf"])
def test_equivariance_angles_must_be_finite(tmp_path, angles):
    line = one_line_error(["evaluate", "equivariance", NOISY, "-n", "2", "--angles", angles, "--device", "cpu"],
                          tmp_path)
    assert "--angles must be finite" in line
