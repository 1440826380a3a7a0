"""The shipped sample data: present, consistent, and regenerable from its seed."""
import importlib.util

import numpy as np

from conftest import REPO
from cryoxplain.io.mrc import read_mrc, validate
from cryoxplain.io.star import read_star
from cryoxplain.sim import disc_mask

SD = REPO / "sample_data"


def _script():
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "scripts" / "make_sample_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sample_data_consistent():
    noisy, vs = read_mrc(SD / "ribosome70S_noisy.mrcs")
    clean, vs2 = read_mrc(SD / "ribosome70S_clean.mrcs")
    assert noisy.shape == clean.shape == (200, 64, 64) and vs == vs2 == 5.0
    assert validate(SD / "ribosome70S_noisy.mrcs") and validate(SD / "ribosome70S_clean.mrcs")
    m = disc_mask(64)
    snr = clean[:, m].var(axis=1) / ((noisy - clean)[:, m] ** 2).mean(axis=1)
    assert abs(snr.mean() / 0.25 - 1) < 0.05
    star = read_star(SD / "ribosome70S.star")
    assert star["particles"].n_rows == 200 and star["optics"]["rlnImagePixelSize"][0] == 5.0


def test_sample_data_regenerates_exactly(shared_data):
    mod = _script()
    res = mod.simulate(shared_data / "aspire_clean70SRibosome_vol_65p.mrc", n=6)  # particles depend only on (seed, i)
    # bit-identical where the files were made; allow last-bit rounding on other CPUs/library builds
    for key in ("clean", "noisy"):
        ref = read_mrc(SD / f"ribosome70S_{key}.mrcs")[0][:6]
        np.testing.assert_allclose(getattr(res, key), ref, rtol=0, atol=1e-6 * np.abs(ref).max())
