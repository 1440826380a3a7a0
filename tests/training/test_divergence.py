"""Issue 18, item 5 (and the Ctrl-C part of item 10): a diverged run stops at the first non-finite
loss or parameter (or an exploded loss), keeps the last good checkpoint, never writes a non-finite
model, says so on one line and the CLI exits 2; Ctrl-C says that --resume continues."""
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.errors import ParameterError, TrainingDivergedError, TrainingInterrupted
from cryoxplain.models.registry import build_model, save_model
from cryoxplain.training import TrainConfig, checkpoint_path_for, fit, history_path_for, read_history
from cryoxplain.training.checkpoint import interrupted_error, load_checkpoint

from test_training_loop import LineFit, _toy_model

S = Path(__file__).resolve().parents[2] / "sample_data"
TINY = ["--config", "depth=2", "--config", "width=4", "--epochs", "2", "--device", "cpu", "--no-equivariance",
        "-b", "32"]


class BreaksInEpoch(LineFit):
    """LineFit whose loss turns NaN in epoch ``bad`` (counted through the batches drawn)."""

    def __init__(self, bad, n=40, bs=8):
        super().__init__(n)
        self.calls, self.per_epoch, self.bad = 0, n // bs, bad

    def loss(self, model, batch, device):
        loss, n, st = super().loss(model, batch, device)
        self.calls += 1
        if self.calls > (self.bad - 1) * self.per_epoch:
            loss = loss * math.nan
        return loss, n, st


def test_divergence_keeps_the_last_good_checkpoint_and_history(tmp_path):
    out = tmp_path / "m.safetensors"
    cfg = TrainConfig(epochs=5, batch_size=8, lr=0.1, device="cpu", progress=False)
    ckpt, hist = checkpoint_path_for(out), history_path_for(out)
    with pytest.raises(TrainingDivergedError, match=r"epoch 3, batch 1 \(loss nan\).*checkpoint \(epoch 2\)"):
        fit(_toy_model(), BreaksInEpoch(bad=3), cfg, checkpoint_path=ckpt, history_path=hist)
    _, meta = load_checkpoint(ckpt)
    assert meta["epoch"] == 2
    assert list(read_history(hist)["epoch"]) == [0, 1, 2]
    assert not out.exists()


def test_non_finite_parameters_stop_the_run_even_when_the_loss_was_finite():
    cfg = TrainConfig(epochs=2, batch_size=8, lr=math.inf, device="cpu", progress=False)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 1 \(non-finite model parameters"):
        fit(_toy_model(), LineFit(), cfg)


def test_an_exploding_loss_stops_the_run():
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e6, device="cpu", progress=False, optimizer="adam")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 1))
    with pytest.raises(TrainingDivergedError, match="diverged"):
        fit(model, LineFit(), cfg)


def test_save_model_refuses_non_finite_values(tmp_path):
    m = build_model("cartesian", depth=2, width=4)
    with torch.no_grad():
        next(m.parameters())[0] = math.inf
    with pytest.raises(ParameterError, match="NaN/Inf"):
        save_model(tmp_path / "m.safetensors", m, "cartesian", {"depth": 2, "width": 4})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("lr", ["inf", "1e6"])
def test_cli_train_with_a_diverging_lr_exits_2_on_one_line_without_a_model(tmp_path, lr):
    out = tmp_path / "m.safetensors"
    r = CliRunner().invoke(cli, ["train", "--noisy", str(S / "ribosome70S_noisy.mrcs"), "--clean",
                                 str(S / "ribosome70S_clean.mrcs"), "--lr", lr, "-o", str(out), *TINY])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("cryoxplain: error")]
    assert len(lines) == 1 and "diverged" in lines[0] and "--lr" in lines[0]
    assert "Traceback" not in r.output
    assert not out.exists() and not checkpoint_path_for(out).exists()


def test_ctrl_c_in_cli_train_says_resume_continues(tmp_path, monkeypatch):
    import cryoxplain.training.loop as loop

    real = loop.write_history
    calls = []

    def interrupt_in_epoch_2(path, history, attrs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2, after the checkpoint of epoch 1
            raise KeyboardInterrupt
        return real(path, history, attrs)

    monkeypatch.setattr(loop, "write_history", interrupt_in_epoch_2)
    out = tmp_path / "m.safetensors"
    args = ["train", "--noisy", str(S / "ribosome70S_noisy.mrcs"), "--clean", str(S / "ribosome70S_clean.mrcs"),
            "-o", str(out), *TINY]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 130, r.output
    assert "Aborted" not in r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.startswith("cryoxplain: error")]
    assert "epoch 1" in line and "--resume" in line
    monkeypatch.setattr(loop, "write_history", real)
    r = CliRunner().invoke(cli, args + ["--resume"])
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_interrupted_before_any_checkpoint_says_there_is_nothing_to_resume(tmp_path):
    err = interrupted_error(tmp_path / "m.safetensors")
    assert isinstance(err, TrainingInterrupted) and isinstance(err, KeyboardInterrupt)
    assert "nothing to resume" in str(err) and err.exit_code == 130


def test_training_progress_moves_per_batch(capsys):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.1, device="cpu", progress=True)
    fit(_toy_model(), LineFit(), cfg)
    err = capsys.readouterr().err
    assert "10/10" in err and "batch" in err  # 40 samples / 8 = 5 batches × 2 epochs
