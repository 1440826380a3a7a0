"""Spiral sampling (thesis Eq. 7.5–7.7), ribbons and the sparse resampling operators."""
import math

import numpy as np
import pytest

from cryoxplain.geometry.rotate import rot90
import scipy.sparse as sp
from scipy.interpolate import LinearNDInterpolator
from scipy.ndimage import map_coordinates
from scipy.spatial import Delaunay

from cryoxplain.errors import ParameterError
from cryoxplain.geometry import spiral as S


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CRYOXPLAIN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def test_parameters_follow_eq_7_5_to_7_7():
    n_wind, n_spls = 7, 500
    r, th = S.spiral_parameters(n_wind, n_spls)
    i = np.array([0, 1, 123, 499])
    t = i * np.pi / n_spls
    np.testing.assert_allclose(r[i], np.sqrt(t / np.pi))
    np.testing.assert_allclose(th[i], 2 * n_wind * np.sqrt(np.pi * t))
    # ϑ = 2π n_wind r (Eq. 7.6) and r covers [0, 1)
    np.testing.assert_allclose(th, 2 * np.pi * n_wind * r)
    assert r[0] == 0 and 0.99 < r[-1] < 1


@pytest.mark.parametrize("box", [32, 48, 64, 256])
def test_defaults_give_one_pixel_spacing(box):
    g = S.spiral_geometry(box)
    # centre box//2 (docs/conventions.md); the largest disc about it between pixel centres
    R = (box - 1) // 2
    assert g.radius == R and g.center == box // 2
    assert g.n_wind == math.ceil(R)
    assert abs(g.n_spls - math.pi * R * R) / (math.pi * R * R) < 0.05   # ≈ disc area in px²
    assert 0.95 < g.winding_spacing <= 1.0
    assert abs(g.path_spacing - 1.0) < 0.03
    pts = g.points()
    assert np.hypot(pts[:, 0], pts[:, 1]).max() <= R + 1e-9


def test_default_sample_count_for_256_box():
    g = S.spiral_geometry(256)
    assert (g.n_wind, g.n_spls) == (127, 50671)  # R = 127 px about pixel 128


def test_bad_parameters_raise():
    with pytest.raises(ParameterError):
        S.spiral_geometry(2)
    with pytest.raises(ParameterError):
        S.spiral_geometry(32, n_wind=0)
    with pytest.raises(ParameterError):
        S.spiral_geometry(32, n_wind=16, n_spls=20)
    with pytest.raises(ParameterError):
        S.spiral_geometry(32).ribbon_points(4)


