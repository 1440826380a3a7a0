"""Sharded denoising (2 processes, gloo): bitwise identical to one process, a killed shard's re-run
redoes only the missing units and leaves no partial file, world size 1 unchanged."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cryoxplain.denoise import denoise_files
from cryoxplain.errors import FileQuirkWarning
from cryoxplain.io.mrc import read_mrc
from cryoxplain.testing.distributed import spawn_world
from dist_workers import KillOnCall, denoise_run, make_star_project, tiny_net


def content(p: Path) -> bytes:
    """The file's bytes; for MRC files all but the header labels (mrcfile stamps the creation time there)."""
    b = p.read_bytes()
    return b[:224] + b[1024:] if p.suffix in (".mrc", ".mrcs") else b


def files(root: Path) -> dict:
    """Every file under ``root`` (hidden ones included) → its :func:`content`: bitwise, headers included."""
    return {str(p.relative_to(root)): content(p) for p in sorted(root.rglob("*")) if p.is_file()}


def single(inputs, out, **kw):
    """The plain, world-size-1 run, single-threaded like the spawned ranks."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return denoise_files(inputs, out, device="cpu", progress=False, **kw)
    finally:
        torch.set_num_threads(n)


def test_sharded_star_bitwise_identical(tmp_path):
    star, _ = make_star_project(tmp_path / "proj")
    net = tiny_net()
    single([star], tmp_path / "one", model=net, batch_size=2)
    # unit_size 3 → 2 batches per unit: 4 units over 2 ranks
    r0, r1 = spawn_world(denoise_run, 2, [star], tmp_path / "two", dict(model=net, batch_size=2, unit_size=3))
    assert r0 == r1 == [str(tmp_path / "two" / "particles_denoised.star")]
    two = files(tmp_path / "two")
    star_key = "particles_denoised.star"
    two[star_key] = two[star_key].replace(b"/two/", b"/one/")  # the output folder is in the image names
    assert two == files(tmp_path / "one")  # stacks and STAR; no parts, no temporaries left


def test_sharded_files_bitwise_identical(tmp_path):
    _, stacks = make_star_project(tmp_path / "proj")
    net = tiny_net()
    single(stacks, tmp_path / "one", model=net, batch_size=2)
    spawn_world(denoise_run, 2, stacks, tmp_path / "two", dict(model=net, batch_size=2))
    assert files(tmp_path / "two") == files(tmp_path / "one")


class Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def test_killed_shard_rerun_redoes_only_missing_units(tmp_path):
    from torch.multiprocessing import ProcessExitedException

    star, _ = make_star_project(tmp_path / "proj", sizes=(6, 4, 6))  # 16 particles: 8 batches of 2
    net = tiny_net()
    single([star], tmp_path / "ref", model=net, batch_size=2)
    out = tmp_path / "out"
    kw = dict(batch_size=2, unit_size=2)  # one batch per unit: rank 0 units 0–3, rank 1 units 4–7
    with pytest.raises(ProcessExitedException):  # rank 1 is SIGKILLed in its 2nd unit
        spawn_world(denoise_run, 2, [star], out, dict(kw, model=KillOnCall(net, rank=1, at=2)))
    assert not (out / "particles_denoised.star").exists()  # no merged output
    parts = next(out.glob(".particles_denoised.star.parts-*"))
    done = sorted(p.name for p in parts.glob("*.mrcs"))
    assert "000004.mrcs" in done and "000005.mrcs" not in done  # rank 1 finished one unit
    for p in parts.glob("*.mrcs"):  # an existing part is a complete one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FileQuirkWarning)  # parts carry no pixel size
            assert read_mrc(p)[0].shape == (2, 16, 16)
    assert [p for p in out.iterdir() if not p.name.startswith(".")] == []  # nothing visible, nothing partial
    # the re-run (here with one process) denoises only the missing units
    counting = Counting(net)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        denoise_files([star], out, counting, device="cpu", progress=False, skip_existing=True, **kw)
    finally:
        torch.set_num_threads(n)
    assert counting.calls == 8 - len(done)
    got = files(out)
    got["particles_denoised.star"] = got["particles_denoised.star"].replace(b"/out/", b"/ref/")
    assert got == files(tmp_path / "ref")  # bitwise the single-process result, no parts, no temporaries


def test_skip_existing_keeps_complete_file_outputs(tmp_path):
    _, stacks = make_star_project(tmp_path / "proj")
    net = tiny_net()
    out = tmp_path / "out"
    out.mkdir()
    single(stacks[:1], out, model=net, batch_size=2)  # one output done earlier
    (out / f".{stacks[1].name}.x1y2.tmp").write_bytes(b"partial")  # a killed writer's leftover
    before = (out / stacks[0].name).stat().st_mtime_ns
    counting = Counting(net)
    denoise_files(stacks, out, counting, device="cpu", batch_size=2, skip_existing=True)
    assert (out / stacks[0].name).stat().st_mtime_ns == before
    assert counting.calls == 2 + 3  # mic1 (3 particles) and mic2 (6 particles) in batches of 2
    assert sorted(p.name for p in out.iterdir()) == sorted(s.name for s in stacks)
    ref = tmp_path / "ref"
    single(stacks, ref, model=net, batch_size=2)
    assert files(out) == files(ref)


def test_world_size_one_without_skip_existing_is_unchanged(tmp_path, monkeypatch):
    """No launcher, no skip_existing: today's path (an existing output is refused, nothing sharded)."""
    from cryoxplain.errors import OutputExistsError

    for v in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(v, raising=False)
    star, _ = make_star_project(tmp_path / "proj")
    import cryoxplain.denoise.shard as shard

    monkeypatch.setattr(shard, "denoise_sharded", lambda *a, **k: pytest.fail("sharded path taken"))
    denoise_files([star], tmp_path / "o", tiny_net(), device="cpu", batch_size=2)
    with pytest.raises(OutputExistsError):
        denoise_files([star], tmp_path / "o", tiny_net(), device="cpu", batch_size=2)


def test_slurm_job_array_tasks_share_the_work(tmp_path, monkeypatch):
    """Array tasks have no process group: each does its units; task 0 merges once all parts exist,
    otherwise (it ran first) a later skip_existing run merges."""
    star, _ = make_star_project(tmp_path / "proj")
    net = tiny_net()
    single([star], tmp_path / "ref", model=net, batch_size=2)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    out = tmp_path / "out"
    for task in ("10", "11"):  # task 0 first: it cannot merge yet
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            single([star], out, model=net, batch_size=2, unit_size=2, skip_existing=True)
        assert any("not done yet" in str(x.message) for x in w) == (task == "10")
    assert not (out / "particles_denoised.star").exists()
    for v in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(v)
    counting = Counting(net)
    denoise_files([star], out, counting, device="cpu", batch_size=2, unit_size=2, skip_existing=True)
    assert counting.calls == 0  # the follow-up run only merges
    got = files(out)
    got["particles_denoised.star"] = got["particles_denoised.star"].replace(b"/out/", b"/ref/")
    assert got == files(tmp_path / "ref")
