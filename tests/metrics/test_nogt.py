"""No-ground-truth metrics on planted cases with analytic values (issue 13)."""
import math

import numpy as np
import pytest
import torch

from cryoxplain.imaging.filters import gaussian_blur, gaussian_kernel1d
from cryoxplain.metrics.equivariance import evaluate_equivariance
from cryoxplain.metrics.nogt import (contrast_sign_error, gaussian_lowpass, j_invariant_loss, matched_lowpass_sigma,
                                     noise_response, region_snr, transfer_gain)

N = 32


def white(n=64, seed=0):
    return torch.randn(n, 1, N, N, generator=torch.Generator().manual_seed(seed))


def identity(x):
    return x


def blur(sigma):
    return lambda x: gaussian_blur(x, sigma, border="periodic")


def kernel2d(sigma):
    k = gaussian_kernel1d(sigma).numpy()
    return np.outer(k, k)


ALL = np.ones((N, N), np.float32)  # whole-box window: the analytic values are for periodic filters


def test_j_invariant_loss_identity_is_the_noise_variance_plus_the_neighbour_mean():
    x = white(128)
    # zero replacement: f_J(x) = 0 on J, loss = E x² = 1
    assert j_invariant_loss(identity, x, replace="zero", window=ALL) == pytest.approx(1.0, rel=0.02)
    # neighbour mean of k unmasked pixels: 1 + 1/k (k = 8 inside, 5 on edges, 3 in corners)
    k = np.full((N, N), 8.0)
    k[0, :] = k[-1, :] = k[:, 0] = k[:, -1] = 5
    k[0, 0] = k[0, -1] = k[-1, 0] = k[-1, -1] = 3
    assert j_invariant_loss(identity, x, window=ALL) == pytest.approx(float(np.mean(1 + 1 / k)), rel=0.02)


@pytest.mark.parametrize("spacing", [2, 4])
def test_j_invariant_loss_of_a_known_linear_lowpass(spacing):
    sigma = 1.2
    h = kernel2d(sigma)
    r = h.shape[0] // 2
    t = np.arange(-r, r + 1)
    on_lattice = (t[:, None] % spacing == 0) & (t[None, :] % spacing == 0)
    expected = 1.0 + float((h[~on_lattice] ** 2).sum())  # the pixel itself and its J-lattice are zeroed
    x = white(128, seed=1)
    got = j_invariant_loss(blur(sigma), x, spacing=spacing, replace="zero", window=ALL)
    assert got == pytest.approx(expected, rel=0.02)


def test_j_invariant_loss_is_mse_to_clean_plus_noise_variance():
    g = torch.Generator().manual_seed(3)
    clean = gaussian_blur(torch.randn(96, 1, N, N, generator=g), 3.0, border="periodic") * 4
    noise = 0.5 * torch.randn(clean.shape, generator=g)
    x = clean + noise
    f = blur(1.0)
    mse_j = j_invariant_loss(f, x, replace="zero", window=ALL)
    # the J-invariant output against the clean images: the same masking, known y
    from cryoxplain.imaging.blindspot import grid_masks, replace_masked

    tot = 0.0
    for m in grid_masks((N, N), 4):
        out = f(replace_masked(x, m[None, None], "zero"))
        tot += float(((out - clean) ** 2)[..., m].sum())
    mse_clean = tot / x.numel()
    assert mse_j == pytest.approx(mse_clean + 0.25, rel=0.03)


def test_contrast_sign_error_planted():
    x = white(16)
    assert contrast_sign_error(identity, x) == 0.0
    assert contrast_sign_error(blur(1.5), x) < 1e-6
    assert contrast_sign_error(torch.abs, x) == pytest.approx(2.0)
    c = 0.3  # F(x) = x + c: ‖2c‖/‖x + c‖ over the window
    from cryoxplain.imaging.masks import disc_mask

    w = torch.from_numpy(disc_mask((N, N)))
    expected = float(torch.linalg.vector_norm(w * 2 * c * torch.ones_like(x)) / torch.linalg.vector_norm(w * (x + c)))
    assert contrast_sign_error(lambda t: t + c, x) == pytest.approx(expected, rel=1e-5)


def test_transfer_gain_and_matched_sigma_recover_a_gaussian():
    x = white(64, seed=4)
    assert np.allclose(transfer_gain(identity, x), 1.0)
    assert matched_lowpass_sigma(transfer_gain(identity, x), N) == 0.0
    for sigma in (1.0, 2.0):
        gain = transfer_gain(blur(sigma), x)
        f = np.arange(len(gain)) / N
        exact = np.exp(-2 * np.pi ** 2 * sigma ** 2 * f ** 2)
        assert np.all(np.diff(gain[:10]) < 0) and np.allclose(gain[3:], exact[3:], atol=0.05)
        assert matched_lowpass_sigma(gain, N) == pytest.approx(sigma, rel=0.1)


