"""SNR, PSNR and FRC against hand-computed values."""
import math

import numpy as np
import pytest

from cryoxplain.metrics.snr import DenoiseMetrics, FRCResult, disc_mask, frc, psnr, snr, snr_db, soft_disc_mask


def test_snr_hand_computed():
    clean = np.zeros((4, 4))
    clean[:2] = 1.0  # mean 0.5, variance 0.25
    est = clean + np.array([[0.5, -0.5, 0.5, -0.5]] * 4)  # MSE 0.25
    assert snr(clean, est, mask=None) == pytest.approx(1.0)
    est2 = clean + 0.1
    assert snr(clean, est2, mask=None) == pytest.approx(0.25 / 0.01)
    assert snr_db(100.0) == pytest.approx(20.0) and snr_db(0.0) == -math.inf
    # pooled over a stack: numerators and denominators add up
    c = np.stack([clean, 2 * clean])
    e = np.stack([est, 2 * clean + 0.2])
    assert snr(c, e, mask=None) == pytest.approx((16 * 0.25 + 16 * 1.0) / (16 * 0.25 + 16 * 0.04))


def test_snr_uses_disc_mask():
    clean = np.random.default_rng(0).normal(size=(32, 32))
    est = clean.copy()
    est[0, 0] += 100.0  # a corner error outside the disc
    assert snr(clean, est, mask="disc") == math.inf
    assert np.isfinite(snr(clean, est, mask=None))
    m = disc_mask((32, 32))
    assert m[16, 16] and not m[0, 0] and m.sum() == pytest.approx(math.pi * 16 ** 2, rel=0.05)


def test_psnr_hand_computed():
    clean = np.zeros((8, 8))
    clean[0, 0] = 2.0  # range 2
    est = clean + 0.1  # MSE 0.01
    assert psnr(clean, est, mask=None) == pytest.approx(10 * math.log10(4 / 0.01))
    assert psnr(clean, est, data_range=1.0, mask=None) == pytest.approx(20.0)


def test_frc_self_is_one_and_noise_is_near_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 64))
    r = frc(x, x, pixel_size=2.0)
    np.testing.assert_allclose(r.frc, 1.0, atol=1e-12)
    c = r.crossing(0.5)
    assert not c["crossed"] and c["resolution_A"] == pytest.approx(4.0)  # Nyquist at 2 Å/px
    a, b = rng.normal(size=(50, 64, 64)), rng.normal(size=(50, 64, 64))
    rr = frc(a, b)
    n = rr.n_per_ring[1:] * 50
    assert np.all(np.abs(rr.frc[1:]) < 4 / np.sqrt(n))  # ≈ 0 within ~4σ of the null
    # FRC is invariant to scaling one image and flips sign with negation
    np.testing.assert_allclose(frc(x, 3 * x).frc, 1.0, atol=1e-12)
    np.testing.assert_allclose(frc(x, -x).frc, -1.0, atol=1e-12)


def test_frc_of_signal_plus_noise_matches_theory():
    # FRC(s, s + n) = sqrt(S / (S + N)) per ring for white s and n: 1/sqrt(2) when equal power
    rng = np.random.default_rng(2)
    s = rng.normal(size=(40, 64, 64))
    n = rng.normal(size=(40, 64, 64))
    r = frc(s, s + n, mask="none")
    assert np.median(r.frc[2:]) == pytest.approx(1 / math.sqrt(2), abs=0.02)


def test_frc_crossing_interpolation_and_units():
    curve = np.array([1.0, 0.9, 0.6, 0.4, 0.1, 0.05])
    r = FRCResult(frc=curve, ring=np.arange(6), box=10, pixel_size=2.5)
    c = r.crossing(0.5)  # between ring 2 (0.6) and ring 3 (0.4): r = 2.5
    assert c["crossed"] and c["ring"] == pytest.approx(2.5)
    assert c["frequency_per_A"] == pytest.approx(2.5 / 10 / 2.5)
    assert c["resolution_A"] == pytest.approx(10.0)
    c = r.crossing(0.143)  # between 0.4 (r=3) and 0.1 (r=4): 3 + 0.257/0.3
    assert c["ring"] == pytest.approx(3 + (0.4 - 0.143) / 0.3)


def test_soft_mask_range():
    m = soft_disc_mask((64, 64))
    assert m.max() == pytest.approx(1.0) and m.min() == 0.0 and m[0, 0] == 0.0
    assert m[32, 32] == 1.0 and 0 < m[32, 62] < 1  # raised-cosine edge between r−edge and r
    prof = m[32, 32:]
    assert np.all(np.diff(prof) <= 1e-12)  # decreasing outwards


def test_accumulator_equals_one_shot():
    rng = np.random.default_rng(3)
    c, e, n = (rng.normal(size=(10, 16, 16)) for _ in range(3))
    a = DenoiseMetrics((16, 16), pixel_size=1.0)
    a.update(c, e, n)
    b = DenoiseMetrics((16, 16), pixel_size=1.0)
    for i in range(0, 10, 3):
        b.update(c[i:i + 3], e[i:i + 3], n[i:i + 3])
    ra, rb = a.result(), b.result()
    for k in ("snr_out", "snr_in", "psnr_db"):
        assert ra[k] == pytest.approx(rb[k])
    np.testing.assert_allclose(ra["frc_curve"]["frc"], rb["frc_curve"]["frc"])