def test_normals_and_ribbon_rows():
    g = S.spiral_geometry(48)
    nrm = g.normals()
    np.testing.assert_allclose(np.hypot(nrm[:, 0], nrm[:, 1]), 1.0)
    pts = g.points()
    r = np.hypot(pts[:, 0], pts[:, 1])
    radial = pts / np.maximum(r, 1e-12)[:, None]
    far = r > 5
    # the normal tends to the outward radial direction; angle ≈ atan(1/(2π n ρ))
    cosang = np.sum(nrm[far] * radial[far], axis=1)
    assert cosang.min() > math.cos(math.atan(g.radius / (2 * math.pi * g.n_wind * 5))) - 1e-9
    # the normal is orthogonal to the path's chord direction
    d = np.diff(pts, axis=0)
    d /= np.hypot(d[:, 0], d[:, 1])[:, None]
    assert np.abs(np.sum(d[far[1:]] * nrm[1:][far[1:]], axis=1)).max() < 0.1
    for k in (3, 5):
        rib = g.ribbon_points(k)
        assert rib.shape == (k, g.n_spls, 2)
        np.testing.assert_allclose(rib[k // 2], pts)
        steps = np.hypot(*(rib[1:] - rib[:-1]).transpose(2, 0, 1))
        np.testing.assert_allclose(steps, g.winding_spacing)
    # outer ribbon row of winding w lies on winding w+1 (thesis footnote 4): radial gap ≈ Δr
    rib = g.ribbon_points(3)
    r_out = np.hypot(rib[2, :, 0], rib[2, :, 1])
    np.testing.assert_allclose(r_out[far], r[far] + g.winding_spacing, atol=0.02)


@pytest.fixture(scope="module")
def ops48():
    return S.spiral_operators(S.spiral_geometry(48), (3, 5), disk_cache=False)


def _linear(p, a=0.3, b=-1.7, c=0.45):
    return a + b * p[:, 0] + c * p[:, 1]


def test_grid_to_spiral_is_bilinear(ops48):
    g = ops48.geometry
    A = ops48.grid_to_spiral
    assert A.shape == (g.n_spls, g.box_size ** 2)
    assert np.diff(A.indptr).max() <= 4
    np.testing.assert_allclose(np.asarray(A.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert A.data.min() >= 0
    grid = g.grid_points()
    np.testing.assert_allclose(A @ _linear(grid), _linear(g.points()), atol=1e-10)
    # agrees with scipy.ndimage's order-1 interpolation
    img = np.random.default_rng(0).normal(size=(g.box_size, g.box_size))
    p = g.points() + g.center
    ref = map_coordinates(img, [p[:, 1], p[:, 0]], order=1)
    np.testing.assert_allclose(A @ img.ravel(), ref, atol=1e-10)


@pytest.mark.parametrize("k", [3, 5])
def test_spiral_to_ribbon_barycentric(ops48, k):
    g = ops48.geometry
    A = ops48.ribbon(k)
    assert A.shape == (k * g.n_spls, g.n_spls)
    nnz = np.diff(A.indptr)
    assert nnz.max() <= 3
    rows = A.sum(axis=1).A.ravel()
    tgt = g.ribbon_points(k).reshape(-1, 2)
    src = g.points()
    tri = Delaunay(src)
    strictly_inside = tri.find_simplex(tgt) >= 0
    defined = nnz > 0
    # every defined row is a partition of unity with non-negative weights
    np.testing.assert_allclose(rows[defined], 1.0, atol=1e-12)
    assert A.data.min() >= 0
    # inside the hull: exact barycentric interpolation (reproduces linear functions)
    assert np.all(defined[strictly_inside])
    err = np.abs(A @ _linear(src) - _linear(tgt))
    assert err[strictly_inside].max() < 1e-10
    # snapped rows: targets within the disc but just outside the hull of chords; they are
    # interpolated at a point of the hull edge next to them, a small fraction of a pixel away
    snapped = defined & ~strictly_inside
    assert snapped.any()
    displacement = np.hypot(*(A @ src - tgt).T)
    assert displacement[snapped].max() <= S.SNAP_DISTANCE + 1e-9
    assert np.hypot(*tgt[snapped].T).max() <= g.radius + 1e-9
    # undefined rows (zero padding) are only beyond the outermost winding
    r_tgt = np.hypot(tgt[:, 0], tgt[:, 1])
    assert r_tgt[~defined].min() > g.radius - g.winding_spacing
    # the centre row is the identity
    mid = A[(k // 2) * g.n_spls:(k // 2 + 1) * g.n_spls]
    assert (mid - sp.identity(g.n_spls)).count_nonzero() == 0 or abs(mid - sp.identity(g.n_spls)).max() < 1e-9
    # agrees with scipy's LinearNDInterpolator (same Delaunay construction) where strictly inside
    vals = np.random.default_rng(1).normal(size=g.n_spls)
    ref = LinearNDInterpolator(tri, vals)(tgt)
    np.testing.assert_allclose((A @ vals)[strictly_inside], ref[strictly_inside], atol=1e-9)


def test_spiral_to_grid_on_disc_mask(ops48):
    g = ops48.geometry
    A = ops48.spiral_to_grid
    assert A.shape == (g.box_size ** 2, g.n_spls)
    assert np.diff(A.indptr).max() <= 3
    mask = ops48.mask.ravel()
    grid = g.grid_points()
    r = np.hypot(grid[:, 0], grid[:, 1])
    np.testing.assert_array_equal(mask, r <= g.mask_radius + 1e-9)
    # the mask is a disc: exactly symmetric under the 90° grid rotations
    for q in (1, 2, 3):
        np.testing.assert_array_equal(rot90(ops48.mask, q), ops48.mask)
    rows = A.sum(axis=1).A.ravel()
    np.testing.assert_allclose(rows[mask], 1.0, atol=1e-12)
    assert np.all(rows[~mask] == 0) and A[~mask].nnz == 0
    np.testing.assert_allclose((A @ _linear(g.points()))[mask], _linear(grid)[mask], atol=1e-10)


def test_round_trip_of_smooth_image(ops48):
    """grid → spiral → grid reproduces a smooth image to interpolation accuracy."""
    g = ops48.geometry
    p = g.grid_points()
    img = np.cos(p[:, 0] / 5.0) * np.sin(p[:, 1] / 7.0 + 0.3)
    back = ops48.spiral_to_grid @ (ops48.grid_to_spiral @ img)
    m = ops48.mask.ravel()
    assert np.abs(back[m] - img[m]).max() < 0.02


def test_disk_and_memory_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYOXPLAIN_CACHE_DIR", str(tmp_path))
    S.clear_memory_cache()
    g = S.spiral_geometry(24)
    built = S.spiral_operators(g, 3)
    assert built.source == "built"
    files = list((tmp_path / "spiral").glob("*.npz"))
    assert len(files) == 1
    assert S.spiral_operators(g, 3) is built          # memory cache
    S.clear_memory_cache()
    loaded = S.spiral_operators(g, 3)
    assert loaded.source == "disk"
    for a, b in ((built.grid_to_spiral, loaded.grid_to_spiral), (built.ribbon(3), loaded.ribbon(3)),
                 (built.spiral_to_grid, loaded.spiral_to_grid)):
        assert (a != b).nnz == 0
    np.testing.assert_array_equal(built.mask, loaded.mask)
    # a corrupted cache file is rebuilt, not trusted
    files[0].write_bytes(b"garbage")
    S.clear_memory_cache()
    again = S.spiral_operators(g, 3)
    assert again.source == "built"
    assert (again.ribbon(3) != built.ribbon(3)).nnz == 0
    S.clear_memory_cache()
