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
