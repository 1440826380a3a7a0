"""fourier_crop / fourier_pad (imaging.fourier): the one Fourier binning; exact inverse pair,
mean kept, band-limited interpolation, even and odd sizes."""
import numpy as np
import pytest

from cryoxplain.errors import ShapeError
from cryoxplain.imaging.fourier import fourier_crop, fourier_pad


@pytest.mark.parametrize("small,big", [((64, 60), (128, 120)), ((33, 31), (70, 65)), ((32, 31), (64, 63)),
                                       ((33, 30), (66, 61))])
def test_crop_undoes_pad_and_keeps_the_mean(small, big):
    x = np.random.default_rng(0).standard_normal(small)
    y = fourier_pad(x, big)
    assert y.shape == big and y.dtype == np.float64
    np.testing.assert_allclose(fourier_crop(y, small), x, atol=1e-12)
    assert y.mean() == pytest.approx(x.mean(), abs=1e-12)
    x32 = x.astype(np.float32)
    assert fourier_crop(fourier_pad(x32, big), small).dtype == np.float32


def test_pad_by_two_interpolates_and_crop_of_smooth_image_decimates():
    x = np.random.default_rng(1).standard_normal((64, 60))
    np.testing.assert_allclose(fourier_pad(x, (128, 120))[::2, ::2], x, atol=1e-12)
    yy, xx = np.mgrid[:120, :120]
    g = np.exp(-((yy - 60) ** 2 + (xx - 60) ** 2) / (2 * 15.0 ** 2))
    np.testing.assert_allclose(fourier_crop(g, (40, 40)), g[::3, ::3], atol=1e-4)  # centre N//2 → N//2


def test_wrong_direction_is_a_shape_error():
    with pytest.raises(ShapeError, match="fourier_crop: cannot go from 8x8 to 9x8"):
        fourier_crop(np.zeros((8, 8)), (9, 8))
    with pytest.raises(ShapeError, match="fourier_pad"):
        fourier_pad(np.zeros((8, 8)), (4, 8))
    with pytest.raises(ShapeError, match="one 2D image"):
        fourier_crop(np.zeros((2, 8, 8)), (4, 4))
