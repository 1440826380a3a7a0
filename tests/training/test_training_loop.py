"""The one training loop (cryoxplain.training): a toy task, exact resume for both tasks, settings checks."""
import math

import numpy as np
import pytest
import torch

from classify_helpers import labelled_particles
from cryoxplain.classify import train_classifier
from cryoxplain.errors import ParameterError
from cryoxplain.training import (Task, TrainConfig, checkpoint_path_for, fit, history_path_for, parse_config_items,
                                 read_history)

CLS = dict(arch_config={"width": 4, "depth": 2}, batch_size=8, device="cpu", progress=False, lr=3e-3)


class LineFit(Task):
    """A toy task: fit y = 3x − 1 with one linear unit (noise, shuffling and a dropout layer use the RNGs)."""

    name = "toy"

    def __init__(self, n=40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, generator=g)
        self.y = 3 * self.x - 1

    def n_train(self):
        return len(self.x)

    def batch(self, idx, generator):
        return self.x[idx] + 0.01 * torch.randn(len(idx), 1, generator=generator), self.y[idx]

    def loss(self, model, batch, device):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1]), len(batch[0]), {"n": len(batch[0])}

    def train_metrics(self, sums, n):
        return {"seen": sums["n"]}

    def evaluate(self, model, device):
        return {"val_loss": float(torch.nn.functional.mse_loss(model(self.x), self.y))}

    def callback_inputs(self, device):
        return (self.x,)


def _toy_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(1, 1))


def test_one_loop_serves_a_toy_task_with_history_callbacks_and_exact_resume(tmp_path):
    cfg = TrainConfig(epochs=6, batch_size=8, lr=0.1, device="cpu", progress=False)
    seen = []

    def cb(model, epoch, x):
        assert not model.training
        seen.append(epoch)
        return {"w": float(model[1].weight)}

    full_model = _toy_model()
    full = fit(full_model, LineFit(), cfg, callbacks=[cb], history_path=tmp_path / "h.h5")
    h = full.history
    assert seen == list(range(7)) and h["epoch"] == list(range(7)) and math.isnan(h["train_loss"][0])
    assert h["val_loss"][-1] < 0.3 * h["val_loss"][0] and h["seen"][1:] == [40.0] * 6
    assert read_history(tmp_path / "h.h5")["w"].tolist() == h["w"]
    # interrupted after epoch 2, resumed: bit-identical weights and history (dropout RNG state is restored)
    ck = tmp_path / "c.safetensors"
    m = _toy_model()
    fit(m, LineFit(), cfg.replace(epochs=2), checkpoint_path=ck, callbacks=[cb])
    m2 = _toy_model()
    res = fit(m2, LineFit(), cfg.replace(resume=True), checkpoint_path=ck, callbacks=[cb])
    assert res.resumed_from == 2
    assert torch.equal(m2[1].weight, full_model[1].weight) and torch.equal(m2[1].bias, full_model[1].bias)
    for col in ("epoch", "train_loss", "val_loss", "w"):
        assert np.array_equal(res.history[col], h[col], equal_nan=True), col
    with pytest.raises(ParameterError, match="different settings: lr"):
        fit(_toy_model(), LineFit(), cfg.replace(resume=True, lr=0.2), checkpoint_path=ck)


def test_classifier_resume_is_bit_exact(tmp_path):
    a, b = labelled_particles(12, 16, seed=2)
    kw = dict(CLS, augment="rotate", seed=3)
    full = train_classifier([a, b], epochs=3, **kw)
    out = tmp_path / "c.safetensors"

    def crash(model, epoch, *_):
        if epoch == 2:
            raise KeyboardInterrupt  # cut off during epoch 2
        return {}

    with pytest.raises(KeyboardInterrupt):
        train_classifier([a, b], epochs=3, out=out, callbacks=[crash], **kw)
    assert not out.exists() and checkpoint_path_for(out).exists() and history_path_for(out).exists()
    resumed = train_classifier([a, b], epochs=3, out=out, resume=True, **kw)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for col in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert np.array_equal(full.history[col], resumed.history[col], equal_nan=True), col
    assert np.array_equal(full.confusion, resumed.confusion) and out.exists()
    # the cosine schedule (the classifier default) depends on epochs: training further is refused;
    # other data or settings are refused too
    with pytest.raises(ParameterError, match="epochs: 3 .checkpoint. vs 4"):
        train_classifier([a, b], epochs=4, out=out, resume=True, **kw)
    with pytest.raises(ParameterError, match="data_sha1"):
        train_classifier([a + 1, b], epochs=3, out=out, resume=True, **kw)
    with pytest.raises(ParameterError, match="seed"):
        train_classifier([a, b], epochs=3, out=out, resume=True, **dict(kw, seed=4))
    with pytest.raises(ParameterError, match="already at epoch 3"):
        train_classifier([a, b], epochs=3, out=out, resume=True, **kw)
    with pytest.raises(ParameterError, match="exists from an earlier run"):
        train_classifier([a, b], epochs=1, out=_only_checkpoint(out), **kw)
    # with a constant schedule a finished run can be trained further
    kw2 = dict(kw, lr_schedule="constant", augment="d4")
    train_classifier([a, b], epochs=1, out=tmp_path / "k.safetensors", **kw2)
    more = train_classifier([a, b], epochs=2, out=tmp_path / "k.safetensors", resume=True, **kw2)
    assert more.history["epoch"] == [0, 1, 2]


def _only_checkpoint(out):
    out.unlink()  # the model file is gone, its checkpoint is still there
    return out


def test_train_config_checks_name_parameters():
    for bad, msg in ((dict(epochs=0), "epochs must be"), (dict(batch_size=0), "batch_size must be"),
                     (dict(lr=0), "lr"), (dict(augment="spin"), "augmentation"), (dict(val_fraction=1), "val_fraction"),
                     (dict(lr_schedule="step"), "lr_schedule"), (dict(optimizer="sgd"), "optimizer")):
        with pytest.raises(ParameterError, match=msg) as exc:
            TrainConfig(**bad)
        assert "--" not in str(exc.value)
    cfg = TrainConfig(lr_schedule="cosine", epochs=4, lr=1.0)
    assert cfg.lr_at(1) == 1.0 and cfg.lr_at(3) == pytest.approx(0.5)
    assert "device" not in cfg.settings() and cfg.settings()["epochs"] == 4
    assert "epochs" not in TrainConfig().settings()


def test_parse_config_items():
    assert parse_config_items(["depth=8", "name=x", "dims=[1, 2]", "flag=true", "s=a=b"]) == \
        {"depth": 8, "name": "x", "dims": [1, 2], "flag": True, "s": "a=b"}
    with pytest.raises(ParameterError, match="KEY=VALUE"):
        parse_config_items(["oops"])
