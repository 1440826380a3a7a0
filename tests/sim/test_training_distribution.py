"""cryoxplain.sim.training: the general denoisers' training distribution (issue 13)."""
import json

import numpy as np
import pytest

from cryoxplain.errors import ParameterError
from cryoxplain.imaging.fourier import ring_index, ring_sums
from cryoxplain.sim import Structure, coloured_noise, noise_spectrum, simulate_training_distribution
from cryoxplain.sim.simulate import disc_mask


def test_shipped_spectrum_is_a_measured_relative_spectrum():
    f, p, rec = noise_spectrum()
    assert f[0] == 0 and f[-1] == pytest.approx(0.5) and len(f) == len(p) == rec["patch_px"] // 2 + 1
    assert p[1:].mean() == pytest.approx(1.0) and (p > 0).all()
    assert "mrcfile_fei-extended_bin6.mrc" in rec["source"] and rec["n_patches"] >= 10


def test_coloured_noise_has_the_requested_spectrum():
    f = np.linspace(0, 0.5, 17)
    p = 1.0 + 3.0 * (f < 0.15)  # strong low-frequency excess
    rng = np.random.default_rng(0)
    z = np.stack([coloured_noise((32, 32), rng, f, p) for _ in range(200)])
    assert np.allclose(z.std(axis=(1, 2)), 1.0)
    ring = ring_index((32, 32))
    pw = ring_sums(np.abs(np.fft.fft2(z)) ** 2, ring).mean(0) / np.bincount(ring[ring >= 0])
    ratio = pw[1:4].mean() / pw[8:16].mean()
    assert ratio == pytest.approx(4.0, rel=0.2)


def test_distribution_is_seeded_and_covers_signs_snrs_and_colours():
    st = [Structure("phantom", 5.0, "phantom")]
    kw = dict(box=32, seed=3, pixel_sizes=(4.5, 5.5), group_size=8, noise_draws=2, snr_range=(0.05, 0.5))
    a = simulate_training_distribution(st, 16, **kw)
    b = simulate_training_distribution(st, 16, **kw)
    assert a.noisy.shape == a.clean.shape == (32, 32, 32) and a.noisy.dtype == np.float32
    np.testing.assert_array_equal(a.noisy, b.noisy)
    np.testing.assert_array_equal(a.clean, b.clean)
    assert set(a.meta["sign"]) == {-1.0, 1.0} and a.meta["coloured"].any() and not a.meta["coloured"].all()
    assert (a.meta["snr"] >= 0.05).all() and (a.meta["snr"] <= 0.5).all()
    assert set(a.meta["pixel_size"]) <= {4.5, 5.5}
    m = disc_mask(32)
    for i in range(len(a.noisy)):  # the realised SNR matches the drawn one (disc variance / noise variance)
        c, n = a.clean[i].astype(np.float64), a.noisy[i].astype(np.float64)
        assert c[m].var() / (n - c)[m].var() == pytest.approx(a.meta["snr"][i], rel=0.35)
    # the two noisy copies of one clean image share the projection up to the sign
    np.testing.assert_allclose(np.abs(a.clean[0]), np.abs(a.clean[8]), rtol=1e-6)
    assert (a.meta["defocus_u"] >= 5000).all() and (a.meta["defocus_u"] <= 35000).all()
    json.dumps(a.params)  # recorded in model files
    assert a.params["snr_range"] == [0.05, 0.5] and a.params["n_clean"] == 16


def test_bad_parameters():
    with pytest.raises(ParameterError):
        simulate_training_distribution([], 4)
    with pytest.raises(ParameterError):
        simulate_training_distribution(["phantom"], 4, snr_range=(0.5, 0.1))