def test_noise_response_of_identity_and_of_the_matched_lowpass():
    x = white(64, seed=5)
    r = noise_response(identity, x, sigma=0.0, window=ALL)
    assert r["energy"] == pytest.approx(1.0) and r["energy_vs_lowpass"] == pytest.approx(1.0)
    sigma = 1.5
    r = noise_response(blur(sigma), x, sigma=sigma, window=ALL)
    analytic = float((kernel2d(sigma) ** 2).sum())  # white noise through a periodic filter: Σ h²
    assert r["energy"] == pytest.approx(analytic, rel=0.03)
    assert r["energy_vs_lowpass"] == pytest.approx(1.0, abs=1e-5)
    assert abs(r["spectrum_excess"]) < 1e-5
    # a "hallucinating" map: adds a fixed pattern whatever the input
    pattern = torch.from_numpy(np.sin(np.arange(N) / 2.0)[None, :].repeat(N, 0).astype(np.float32))
    r = noise_response(lambda t: blur(sigma)(t) + pattern, x, sigma=sigma, window=ALL)
    assert r["energy_vs_lowpass"] > 2 and r["spectrum_excess"] > 1


def test_exactly_equivariant_blur_has_zero_grid_error():
    x = white(8, seed=6)
    rep = evaluate_equivariance(blur(1.0), x, n_offgrid=0)
    assert max(rep.grid.values()) < 1e-6


def test_region_snr_planted():
    rng = np.random.default_rng(0)
    a, sb = 0.8, 2.0
    sig = [a + 5.0 + sb * rng.standard_normal(400) for _ in range(50)]  # particle on ice of mean 5
    bg = [5.0 + sb * rng.standard_normal(400) for _ in range(50)]
    r = region_snr(sig, bg)
    assert r["n_regions"] == 50
    assert r["snr_db"] == pytest.approx(10 * math.log10(a ** 2 / sb ** 2), abs=1.0)
    assert region_snr([np.ones(4)], [np.zeros(4)])["n_regions"] == 0  # zero-variance background: skipped


def test_region_snr_exact_definition():
    """Pins the definition (docs/metrics.md): per pair μ_s²/v_b with v_b the population variance
    (ddof 0) of the background region and μ_s = mean(signal) − mean(background); averaged
    linearly over the pairs, then 10·log10.  Not the mean of per-pair dB, not ΣN μ_s²/Σ v_b; the
    signal region's own variance and the sign of μ_s (protein dark) do not enter."""
    bg1 = np.tile([4.0, 6.0], 50)  # mean 5, population variance 1 (sample variance would be 1.0101)
    bg2 = np.tile([-2.0, 2.0], 50)  # mean 0, population variance 4
    sig1 = 6.0 + np.tile([-3.0, 3.0], 20)  # μ_s = +1 (its own variance 9 must not matter): ratio 1
    sig2 = -math.sqrt(12.0) + np.zeros(30)  # μ_s = −√12 (dark): ratio 12/4 = 3
    r = region_snr([sig1, sig2], [bg1, bg2])
    assert r["n_regions"] == 2
    assert r["snr"] == pytest.approx(2.0, rel=1e-12)
    assert r["snr_db"] == pytest.approx(10 * math.log10(2.0), abs=1e-9)  # 3.0103 dB
    # the alternatives it is not: mean of dB 2.386, pooled (1 + 12) / (1 + 4) → 4.150 dB
    assert abs(r["snr_db"] - (0 + 10 * math.log10(3)) / 2) > 0.5
    assert abs(r["snr_db"] - 10 * math.log10(13 / 5)) > 0.5
    # scale- and offset-invariant: the same for a·x + b on both regions (a raw vs a normalised micrograph)
    r2 = region_snr([3 * sig1 - 7, 3 * sig2 - 7], [3 * bg1 - 7, 3 * bg2 - 7])
    assert r2["snr_db"] == pytest.approx(r["snr_db"], abs=1e-9)


def test_gaussian_lowpass_zero_is_identity():
    x = white(2)
    assert torch.equal(gaussian_lowpass(0.0)(x), x)


def test_half_gain_of_a_map_that_halves_every_ring():
    from cryoxplain.metrics.nogt import lowpass_half_gain_frequency

    g = np.full(17, 0.25)  # e.g. a barely trained net that outputs almost nothing
    f = lowpass_half_gain_frequency(g, 32)
    assert 0 < f < 1 / 32 and f == pytest.approx((0.5 / 0.75) / 32)
    assert matched_lowpass_sigma(g, 32) > 5
    assert math.isinf(lowpass_half_gain_frequency(np.ones(17), 32))
