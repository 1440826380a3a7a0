"""Blind-spot self-supervision (method="masked") and fine-tuning (init=...) of denoisers (issue 13)."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.denoise import train_denoiser
from cryoxplain.denoise.train import MaskedDenoiseTask, blind_spot_loss
from cryoxplain.errors import ParameterError
from cryoxplain.imaging.blindspot import grid_masks, random_pixel_mask, replace_masked
from cryoxplain.io.mrc import write_mrc
from cryoxplain.models import build_model, load_model
from cryoxplain.training import checkpoint_path_for
from denoise_helpers import blobs

SMALL = {"depth": 4, "width": 8, "kernel_size": 3}
KW = dict(batch_size=8, device="cpu", progress=False)
SPIRAL = {"box_size": 16, "depth": 3, "width": 4}


@pytest.mark.parametrize("arch,config", [("cartesian", SMALL), ("spiral", SPIRAL)])
@pytest.mark.parametrize("replace", ["mean", "noise", "zero"])
def test_blind_spot_loss_never_sees_the_masked_pixels(arch, config, replace):
    torch.manual_seed(0)
    model = build_model(arch, **config).train()  # batch norm in training mode mixes the whole batch
    x = torch.randn(3, 1, 16, 16, requires_grad=True)
    target = torch.randn(3, 1, 16, 16)  # the hidden values (detached: only the network path is tested)
    mask = random_pixel_mask(x.shape, 0.1, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    loss = blind_spot_loss(model, x, target, mask, replace=replace, noise=torch.randn(x.shape, generator=gen))
    loss.backward()
    g = x.grad
    assert mask.sum() > 10
    assert torch.count_nonzero(g[mask]) == 0  # exactly zero: the net never sees a masked pixel
    assert torch.count_nonzero(g[~mask]) > 0.5 * (~mask).sum()  # (but it does see the others)


def test_mask_replacement_uses_unmasked_neighbours_only():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    mask = torch.zeros(1, 1, 5, 5, dtype=torch.bool)
    mask[0, 0, 2, 2] = mask[0, 0, 2, 3] = True
    y = replace_masked(x, mask, "mean")
    nb = [6, 7, 8, 11, 16, 17, 18]  # the 8 neighbours of (2, 2) without the masked (2, 3)
    assert float(y[0, 0, 2, 2]) == pytest.approx(np.mean(nb))
    assert torch.equal(y[~mask], x[~mask])
    parts = grid_masks((5, 5), 2)
    assert len(parts) == 4 and torch.equal(sum(p.int() for p in parts), torch.ones(5, 5, dtype=torch.int))


def test_masked_training_learns_without_clean_images():
    noisy, clean = blobs(64, 24, noise=0.5, seed=2)
    res = train_denoiser(noisy, clean=clean, method="masked", arch="cartesian", arch_config=SMALL | {"residual": False},
                         epochs=4, seed=1, lr=3e-3, **KW)
    h = res.history
    assert res.method == "masked"
    assert h["val_loss"] == h["val_masked_loss"]
    assert h["val_masked_loss"][-1] < h["val_masked_loss"][0]
    assert h["val_snr_out_db"][-1] > h["val_snr_out_db"][0] + 5.0  # clean only for validation
    # the default is inferred from the inputs: noisy alone → masked
    only = train_denoiser(noisy, arch="cartesian", arch_config=SMALL, epochs=1, seed=1, **KW)
    assert only.method == "masked" and np.isnan(only.history["val_snr_out_db"][-1])


def test_masked_training_batches_are_seeded_and_masked():
    x = torch.randn(6, 1, 16, 16)
    task = MaskedDenoiseTask(x, x[:2], torch.zeros(2, 1, 1, 1), torch.ones(2, 1, 1, 1), None, augment="d4",
                             mask_fraction=0.25)
    a = task.batch(torch.arange(4), torch.Generator().manual_seed(3))
    b = task.batch(torch.arange(4), torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert 0.15 < float(a[1].float().mean()) < 0.35


def test_masked_spiral_loss_counts_only_the_valid_disc(tmp_path):
    noisy, _ = blobs(12, 16, noise=0.5)
    out = tmp_path / "s.safetensors"
    res = train_denoiser(noisy, method="masked", arch="spiral", arch_config=SPIRAL, epochs=1, seed=0, out=out, **KW)
    assert np.isfinite(res.history["train_loss"][-1])
    ft = train_denoiser(noisy, method="masked", init=out, epochs=1, seed=0, **KW)  # fine-tuning a spiral model
    assert ft.config == res.config and np.isfinite(ft.history["val_masked_loss"][-1])
    from cryoxplain.denoise.train import _valid_weights

    w = _valid_weights(res.model, (16, 16))
    assert w is not None and 0 < float(w.sum()) < 256 and float(w[0, 0]) == 0


def test_method_errors():
    noisy, clean = blobs(10, 16)
    with pytest.raises(ParameterError, match="noisy2"):
        train_denoiser(noisy, clean, method="noise2noise", epochs=1, **KW)
    with pytest.raises(ParameterError, match="method"):
        train_denoiser(noisy, clean, method="n2v", epochs=1, **KW)
    with pytest.raises(ParameterError, match="mask_fraction"):
        train_denoiser(noisy, method="masked", mask_fraction=1.5, epochs=1, **KW)


def _base_model(tmp_path):
    noisy, clean = blobs(24, 16, seed=5)
    path = tmp_path / "base.safetensors"
    train_denoiser(noisy, clean, arch="cartesian", arch_config=SMALL, epochs=1, seed=0, out=path, **KW)
    return path


def test_finetune_starts_from_the_file_and_resumes_bit_exactly(tmp_path):
    base = _base_model(tmp_path)
    noisy, _ = blobs(32, 16, noise=0.4, seed=7)
    kw = dict(KW, method="masked", init=base, augment="d4", crop=12)
    # epoch 0 is the loaded model: its validation loss is the base model's on the same inputs
    zero = train_denoiser(noisy, epochs=1, seed=4, lr=1e-9, **kw)
    net, info = load_model(base)
    sd0 = zero.model.state_dict()
    assert info.config == zero.config
    for k, v in net.state_dict().items():
        if "num_batches" not in k and "running" not in k:
            assert torch.allclose(v, sd0[k], atol=1e-6), k  # lr 1e-9: (almost) the initial weights
    full = train_denoiser(noisy, epochs=3, seed=4, out=tmp_path / "a.safetensors", **kw)
    train_denoiser(noisy, epochs=1, seed=4, out=tmp_path / "b.safetensors", **kw)
    assert checkpoint_path_for(tmp_path / "b.safetensors").exists()
    resumed = train_denoiser(noisy, epochs=3, seed=4, out=tmp_path / "b.safetensors", resume=True, **kw)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert np.array_equal(full.history["val_loss"], resumed.history["val_loss"])
    meta = load_model(tmp_path / "b.safetensors")[1].training
    assert meta["init"]["model"] == str(base) and meta["settings"]["mode"] == "masked"
    # a fine-tuned run differs from a fresh one with the same seed (init really used)
    fresh = train_denoiser(noisy, epochs=1, seed=4, method="masked", arch="cartesian", arch_config=SMALL,
                           augment="d4", crop=12, **KW)
    assert fresh.history["val_loss"][0] != zero.history["val_loss"][0]
    # resuming with another init is refused
    other = tmp_path / "other.safetensors"
    train_denoiser(*blobs(24, 16, seed=9), arch="cartesian", arch_config=SMALL, epochs=1, seed=1, out=other, **KW)
    with pytest.raises(ParameterError, match="init"):
        train_denoiser(noisy, epochs=4, seed=4, out=tmp_path / "b.safetensors", resume=True, **dict(kw, init=other))


def test_finetune_refuses_contradicting_overrides(tmp_path):
    base = _base_model(tmp_path)
    noisy, _ = blobs(10, 16)
    with pytest.raises(ParameterError, match="arch="):
        train_denoiser(noisy, init=base, arch="spiral", epochs=1, **KW)
    with pytest.raises(ParameterError, match="width"):
        train_denoiser(noisy, init=base, arch_config={"width": 16}, epochs=1, **KW)
    with pytest.raises(ParameterError, match="also the output"):
        train_denoiser(noisy, init=base, out=base, force=True, epochs=1, **KW)
    # repeating the file's values is fine
    res = train_denoiser(noisy, init=base, arch="cartesian", arch_config={"width": 8}, epochs=1, **KW)
    assert res.config["depth"] == 4


def test_finetune_the_shipped_default_model_cli(tmp_path):
    noisy, _ = blobs(12, 24, noise=0.5)
    write_mrc(tmp_path / "n.mrcs", noisy, 5.0)
    out = tmp_path / "ft.safetensors"
    r = CliRunner().invoke(cli, ["train", "--noisy", str(tmp_path / "n.mrcs"), "--method", "masked", "--init", "default",
                                 "--epochs", "1", "-b", "6", "-o", str(out), "-d", "cpu", "--no-equivariance"])
    assert r.exit_code == 0, r.output
    assert "masked" in r.output and "from default" in r.output
    info = load_model(out)[1]
    assert info.config == load_model("default")[1].config and info.training["init"]["model"] == "default"
    r = CliRunner().invoke(cli, ["train", "--noisy", str(tmp_path / "n.mrcs"), "--init", "default", "--config", "depth=3",
                                 "--epochs", "1", "-o", str(tmp_path / "x.safetensors"), "-d", "cpu"])
    assert r.exit_code == 2 and "contradicts" in r.output and "depth" in r.output, r.output
    assert not (tmp_path / "x.safetensors").exists()


def test_finetune_warns_about_another_pixel_size(tmp_path):
    noisy, _ = blobs(10, 16)
    write_mrc(tmp_path / "n.mrcs", noisy, 1.0)  # the shipped default model was trained at 5 Å/px
    with pytest.warns(UserWarning, match="Å/px"):
        train_denoiser(tmp_path / "n.mrcs", init="default", epochs=1, **KW)


def test_every_method_records_the_blind_spot_validation_loss():
    noisy, clean = blobs(12, 16)
    for kw in (dict(clean=clean), dict(noisy2=noisy[::-1].copy())):
        h = train_denoiser(noisy, arch="cartesian", arch_config={**SMALL, "odd": False}, epochs=1, **kw, **KW).history
        assert np.all(np.isfinite(h["val_masked_loss"])) and h["val_masked_loss"][0] != h["val_loss"][0]
        assert np.all(np.asarray(h["val_contrast_sign"]) > 0)  # a ReLU net with batch norm is not odd
    h = train_denoiser(noisy, clean=clean, arch="cartesian", arch_config=SMALL, epochs=1, **KW).history
    assert np.all(np.asarray(h["val_contrast_sign"]) < 1e-6)  # new nets are odd by construction (F(−x) = −F(x))


def test_finetune_freezes_batchnorm_statistics(tmp_path):
    """With init= the batch-norm layers stay in eval mode (running statistics kept, affine weights
    trained): re-estimating the statistics on one homogeneous stack is what made fine-tuning lose
    dB (docs/train.md).  freeze_bn=False restores training-mode batch norm."""
    base = _base_model(tmp_path)
    noisy, _ = blobs(24, 16, noise=0.6, seed=3)
    net0, _ = load_model(base)
    sd0 = net0.state_dict()
    kw = dict(KW, method="masked", init=base, epochs=1, seed=2, lr=1e-2)
    res = train_denoiser(noisy, out=tmp_path / "ft.safetensors", **kw)
    sd = res.model.state_dict()
    running = [k for k in sd if "running" in k]
    assert running
    for k in running:
        assert torch.equal(sd[k], sd0[k]), k  # statistics untouched
    bn_w = [k for k in sd if k.endswith(".weight") and sd[k].ndim == 1]
    assert any(not torch.equal(sd[k], sd0[k]) for k in bn_w)  # the affine weights did train
    assert load_model(tmp_path / "ft.safetensors")[1].training["settings"]["freeze_bn"] is True
    res.model.train()
    assert not any(m.training for m in res.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    free = train_denoiser(noisy, freeze_bn=False, **kw)
    assert any(not torch.equal(free.model.state_dict()[k], sd0[k]) for k in running)
