"""Applying denoisers: tiling, streaming, shapes, voxel size, error paths."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.denoise import Denoiser, denoise_files, denoise_stack
from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.io.mrc import read_mrc, validate, write_mrc
from cryoxplain.models import build_model, save_model
from denoise_helpers import blobs


def _model(seed=0, **cfg):
    torch.manual_seed(seed)
    m = build_model("cartesian", **({"depth": 5, "width": 8} | cfg))
    # non-trivial batch-norm statistics, as after training
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


@pytest.fixture
def model_file(tmp_path):
    m = _model()
    return save_model(tmp_path / "m.safetensors", m, "cartesian", {"depth": 5, "width": 8, "kernel_size": 3})


def test_receptive_radius_is_exact():
    m = _model(depth=4, kernel_size=5)
    assert m.receptive_radius == 8
    x = torch.randn(1, 1, 41, 41)
    x2 = x.clone()
    x2[0, 0, 20, 20] += 5.0
    with torch.no_grad():
        d = (m(x2) - m(x)).abs()[0, 0]
    ys, xs = np.nonzero(d.numpy() > 0)
    assert max(abs(ys - 20).max(), abs(xs - 20).max()) == 8
    m = _model(depth=5, dilations=[1, 3, 2])
    assert m.receptive_radius == 8
    with torch.no_grad():
        d = (m(x2) - m(x)).abs()[0, 0]
    ys, xs = np.nonzero(d.numpy() > 0)
    assert max(abs(ys - 20).max(), abs(xs - 20).max()) == 8


def test_inference_form_equals_model():
    m = _model(dilations=[1, 2, 2])
    f = m.for_inference()
    x = torch.randn(3, 1, 37, 29)
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), rtol=1e-5, atol=1e-5)
    den = Denoiser(m, device="cpu")
    img = np.random.default_rng(0).normal(size=(37, 29)).astype(np.float32)
    xn = (img - img.mean()) / img.std()
    with torch.no_grad():
        ref = m(torch.from_numpy(xn)[None, None])[0, 0].numpy() * img.std() + img.mean()
    np.testing.assert_allclose(den.denoise_images(img), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dil,residual", [(None, True), ([2, 3, 1], True), (None, False)])
def test_tiled_equals_whole_image_no_seams(dil, residual):
    den = Denoiser(_model(dilations=dil, residual=residual), device="cpu")
    rng = np.random.default_rng(0)
    img = (rng.normal(size=(150, 131)) + 3.0).astype(np.float32)
    whole = den.denoise_micrograph(img, patch_size=4096)
    tiled = den.denoise_micrograph(img, patch_size=40, padding=den.receptive_radius)
    assert tiled.shape == img.shape
    np.testing.assert_allclose(tiled, whole, atol=1e-5 * np.abs(whole).max())
    with pytest.raises(ParameterError, match="receptive radius"):
        den.denoise_micrograph(img, patch_size=40, padding=den.receptive_radius - 1)
    # no seams: jumps across tile boundaries are no larger than jumps elsewhere
    dy = np.abs(np.diff(tiled, axis=0))
    at_seam = dy[[39, 79, 119]].mean()
    assert at_seam < 1.5 * dy.mean()
    # with too little context the tiles do differ (so the equality above is not vacuous)
    rr, den.receptive_radius = den.receptive_radius, 0
    rough = den.denoise_micrograph(img, patch_size=40, padding=2)
    den.receptive_radius = rr
    assert np.abs(rough - whole).max() > 1e-3 * np.abs(whole).max()


def test_per_micrograph_normalisation_is_affine_equivariant():
    den = Denoiser(_model(), device="cpu")
    img = np.random.default_rng(1).normal(size=(70, 70)).astype(np.float32)
    a = den.denoise_micrograph(img, patch_size=30)
    b = den.denoise_micrograph(3.0 * img + 10.0, patch_size=30)
    np.testing.assert_allclose(b, 3.0 * a + 10.0, rtol=1e-4, atol=1e-3)


def test_stack_streaming_keeps_shape_and_voxel_size(tmp_path, model_file):
    noisy, _ = blobs(23, 32)
    src = write_mrc(tmp_path / "in.mrcs", noisy, 1.7)
    out = tmp_path / "out.mrcs"
    denoise_stack(src, out, model_file, batch_size=5, device="cpu", progress=False)
    data, vs = read_mrc(out)
    assert data.shape == noisy.shape and vs == pytest.approx(1.7) and validate(out)
    # batch-by-batch result = each image denoised on its own
    den = Denoiser(model_file, device="cpu")
    np.testing.assert_allclose(data[7], den.denoise_images(noisy[7]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(data, noisy)
    assert np.array_equal(read_mrc(src)[0], noisy)  # input untouched


def test_micrograph_file_and_multiple_inputs(tmp_path, model_file):
    rng = np.random.default_rng(2)
    mic = write_mrc(tmp_path / "mic.mrc", rng.normal(size=(90, 100)).astype(np.float32), 3.1)
    st = write_mrc(tmp_path / "parts.mrcs", blobs(4, 16)[0], 1.2)
    outdir = tmp_path / "den"
    outs = denoise_files([mic, st], outdir, model_file, device="cpu", patch_size=32, suffix="_d", progress=False)
    assert [p.name for p in outs] == ["mic_d.mrc", "parts_d.mrcs"]
    d, vs = read_mrc(outs[0])
    assert d.shape == (90, 100) and vs == pytest.approx(3.1)
    outs = denoise_files([mic], tmp_path / "mic.png", model_file, device="cpu", fmt="png")
    assert outs[0].read_bytes()[:4] == b"\x89PNG"


class _FixedSize(torch.nn.Module):
    input_shape = (16, 16)

    def forward(self, x):
        return x


def test_fixed_input_shape_model_gives_shape_error(tmp_path):
    den = Denoiser(_FixedSize(), device="cpu")
    assert den.denoise_images(np.ones((2, 16, 16), np.float32)).shape == (2, 16, 16)
    with pytest.raises(ShapeError, match="16×16"):
        den.denoise_images(np.ones((2, 20, 20), np.float32))
    with pytest.raises(ShapeError, match="no tiling"):
        den.denoise_micrograph(np.ones((64, 64), np.float32))
    src = write_mrc(tmp_path / "in.mrcs", blobs(3, 20)[0], 1.0)
    with pytest.raises(ShapeError):
        denoise_stack(src, tmp_path / "o.mrcs", den, device="cpu")
    assert not (tmp_path / "o.mrcs").exists()


def test_cli_errors_exit2_and_no_output(tmp_path, model_file):
    src = write_mrc(tmp_path / "in.mrcs", blobs(3, 16)[0], 1.0)
    out = tmp_path / "out.mrcs"
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(out), "--model", "no-such-model", "-d", "cpu"])
    assert r.exit_code == 2 and "neither a file nor a shipped model" in r.output
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(model_file.read_bytes()[:200])
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(out), "--model", str(bad), "-d", "cpu"])
    assert r.exit_code == 2 and "bad.safetensors" in r.output
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 4000)
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(out), "--model", str(garbage), "-d", "cpu"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["denoise", str(tmp_path / "missing.mrcs"), "-o", str(out), "--model", str(model_file)])
    assert r.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.safetensors", "garbage.safetensors", "in.mrcs", "m.safetensors"]
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(out), "--model", str(model_file), "-d", "cpu"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(out), "--model", str(model_file), "-d", "cpu"])
    assert r.exit_code == 2 and "exists" in r.output
