"""Training under torch.distributed (2 processes, gloo): replicas equal, equal to one process on the
same global batches, rank 0 writes the files, resume under the launcher, world size 1 unchanged."""
import numpy as np
import pytest

from cryoxplain.testing.distributed import spawn_world
from dist_workers import train_classify, train_denoise

# depth 2: no batch norm (per-rank BN statistics would make 2 ranks differ from 1 by more than rounding);
# 18 training images in batches of 6: no remainder batch (2 ranks skip one smaller than 2 × min_batch)
DENOISE = dict(arch_config={"depth": 2, "width": 4}, epochs=2, batch_size=6, seed=3, augment="d4",
               val_fraction=0.25, lr=3e-3)


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    return all(np.array_equal(a[k], b[k]) for k in a)


def _close(a: dict, b: dict, tol=1e-5):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


def test_denoiser_two_ranks_equal_replicas_and_single_process(tmp_path):
    from cryoxplain.training import read_history

    (p0, h0), (p1, h1) = spawn_world(train_denoise, 2, str(tmp_path / "ddp.safetensors"), DENOISE)
    assert _same(p0, p1)  # bitwise-equal replicas
    np.testing.assert_equal(h0, h1)  # every rank returns rank 0's history (NaN == NaN here)
    (ps, hs), = [train_denoise(0, str(tmp_path / "one.safetensors"), DENOISE)]
    _close(p0, ps)
    np.testing.assert_allclose(h0["train_loss"][1:], hs["train_loss"][1:], rtol=1e-5)
    np.testing.assert_allclose(h0["val_loss"], hs["val_loss"], rtol=1e-5)
    # rank 0 wrote the model, history and checkpoint; the model file holds the replicas' weights
    from cryoxplain.models import load_model

    m, _ = load_model(tmp_path / "ddp.safetensors", device="cpu", task="denoise")
    _same({k: v.numpy() for k, v in m.state_dict().items()}, p0)
    hist = read_history(tmp_path / "ddp.history.h5")
    np.testing.assert_array_equal(hist["train_loss"], np.asarray(h0["train_loss"]))
    assert (tmp_path / "ddp.checkpoint.safetensors").is_file()
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


@pytest.mark.slow  # three 2-process worlds (~1 min on the shared 2-core machine)
def test_resume_under_launcher_equals_uninterrupted(tmp_path):
    out = str(tmp_path / "r.safetensors")
    spawn_world(train_denoise, 2, out, dict(DENOISE, epochs=1))
    (p0, h0), (p1, _) = spawn_world(train_denoise, 2, out, dict(DENOISE, epochs=2, resume=True))
    assert _same(p0, p1)
    (pu, hu), _ = spawn_world(train_denoise, 2, str(tmp_path / "u.safetensors"), DENOISE)
    assert _same(p0, pu)  # bit-exact resume at a fixed world size
    np.testing.assert_equal(h0["train_loss"], hu["train_loss"])


def test_classifier_two_ranks(tmp_path):
    kw = dict(epochs=2, batch_size=8, seed=1)
    (p0, h0), (p1, _) = spawn_world(train_classify, 2, str(tmp_path / "c.safetensors"), kw)
    assert _same(p0, p1)
    ps, hs = train_classify(0, str(tmp_path / "c1.safetensors"), kw)
    _close(p0, ps, 1e-4)
    np.testing.assert_allclose(h0["train_accuracy"][1:], hs["train_accuracy"][1:])
    np.testing.assert_allclose(h0["val_accuracy"], hs["val_accuracy"])


def test_world_size_one_is_the_plain_loop(monkeypatch, tmp_path):
    """Without a launcher nothing distributed happens (no process group, no DDP wrapper)."""
    import torch

    from cryoxplain import distributed

    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(v, raising=False)
    assert distributed.context() == distributed.Context()
    p, h = train_denoise(0, None, DENOISE)
    assert not torch.distributed.is_initialized()
    p2, h2 = train_denoise(0, None, DENOISE)
    assert _same(p, p2)
    np.testing.assert_equal(h["train_loss"], h2["train_loss"])


def test_batch_too_small_for_world(monkeypatch):
    """Checked before any process group is set up (every rank raises the same error)."""
    import torch

    from cryoxplain.errors import ParameterError
    from cryoxplain.training.ddp import Replicas

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ParameterError, match="batch_size 2 is too small for 2 processes"):
        Replicas(torch.nn.Linear(1, 1), torch.device("cpu"), 2, 2)


def test_job_array_tasks_train_on_their_own(monkeypatch, tmp_path):
    """Training reads only torchrun's variables: an array task (here rank 1 of 4) is a plain run
    that writes its own model (a parameter sweep), never a silent no-op."""
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    train_denoise(0, str(tmp_path / "t1.safetensors"), dict(DENOISE, epochs=1))
    assert (tmp_path / "t1.safetensors").is_file() and (tmp_path / "t1.history.h5").is_file()
