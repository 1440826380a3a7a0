"""Training of denoisers: learning, exact resume, history, callbacks, errors."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.io.mrc import write_mrc
from cryoxplain.models import load_model
from cryoxplain.denoise import train_denoiser
from cryoxplain.denoise.train import DenoiseTask
from cryoxplain.training import TrainConfig, checkpoint_path_for, history_path_for, read_history
from denoise_helpers import blobs

SMALL = {"depth": 4, "width": 8, "kernel_size": 3}
KW = dict(arch="cartesian", arch_config=SMALL, batch_size=8, device="cpu", progress=False)


def test_training_reduces_validation_loss(tmp_path):
    noisy, clean = blobs(48, 32)
    out = tmp_path / "m.safetensors"
    res = train_denoiser(noisy, clean, epochs=4, seed=3, out=out, **KW)
    h = res.history
    assert list(h["epoch"]) == [0, 1, 2, 3, 4]
    assert np.isnan(h["train_loss"][0])
    assert h["val_loss"][-1] < 0.8 * h["val_loss"][0]
    assert h["val_snr_out_db"][-1] > h["val_snr_out_db"][0]
    # the file round-trips and reproduces the in-memory model
    model, info = load_model(out)
    assert info.arch == "cartesian" and info.config == SMALL | {"residual": True, "odd": True} and info.task == "denoise"
    assert info.training["settings"]["seed"] == 3 and "normalization" in info.training
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), res.model(x), atol=1e-6)
    hist = read_history(history_path_for(out))
    assert np.allclose(hist["val_loss"], h["val_loss"])
    assert "settings" in hist["attrs"]


def test_resume_equals_uninterrupted(tmp_path):
    noisy, clean = blobs(40, 24, seed=1)
    kw = dict(KW, augment="d4", crop=16)
    full = train_denoiser(noisy, clean, epochs=3, seed=5, out=tmp_path / "a.safetensors", **kw)
    part = train_denoiser(noisy, clean, epochs=1, seed=5, out=tmp_path / "b.safetensors", **kw)
    assert checkpoint_path_for(tmp_path / "b.safetensors").exists()
    resumed = train_denoiser(noisy, clean, epochs=3, seed=5, out=tmp_path / "b.safetensors", resume=True, **kw)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for col in ("epoch", "train_loss", "val_loss", "val_snr_out"):
        assert np.array_equal(full.history[col], resumed.history[col], equal_nan=True), col
    assert len(part.history["epoch"]) == 2
    # a different seed gives a different run (the test above could not pass trivially)
    other = train_denoiser(noisy, clean, epochs=1, seed=6, out=tmp_path / "c.safetensors", **kw)
    assert other.history["val_loss"][1] != part.history["val_loss"][1]


def test_resume_after_interruption_cosine(tmp_path):
    noisy, clean = blobs(30, 24, seed=4)
    kw = dict(KW, augment="rotate", lr_schedule="cosine")
    full = train_denoiser(noisy, clean, epochs=3, seed=2, **kw)

    def crash(model, epoch, *_):
        if epoch == 2:
            raise KeyboardInterrupt  # the session is cut off during epoch 2
        return {}

    out = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(noisy, clean, epochs=3, seed=2, out=out, callbacks=[crash], **kw)
    assert not out.exists() and checkpoint_path_for(out).exists()
    resumed = train_denoiser(noisy, clean, epochs=3, seed=2, out=out, resume=True, **kw)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert np.array_equal(full.history["val_loss"], resumed.history["val_loss"])


def test_resume_with_other_settings_is_refused(tmp_path):
    noisy, clean = blobs(20, 16)
    train_denoiser(noisy, clean, epochs=1, seed=0, out=tmp_path / "m.safetensors", **KW)
    with pytest.raises(ParameterError, match="different settings"):
        train_denoiser(noisy, clean, epochs=2, seed=1, out=tmp_path / "m.safetensors", resume=True, **KW)
    with pytest.raises(ParameterError, match="data_sha1"):
        train_denoiser(noisy + 1, clean, epochs=2, seed=0, out=tmp_path / "m.safetensors", resume=True, **KW)
    with pytest.raises(ParameterError, match="no checkpoint"):
        train_denoiser(noisy, clean, epochs=2, seed=0, out=tmp_path / "x.safetensors", resume=True, **KW)


def test_callbacks_add_history_columns(tmp_path):
    noisy, clean = blobs(20, 16)
    seen = []

    def cb(model, epoch, val_noisy, val_clean):
        assert not model.training and val_noisy.ndim == 4 and val_clean.shape == val_noisy.shape
        seen.append(epoch)
        return {"out_norm": float(model(val_noisy).norm())}

    res = train_denoiser(noisy, clean, epochs=2, seed=0, callbacks=[cb], **KW)
    assert seen == [0, 1, 2]
    assert len(res.history["out_norm"]) == 3 and np.all(np.isfinite(res.history["out_norm"]))


def test_noise2noise_learns(tmp_path):
    noisy, clean = blobs(48, 32, seed=2)
    noisy2 = clean + np.random.default_rng(9).normal(scale=0.3, size=clean.shape).astype(np.float32)
    res = train_denoiser(noisy, clean=clean, noisy2=noisy2, epochs=4, seed=0, **KW)
    h = res.history
    assert h["val_snr_out_db"][-1] > h["val_snr_out_db"][0]  # clean used for validation only


def test_training_batches_apply_the_same_symmetry_to_input_and_target():
    # (formerly a test of augment_pair, merged into cryoxplain.imaging.augment.random_symmetry)
    x = torch.randn(6, 1, 8, 8)
    for mode in ("rot90", "flip", "d4", "rotate"):
        task = DenoiseTask(x, x.clone(), x[:0], x[:0], None, None, None, augment=mode, crop=6)
        a, b = task.batch(torch.arange(6), torch.Generator().manual_seed(0))
        assert torch.equal(a, b) and a.shape == (6, 1, 6, 6)
    task = DenoiseTask(x, x.clone(), x[:0], x[:0], None, None, None, augment="d4")
    a, _ = task.batch(torch.arange(6), torch.Generator().manual_seed(1))
    assert torch.allclose(torch.sort(a.flatten(1), dim=1)[0], torch.sort(x.flatten(1), dim=1)[0])


def test_train_config_object_and_keyword_settings_agree():
    noisy, clean = blobs(12, 16)
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", progress=False, seed=4)
    a = train_denoiser(noisy, clean, arch_config=SMALL, config=cfg)
    b = train_denoiser(noisy, clean, arch_config=SMALL, epochs=1, batch_size=8, device="cpu", progress=False, seed=4)
    assert a.history["val_loss"] == b.history["val_loss"] and a.train_config == b.train_config
    with pytest.raises(ParameterError, match="epochs must be"):
        TrainConfig(epochs=0)
    with pytest.raises(ParameterError, match="unknown training setting"):
        train_denoiser(noisy, clean, arch_config=SMALL, epoch=1)


def test_bad_training_inputs():
    noisy, clean = blobs(10, 16)
    with pytest.raises(ShapeError):
        train_denoiser(noisy, clean[:5], epochs=1, **KW)
    with pytest.raises(ParameterError, match="clean"):  # noisy alone now means method="masked"
        train_denoiser(noisy, None, epochs=1, method="supervised", **KW)
    with pytest.raises(ParameterError, match="augmentation"):
        train_denoiser(noisy, clean, epochs=1, augment="spin", **KW)


def test_cli_train_and_mismatch_exit2(tmp_path):
    noisy, clean = blobs(20, 16)
    write_mrc(tmp_path / "n.mrcs", noisy, 2.0)
    write_mrc(tmp_path / "c.mrcs", clean, 2.0)
    write_mrc(tmp_path / "short.mrcs", clean[:7], 2.0)
    out = tmp_path / "m.safetensors"
    args = ["train", "--noisy", str(tmp_path / "n.mrcs"), "--epochs", "1", "-o", str(out), "--device", "cpu",
            "--config", "depth=3", "--config", "width=4", "-b", "8"]
    r = CliRunner().invoke(cli, args + ["--clean", str(tmp_path / "short.mrcs")])
    assert r.exit_code == 2 and "does not match" in r.output
    assert not out.exists() and not history_path_for(out).exists()
    r = CliRunner().invoke(cli, args + ["--clean", str(tmp_path / "c.mrcs")])
    assert r.exit_code == 0, r.output
    assert out.exists() and history_path_for(out).exists()
    info = load_model(out)[1]
    assert info.config == {"depth": 3, "width": 4, "kernel_size": 3, "residual": True, "odd": True}
    assert info.training["pixel_size_A"] == pytest.approx(2.0)
    r = CliRunner().invoke(cli, args + ["--clean", str(tmp_path / "c.mrcs")])
    assert r.exit_code == 2 and "exists" in r.output  # never overwritten without --force


def test_cli_classify_task_delegates_or_refuses(tmp_path):
    import importlib.util

    r = CliRunner().invoke(cli, ["train", "--task", "classify", "-o", str(tmp_path / "c.safetensors"), "--epochs", "1"])
    if importlib.util.find_spec("cryoxplain.classify.train") is None:
        assert r.exit_code == 2 and "classify" in r.output
    assert not (tmp_path / "c.safetensors").exists()


def test_cli_train_rejects_classifier_arch_and_bad_config(tmp_path):
    noisy, clean = blobs(10, 16)
    write_mrc(tmp_path / "n.mrcs", noisy, 1.0)
    write_mrc(tmp_path / "c.mrcs", clean, 1.0)
    base = ["train", "--noisy", str(tmp_path / "n.mrcs"), "--clean", str(tmp_path / "c.mrcs"), "--epochs", "1",
            "-o", str(tmp_path / "m.safetensors"), "-d", "cpu"]
    for extra in (["--arch", "no-such-arch"], ["--config", "depth=1"], ["--config", "colour=3"], ["--config", "oops"]):
        r = CliRunner().invoke(cli, base + extra)
        assert r.exit_code == 2, (extra, r.output)
    assert not (tmp_path / "m.safetensors").exists()


def test_loss_and_validation_on_the_models_valid_disc():
    """A model that predicts only inside a disc (valid_radius, the spiral's mask) is scored there:
    what it outputs outside changes neither the loss nor the validation numbers (issue 14 item 2)."""
    n, box = 6, 17
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, box, box, generator=g)
    y = torch.randn(n, 1, box, box, generator=g)
    clean = torch.randn(n, box, box, generator=g).numpy()
    mu, sd = torch.zeros(n, 1, 1, 1), torch.ones(n, 1, 1, 1)
    from cryoxplain.imaging.masks import disc_mask

    task = DenoiseTask(x, y, x, y, mu, sd, clean, valid=torch.from_numpy(disc_mask((box, box), 5.0)))
    inside = task.valid_b

    class Outside(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, z):
            return torch.where(inside, z, torch.full_like(z, self.value))

    a, b = Outside(0.0), Outside(1e3)
    la, lb = task.loss(a, (x, y), "cpu")[0], task.loss(b, (x, y), "cpu")[0]
    assert float(la) == pytest.approx(float(((x - y)[..., inside] ** 2).mean()))
    assert float(la) == float(lb)
    ea, eb = task.evaluate(a, "cpu"), task.evaluate(b, "cpu")
    assert ea == eb
    box_task = DenoiseTask(x, y, x, y, mu, sd, clean)  # no valid disc: the box disc, outside counts
    assert box_task.evaluate(b, "cpu")["val_loss"] > 10 * ea["val_loss"]


def test_spiral_training_uses_its_mask(monkeypatch):
    """train_denoiser hands the spiral's valid radius to the task; cartesian models keep the box."""
    import cryoxplain.denoise.train as dt
    from cryoxplain.models.protocol import model_valid_radius

    seen = []

    class Recording(dt.DenoiseTask):
        def __init__(self, *a, **kw):
            seen.append(kw.get("valid"))
            super().__init__(*a, **kw)

    monkeypatch.setattr(dt, "DenoiseTask", Recording)
    noisy, clean = blobs(12, 17, seed=3)
    res = train_denoiser(noisy, clean, arch="spiral", arch_config=dict(box_size=17, depth=2, width=4), epochs=1,
                         batch_size=4, seed=0)
    r = model_valid_radius(res.model)
    assert r is not None and r < 17 / 2 and len(seen) == 1
    from cryoxplain.imaging.masks import disc_mask

    assert torch.equal(seen[0], torch.from_numpy(disc_mask((17, 17), r)))
    assert np.isfinite(res.history["val_snr_out_db"][-1])
    train_denoiser(noisy, clean, epochs=1, batch_size=4, seed=0, config=None, arch_config={"depth": 2, "width": 4})
    assert seen[-1] is None
