"""imaging/: filters against scipy.ndimage, Fourier rings, normalisation, augmentation, validator."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.geometry.rotate import rot90
from cryoxplain.imaging import (as_image_batch, as_image_stack, gaussian_blur, gaussian_blur_matrices, n_rings,
                                normalize, denormalize, normalize_images, resolve_mask, rfft_weights,
                                ring_frequencies, ring_index, ring_sums)
from cryoxplain.imaging.augment import random_symmetry


@pytest.mark.parametrize("border,mode", [("reflect", "reflect"), ("mirror", "mirror"), ("zero", "constant"),
                                         ("periodic", "wrap")])
@pytest.mark.parametrize("sigma", [0.6, 2.0, 11.0])
def test_gaussian_blur_matches_scipy(border, mode, sigma):
    x = np.random.default_rng(0).standard_normal((3, 17, 20))
    ref = np.stack([ndimage.gaussian_filter(i, sigma, mode=mode) for i in x])
    np.testing.assert_allclose(gaussian_blur(x, sigma, border=border), ref, atol=1e-12)
    np.testing.assert_allclose(gaussian_blur(x, [sigma] * 3, border=border), ref, atol=1e-12)
    t = torch.tensor(x, requires_grad=True)
    gaussian_blur(t, sigma, border=border).sum().backward()
    assert t.grad is not None


def test_blur_matrices_derivative_and_identity():
    g, dg = gaussian_blur_matrices(12, [0.0, 1.5], derivative=True, dtype=torch.float64)
    assert torch.equal(g[0], torch.eye(12, dtype=torch.float64)) and not dg[0].any()
    g2, _ = gaussian_blur_matrices(12, [1.5 + 1e-6], dtype=torch.float64)
    assert float(((g2[0] - g[1]) / 1e-6 - dg[1]).abs().max()) < 1e-5
    with pytest.raises(ParameterError):
        gaussian_blur(np.zeros((4, 4)), -1.0)
    with pytest.raises(ParameterError):
        gaussian_blur(np.zeros((4, 4)), 1.0, border="nearest")


def test_zero_border_matrices_are_scipy_constant_mode_even_when_the_kernel_outgrows_the_axis():
    # the banded (Toeplitz) construction of border="zero", used for Blur IG's whole path at once
    from scipy import ndimage

    sigmas = [0.0, 0.4, 2.5, 9.0, 50.0]  # radii 0 … 200 taps on 5- and 13-pixel axes
    for n in (1, 5, 13):
        x = np.random.default_rng(n).normal(size=(n, n))
        g, dg = gaussian_blur_matrices(n, sigmas, border="zero", derivative=True, dtype=torch.float64)
        for k, s in enumerate(sigmas):
            ref = ndimage.gaussian_filter(x, s, mode="constant") if s > 0 else x
            np.testing.assert_allclose((g[k] @ torch.as_tensor(x) @ g[k].T).numpy(), ref, atol=1e-13)
        g2, _ = gaussian_blur_matrices(n, [2.5 + 1e-6], border="zero", dtype=torch.float64)
        assert float(((g2[0] - g[2]) / 1e-6 - dg[2]).abs().max()) < 1e-5


def test_periodic_blur_commutes_with_quarter_turns_on_even_boxes():
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    np.testing.assert_allclose(gaussian_blur(rot90(x, 1), 1.3, border="periodic"),
                               rot90(gaussian_blur(x, 1.3, border="periodic"), 1), atol=1e-13)


def test_rings_partition_and_rfft_weights():
    shape = (12, 16)
    ring = ring_index(shape)
    assert n_rings(shape) == 7 and ring[0, 0] == 0 and ring.max() == 6 and (ring == -1).any()
    np.testing.assert_allclose(ring_frequencies(shape), np.arange(7) / 12)
    np.testing.assert_allclose(ring_frequencies(shape, 2.0), np.arange(7) / 24)
    x = np.random.default_rng(1).standard_normal(shape)
    full = ring_sums(np.abs(np.fft.fft2(x)) ** 2, ring, 7)
    half = ring_sums(np.abs(np.fft.rfft2(x)) ** 2, ring_index(shape, rfft=True), 7, rfft_weights(shape))
    np.testing.assert_allclose(full, half, rtol=1e-12)
    assert ring_sums(np.ones((2, 3) + shape), ring, 7).shape == (2, 3, 7)


def test_normalisation_round_trip_and_numpy():
    x = torch.randn(4, 1, 8, 8) * 3 + 2
    xn, mu, sd = normalize(x)
    assert torch.allclose(xn.mean((-2, -1)), torch.zeros(4, 1), atol=1e-6)
    assert torch.allclose(denormalize(xn, mu, sd), x, atol=1e-5)
    np.testing.assert_allclose(normalize_images(x.numpy()), xn.numpy(), atol=1e-5)
    assert torch.equal(normalize(torch.ones(1, 1, 4, 4))[0], torch.zeros(1, 1, 4, 4))  # σ = 0 → 1


def test_augmentation_applies_one_symmetry_to_input_and_target():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 1, 12, 12)
    for mode in ("none", "flip", "rot90", "d4", "rotate"):
        a, b = random_symmetry([x, 3 * x], mode, g)
        assert torch.allclose(b, 3 * a, atol=1e-5) and a.shape == x.shape
    a1 = random_symmetry(x, "d4", torch.Generator().manual_seed(5))
    a2 = random_symmetry(x, "d4", torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2)
    with pytest.raises(ShapeError):
        random_symmetry(torch.randn(2, 1, 8, 10), "rotate", g)
    with pytest.raises(ParameterError):
        random_symmetry(x, "shear", g)


def test_batch_validator_layouts_and_errors():
    assert as_image_batch(np.zeros((5, 6))).shape == (1, 1, 5, 6)
    assert as_image_batch(np.zeros((2, 5, 6), np.int16)).dtype == torch.float32
    t = torch.zeros(2, 1, 4, 4)
    assert as_image_batch(t) is t
    assert as_image_stack(t).shape == (2, 4, 4)
    with pytest.raises(ShapeError):
        as_image_batch(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ShapeError):
        as_image_batch(np.zeros((4, 5)), square=True)
    with pytest.raises(ParameterError, match="particles contain NaN"):
        as_image_batch(np.full((4, 4), np.nan), name="particles")
    assert resolve_mask("none", (4, 4)) is None and resolve_mask("disc", (4, 4)).shape == (4, 4)
    with pytest.raises(ShapeError):
        resolve_mask(np.ones((3, 3)), (4, 4))
