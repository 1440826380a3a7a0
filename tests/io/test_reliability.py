"""Issue 18 (part A): outputs never overwrite inputs, full disks and read-only folders give one line
and leave nothing behind, stale temporary files are cleaned, outputs honour the umask, and the CLI's
usability fixes (one-line usage errors, -d aliases, --angpix, folders, --dose)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cryoxplain.errors import OutputLocationError, ParameterError
from cryoxplain.io.atomic import atomic_path, check_output, same_file
from reliability_helpers import assert_clean_error, can_mount_tmpfs, run_cli, snapshot, tmpfs, write_stack

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data"
needs_tmpfs = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root and `mount -t tmpfs` (a small "
                                 "file system to fill, or one mounted read-only)")


# ------------------------------------------------------------------ outputs are never inputs
def test_output_that_is_an_input_is_refused_by_path_hard_link_and_symlink(tmp_path):
    a = write_stack(tmp_path / "a.mrcs")
    os.link(a, tmp_path / "hard.mrcs")
    (tmp_path / "sym.png").symlink_to(a)
    for out in (a, tmp_path / "." / "a.mrcs", tmp_path / "hard.mrcs", tmp_path / "sym.png"):
        assert same_file(out, a)
        with pytest.raises(ParameterError, match="is also an input"):
            check_output(out, force=True, inputs=(a,))
        with pytest.raises(ParameterError, match="is also an input"):
            with atomic_path(out, force=True, inputs=[[a]]):  # nested sequences (a set's stacks)
                pass
    assert not same_file(tmp_path / "other.mrcs", a)


@pytest.mark.parametrize("case", ["train_model", "train_history_input", "snr_plot", "equivariance_plot",
                                  "denoise_model_file", "classify_csv", "explain_png", "simulate_source"])
def test_every_command_refuses_to_write_over_an_input(tmp_path, capfd, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    n = write_stack(tmp_path / "n.mrcs", n=8, box=32, seed=1)
    c = write_stack(tmp_path / "c.mrcs", n=8, box=32, seed=2)
    model = tmp_path / "m.safetensors"
    model.write_bytes((REPO / "cryoxplain/data/models/default.safetensors").read_bytes())
    (tmp_path / "png").mkdir()
    os.link(n, tmp_path / "png" / "n_000000.png")  # the first PNG the explain run would write
    args = {
        "train_model": ["train", "--noisy", n, "--clean", c, "--epochs", "1", "-o", n, "--force"],
        "train_history_input": ["train", "--noisy", n, "--clean", c, "--epochs", "1", "-o", "n.safetensors"],
        "snr_plot": ["evaluate", "snr", "--clean", c, "--estimate", n, "--plot", c, "--force"],
        "equivariance_plot": ["evaluate", "equivariance", n, "-m", model, "--plot", model, "--force"],
        "denoise_model_file": ["denoise", n, "-m", model, "-o", model, "--force"],
        "classify_csv": ["classify", n, "-m", model, "-o", model, "--force"],
        "explain_png": ["explain", n, "-m", model, "--method", "gradient", "-o", "e.h5", "--png", "png", "--force"],
        "simulate_source": ["simulate", "v_clean.mrcs", "--pixel-size", "5", "-n", "2", "--box", "16", "-o", "v",
                            "--force"],  # the map is v_clean.mrcs, one of the outputs of prefix v
    }[case]
    if case == "simulate_source":
        from cryoxplain.io.mrc import write_mrc

        write_mrc(tmp_path / "v_clean.mrcs", np.random.default_rng(0).random((16, 16, 16)), 5.0, kind="volume")
    if case == "train_history_input":  # the side output n.history.h5 is the noisy input
        os.replace(n, tmp_path / "n.history.h5")
        args[2] = tmp_path / "n.history.h5"
    before = snapshot(tmp_path)
    code, out, err = run_cli([*args] + ([] if case in ("snr_plot", "simulate_source") else ["-d", "cpu"]), capfd)
    assert_clean_error(code, err, before, snapshot(tmp_path), what=case)
    assert "is also an input" in err


def test_training_side_output_is_not_replaced_without_force(tmp_path, capfd):
    n = write_stack(tmp_path / "n.mrcs", n=8)
    c = write_stack(tmp_path / "c.mrcs", n=8, seed=3)
    (tmp_path / "m.history.h5").write_bytes(b"an older run")
    before = snapshot(tmp_path)
    code, _, err = run_cli(["train", "--noisy", n, "--clean", c, "--epochs", "1", "-o", tmp_path / "m.safetensors",
                            "-d", "cpu"], capfd)
    assert_clean_error(code, err, before, snapshot(tmp_path))
    assert "m.history.h5 exists; pass --force" in err


# ------------------------------------------------------------------------------ full disk
@needs_tmpfs
@pytest.mark.parametrize("case", ["denoise_stack", "simulate", "explain", "denoise_micrograph", "train"])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, capfd, case):
    n = write_stack(tmp_path / "n.mrcs", n=64, box=64)  # 1 MB per stack
    c = write_stack(tmp_path / "c.mrcs", n=64, box=64, seed=5)
    full = tmp_path / "full"
    with tmpfs(full, "256k"):
        if case == "train":  # room for nothing: the first history write meets the full disk
            (full / "fill").write_bytes(b"\0" * (256 * 1024 - 8192))
        args = {
            "denoise_stack": ["denoise", n, "-o", full / "d.mrcs"],
            "simulate": ["simulate", "--phantom", "-n", "64", "--box", "64", "-o", full / "sim" / "p"],
            "explain": ["explain", n, "--method", "gradient", "-o", full / "e.h5", "-b", "64"],
            "denoise_micrograph": ["denoise", SAMPLE / "epu_bin6_crop.mrc", "-o", full / "mic.mrc"],
            "train": ["train", "--noisy", n, "--clean", c, "--epochs", "1", "-o", full / "m.safetensors",
                      "--no-equivariance"],
        }[case]
        before = snapshot(full, tmp_path / "n.mrcs")
        code, _, err = run_cli([*args, "-d", "cpu"], capfd)
        after = snapshot(full, tmp_path / "n.mrcs")
        assert_clean_error(code, err, before, after, what=case)
        assert "no space left on" in err and "MB" in err


@needs_tmpfs
def test_memory_mapped_stack_never_meets_a_full_disk_later(tmp_path):
    """The stack writer allocates its file up front: a disk filled after the check gives the one-line
    error at once, never SIGBUS while writing through the memory map."""
    from cryoxplain.io.mrc import StackWriter

    with tmpfs(tmp_path / "full", "512k") as full:
        (full / "fill").write_bytes(b"\0" * (300 * 1024))
        with pytest.raises(OutputLocationError, match=r"no space left on .*needed ≈ 0\.\d MB"):
            with StackWriter(full / "s.mrcs", (60, 32, 32)):  # 240 kB: fits the check, not the disk
                pass
        assert sorted(p.name for p in full.iterdir()) == ["fill"]


# ------------------------------------------------------------------------ read-only folder
@needs_tmpfs
@pytest.mark.parametrize("case", ["denoise", "denoise_folder", "simulate", "snr_plot", "train", "explain_png",
                                  "particles"])
def test_read_only_output_folder_is_one_line(tmp_path, capfd, case):
    n = write_stack(tmp_path / "n.mrcs", n=8)
    c = write_stack(tmp_path / "c.mrcs", n=8, seed=7)
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        args = {
            "denoise": ["denoise", n, "-o", ro / "d.mrcs", "-d", "cpu"],
            "denoise_folder": ["denoise", n, c, "-o", ro / "new" / "", "-d", "cpu"],
            "simulate": ["simulate", "--phantom", "-n", "4", "--box", "16", "-o", ro / "sim" / "p"],
            "snr_plot": ["evaluate", "snr", "--clean", c, "--estimate", n, "--plot", ro / "frc.png"],
            "train": ["train", "--noisy", n, "--clean", c, "--epochs", "1", "-o", ro / "m.safetensors", "-d", "cpu"],
            "explain_png": ["explain", n, "--method", "gradient", "-o", tmp_path / "e.h5", "--png", ro / "png",
                            "-d", "cpu"],
            "particles": ["denoise", SAMPLE / "epu_particles.star", "-o", ro / "out", "-d", "cpu"],
        }[case]
        before = snapshot(tmp_path / "n.mrcs", tmp_path / "c.mrcs")
        code, _, err = run_cli(args, capfd)
        assert_clean_error(code, err, before, snapshot(tmp_path / "n.mrcs", tmp_path / "c.mrcs"), what=case)
        assert "read-only file system" in err
    assert not (tmp_path / "e.h5").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the read-only tmpfs test covers root)")
def test_unwritable_output_folder_is_one_line(tmp_path, capfd):
    n = write_stack(tmp_path / "n.mrcs", n=4)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run_cli(["denoise", n, "-o", locked / "d.mrcs", "-d", "cpu"], capfd)
    finally:
        locked.chmod(0o755)
    assert code == 2 and "permission denied" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------- temp files and modes
def test_stale_temp_of_a_killed_run_is_cleaned_and_errors_never_name_temps(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    from cryoxplain.io.atomic import host_tag

    host = host_tag()
    stale = tmp_path / f".out.mrcs.{dead}-{host}.abcd1234.tmp"
    stale.write_bytes(b"x" * 1000)
    other = tmp_path / f".other.mrcs.{dead}-{host}.abcd1234.tmp"  # another output's temp: left alone here
    other.write_bytes(b"x")
    mine = tmp_path / f".out.mrcs.{os.getpid()}-{host}.abcd1234.tmp"  # a live process's temp: kept
    mine.write_bytes(b"x")
    elsewhere = tmp_path / f".out.mrcs.{dead}-{'0000' if host != '0000' else '0001'}.abcd1234.tmp"
    elsewhere.write_bytes(b"x")  # another machine's (shared file system): its pid means nothing here
    with pytest.raises(ParameterError) as info:
        with atomic_path(tmp_path / "out.mrcs") as tmp:
            raise ParameterError(f"refusing to write {tmp}: it contains NaN")
    assert ".tmp" not in str(info.value) and str(tmp_path / "out.mrcs") in str(info.value)
    assert not stale.exists() and other.exists() and mine.exists() and elsewhere.exists()


def test_outputs_honour_the_umask(tmp_path):
    """Model files and checkpoints (safetensors writes 0600) get 0o666 & ~umask like every output."""
    import torch

    from cryoxplain.models.registry import build_model, save_model
    from cryoxplain.training.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        net = build_model("cartesian", depth=2, width=4)
        save_model(tmp_path / "m.safetensors", net, "cartesian", {"depth": 2, "width": 4})
        save_checkpoint(tmp_path / "c.safetensors", net, torch.optim.Adam(net.parameters()), {"epoch": 1})
    finally:
        os.umask(old)
    for name in ("m.safetensors", "c.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------ partial multi-input runs
def test_multi_input_run_checks_every_input_before_writing(tmp_path, capfd):
    good = write_stack(tmp_path / "good.mrcs", n=8)
    bad = write_stack(tmp_path / "nan_last.mrcs", n=8, seed=9)
    import mrcfile

    with mrcfile.mmap(bad, "r+") as m:
        m.data[-1, 3, 3] = np.nan
    before = snapshot(tmp_path)
    code, _, err = run_cli(["denoise", good, bad, "-o", tmp_path / "dn", "-b", "4", "-d", "cpu"], capfd)
    assert_clean_error(code, err, before, snapshot(tmp_path))
    assert "NaN" in err and not (tmp_path / "dn").exists()


def test_multi_input_failure_part_way_says_which_outputs_are_complete(tmp_path, monkeypatch):
    from cryoxplain.denoise import apply

    a, b = write_stack(tmp_path / "a.mrcs", n=4), write_stack(tmp_path / "b.mrcs", n=4, seed=4)
    real = apply.denoise_file

    def failing(src, dst, *args, **kw):
        if Path(src).name == "b.mrcs":
            raise ParameterError("the disk went away")
        return real(src, dst, *args, **kw)

    monkeypatch.setattr(apply, "denoise_file", failing)
    with pytest.raises(ParameterError, match=r"the disk went away; complete outputs: .*dn/a\.mrcs"):
        apply.denoise_files([a, b], tmp_path / "dn", device="cpu")
    assert (tmp_path / "dn" / "a.mrcs").is_file() and not (tmp_path / "dn" / "b.mrcs").exists()


def test_trailing_slash_means_a_folder(tmp_path, capfd):
    n = write_stack(tmp_path / "x.mrcs", n=4)
    code, out, err = run_cli(["denoise", n, "-o", f"{tmp_path / 'newdir'}/", "-d", "cpu"], capfd)
    assert code == 0, err
    assert (tmp_path / "newdir").is_dir() and (tmp_path / "newdir" / "x.mrcs").is_file()
    with pytest.raises(ParameterError, match="names a folder"):
        check_output(f"{tmp_path}/file/")


# ------------------------------------------------------------------------------- usability
def test_usage_errors_are_one_line(capfd):
    for args in (["denoise", "--bogus"], ["evaluate", "snr"], ["nosuchcommand"], ["train", "--epochs", "x"]):
        code, _, err = run_cli(args, capfd)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("cryoxplain: error: "), err
        assert "--help" in err


def test_topaz_device_aliases():
    import torch

    from cryoxplain.utils import resolve_device

    assert resolve_device("-1") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("0") == torch.device("cuda:0")
    else:
        with pytest.raises(Exception, match="no CUDA GPU"):
            resolve_device("0")


def test_simulate_creates_the_prefix_folder_and_dose_alone_is_shot_noise(tmp_path, capfd, monkeypatch):
    import h5py

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["simulate", "--phantom", "-n", "4", "--box", "16", "--dose", "40",
                              "-o", "sim/deep/p", "-d", "-1", "--angpix", "2"], capfd)
    assert code == 0, err
    assert (tmp_path / "sim" / "deep" / "p_noisy.mrcs").is_file()
    assert "Gaussian-noise SNR requested: none" in out
    with h5py.File(tmp_path / "sim" / "deep" / "p.h5") as f:
        import json

        params = json.loads(f.attrs["cryoxplain_json"])
    assert params["snr"] is None and params["dose"] == 40 and params["pixel_size"] == 2
    # a failed run removes the folders it made
    code, _, err = run_cli(["simulate", "--phantom", "-n", "4", "--box", "16", "--snr", "1/4", "--dose", "-3",
                            "-o", "new/p"], capfd)
    assert code == 2 and not (tmp_path / "new").exists()


@pytest.mark.slow  # two real processes (~10 s each on the shared CI cores)
def test_warnings_are_not_printed_before_the_error_they_lead_to(tmp_path):
    import subprocess
    import sys

    def cli(*args):  # a real process: pytest records warnings in-process instead of showing them
        r = subprocess.run([sys.executable, "-c", "from cryoxplain.cli.main import main; main()", *map(str, args)],
                           capture_output=True, text=True, timeout=300)
        return r.returncode, r.stderr

    quirky = write_stack(tmp_path / "v0.mrcs", n=4, voxel=0)  # read with a "voxel size 0" warning
    (tmp_path / "exists.mrcs").write_bytes(b"")
    code, err = cli("denoise", quirky, "-o", tmp_path / "exists.mrcs", "-d", "cpu")
    assert code == 2 and err.count("\n") == 1 and "exists; pass --force" in err, err
    code, err = cli("denoise", quirky, "-o", tmp_path / "new.mrcs", "-d", "cpu")
    assert code == 0 and "cryoxplain: warning" in err and "voxel size 0" in err, err  # success still says it
