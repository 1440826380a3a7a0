"""``cryoxplain info`` on MRC, STAR and HDF5 files, and its error path."""
import numpy as np
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.io.mrc import stack_stats, write_mrc
from conftest import REPO


def test_info_mrc_star_h5(tmp_path):
    data = np.random.default_rng(0).standard_normal((5, 8, 8)).astype(np.float32)
    p = write_mrc(tmp_path / "a.mrcs", data, 1.7)
    st = stack_stats(p, batch_size=2)
    assert np.isclose(st["mean"], data.mean(dtype=np.float64), atol=1e-7)
    assert np.isclose(st["std"], data.std(dtype=np.float64), atol=1e-6)
    assert st["min"] == data.min() and st["max"] == data.max()
    sd = REPO / "sample_data"
    r = CliRunner().invoke(cli, ["info", str(p), str(sd / "ribosome70S.star"), str(sd / "ribosome70S.h5"),
                                 "--stats", "--validate"])
    assert r.exit_code == 0, r.output
    assert "MRC stack, 5 × 8 × 8" in r.output and "voxel size 1.7 Å" in r.output and "valid" in r.output
    assert "data_particles: table, 200 rows" in r.output and "particles/euler: (200, 3)" in r.output


def test_info_bad_file_exit_2(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\0" * 2048)
    r = CliRunner().invoke(cli, ["info", str(bad)])
    assert r.exit_code == 2 and "not an MRC file" in r.output


def test_info_particle_star_and_cs(tmp_path, shared_data, monkeypatch):
    import shutil

    real = shared_data / "real"
    shutil.copy(real / "cryodrgn_relion31.star", tmp_path / "particles.star")
    monkeypatch.chdir(tmp_path)
    # stacks not found: the STAR is still described, with what is missing
    r = CliRunner().invoke(cli, ["info", "particles.star"])
    assert r.exit_code == 0, r.output
    assert "particles: particles.star: stack relion31.mrcs (listed for 5 particle(s)) not found" in r.output
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(real / "cryodrgn_relion31.mrcs", proj / "relion31.mrcs")
    r = CliRunner().invoke(cli, ["info", "particles.star", "--project-dir", str(proj), "--stats"])
    assert r.exit_code == 0, r.output
    assert ("particles.star: RELION 3.1+ particle STAR, 5 particles in 1 stack(s), box 256×256 px, "
            "pixel size 2.806 Å") in r.output
    assert "optics group 1 (opticsGroup1): 5 particles, 2.806 Å" in r.output and "  min " in r.output
    assert "data_optics: table, 1 rows" in r.output
    # a cryoSPARC .cs
    rec = np.zeros(3, dtype=[("blob/path", "S20"), ("blob/idx", "<u4"), ("blob/psize_A", "<f4")])
    rec["blob/path"], rec["blob/idx"], rec["blob/psize_A"] = b"proj/relion31.mrcs", [4, 0, 2], 2.806
    with open(tmp_path / "p.cs", "wb") as f:
        np.save(f, rec)
    r = CliRunner().invoke(cli, ["info", "p.cs"])
    assert r.exit_code == 0, r.output
    assert "p.cs: cryoSPARC particle .cs, 3 particles in 1 stack(s), box 256×256 px, pixel size 2.806 Å" in r.output
    (tmp_path / "bad.cs").write_bytes(b"not numpy")
    r = CliRunner().invoke(cli, ["info", "bad.cs"])
    assert r.exit_code == 2 and "bad.cs: not a cryoSPARC .cs file" in r.output


def test_info_real_epu_micrograph_metadata(shared_data):
    r = CliRunner().invoke(cli, ["info", str(shared_data / "real" / "mrcfile_fei-extended.mrc")])
    assert r.exit_code == 0, r.output
    assert "MRC image, 3838 × 3710 (numpy order), mode 6, voxel size 0.853776 Å" in r.output
    assert "FEI1 extended header: pixel size 0.8538 Å, dose 47.62 e/Å², defocus 9066 Å (underfocus), voltage 300 kV" in r.output
