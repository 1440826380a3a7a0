"""Rotations (exact and band-limited), disc masks and the equivariance metric."""
import math

import numpy as np
import pytest
import torch

from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.geometry.rotate import disc_mask, mirror, rot90, rotate, rotate_deg
from cryoxplain.metrics.equivariance import (GRID_ANGLES_DEG, classifier_invariance, default_mask,
                                             equivariance_error, evaluate_equivariance, offgrid_angles,
                                             rotation_floor)

N = 48


def _coords(n=N):
    y, x = np.mgrid[:n, :n].astype(np.float64)
    return x - n // 2, y - n // 2  # offsets from the centre pixel n//2


def _blobs(n=N, count=4, seed=0, sigma=3.0):
    """Smooth anisotropic test images (sums of off-centre Gaussians)."""
    rng = np.random.default_rng(seed)
    x, y = _coords(n)
    out = np.zeros((count, n, n))
    for i in range(count):
        for _ in range(5):
            cx, cy = rng.uniform(-n / 8, n / 8, 2)
            sx, sy = sigma * rng.uniform(0.7, 1.2, 2)
            out[i] += rng.uniform(0.5, 1.5) * np.exp(-((x - cx) ** 2 / (2 * sx ** 2) + (y - cy) ** 2 / (2 * sy ** 2)))
    return out


# ---------------------------------------------------------------- rotations
def test_grid_rotations_are_exact_permutations():
    rng = np.random.default_rng(1)
    for n in (16, 17):
        a = rng.standard_normal((3, n, n)).astype(np.float32)
        for k in range(4):
            r = rotate(a, k * math.pi / 2)
            assert r.dtype == np.float32
            # about the centre pixel c = n//2, periodically: a quarter turn (+x towards +y) takes
            # out[y, x] = in[(2c - x) mod n, y]; on odd boxes this is numpy's rot90 about (n-1)/2
            c = n // 2
            ref = a
            for _ in range(k):
                ref = ref[:, (2 * c - np.arange(n)[None, :]) % n, np.arange(n)[:, None]]
            assert np.array_equal(r, ref)
            if n % 2:
                assert np.array_equal(r, np.rot90(a, -k, axes=(-2, -1)))
            assert np.array_equal(r, rot90(a, k))
            assert np.array_equal(np.sort(r.ravel()), np.sort(a.ravel()))
        t = torch.as_tensor(a)[:, None]
        assert torch.equal(rotate(t, math.pi / 2), torch.as_tensor(rot90(a, 1))[:, None])
        assert torch.equal(rotate_deg(t, 270.0), rot90(t, 3))
        assert torch.equal(rotate(t, 4 * math.pi), t)


def test_positive_angle_turns_x_axis_towards_y():
    img = np.zeros((9, 9))
    img[4, 6] = 1.0  # two pixels along +x (column) from the centre
    r = rotate(img, math.pi / 2)
    assert r[6, 4] == 1.0  # now two pixels along +y (row)


@pytest.mark.parametrize("method,tol", [("fft", 1e-5), ("spline", 1e-4)])
def test_offgrid_rotation_matches_analytic_function(method, tol):
    x, y = _coords()

    def g(px, py):
        return np.exp(-((px - 7) ** 2 / (2 * 3.5 ** 2) + (py + 3) ** 2 / (2 * 2.2 ** 2)))

    for deg in (17.0, 45.0, 123.4, -61.0, 300.5):
        th = math.radians(deg)
        c, s = math.cos(th), math.sin(th)
        ref = g(c * x + s * y, -s * x + c * y)  # out(p) = in(R^-1 p)
        assert np.abs(rotate(g(x, y), th, method=method) - ref).max() < tol


def test_torch_numpy_batch_per_image_angles_and_gradient():
    a = _blobs(count=3)
    angles = [0.3, 1.9, -2.5]
    ref = np.stack([rotate(a[i], angles[i]) for i in range(3)])
    t = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    r = rotate(t, angles)
    assert r.shape == t.shape and r.dtype == torch.float64
    assert np.abs(r.detach().numpy() - ref).max() < 1e-12
    r.sum().backward()  # differentiable
    assert t.grad is not None and torch.isfinite(t.grad).all()
    t4 = torch.tensor(a, dtype=torch.float32)[:, None]
    assert rotate(t4, angles).shape == (3, 1, N, N)


def test_rotation_errors():
    with pytest.raises(ShapeError):
        rotate(np.zeros((8, 10)), 0.3)
    with pytest.raises(ShapeError):
        rotate(np.zeros((2, 8, 8)), [0.1, 0.2, 0.3])
    with pytest.raises(ParameterError):
        rotate(np.zeros((8, 8)), 0.1, method="bilinear")
    assert rotate(np.ones((8, 10)), math.pi).shape == (8, 10)


def test_disc_mask():
    m = disc_mask(32)
    assert m.shape == (32, 32) and m.dtype == np.float32
    assert m[16, 16] == 1 and m[0, 0] == 0
    # centred on pixel 16 (N//2): invariant under the quarter turns and mirrors about that pixel
    assert np.array_equal(m, rot90(m)) and np.array_equal(m, mirror(m, -2)) and np.array_equal(m, mirror(m, -1))
    mt = disc_mask(32, taper=4)
    assert np.all((mt >= 0) & (mt <= 1)) and np.all(mt <= m + 1e-7)
    assert 0 < mt[16, 2] < 1 or 0 < mt[16, 3] < 1
    assert disc_mask(33, radius=5).sum() == pytest.approx(81, abs=1)  # ~ pi r^2 lattice points (81 exact)
    with pytest.raises(ParameterError):
        disc_mask(8, radius=-1)


# ---------------------------------------------------------------- the metric
def _gaussian_blur(sigma=1.5, n=N):
    """Radially symmetric Gaussian blur by Fourier multiplication: exactly rotation-equivariant (continuous)."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    H = torch.as_tensor(np.exp(-2 * (math.pi * sigma) ** 2 * (fx ** 2 + fy ** 2)))

    def f(x):
        return torch.fft.ifft2(torch.fft.fft2(x.double()) * H).real

    return f


def _horizontal_gradient(x):
    """Central difference along x (columns): not rotation-equivariant."""
    x = x.double()
    return (torch.roll(x, -1, dims=-1) - torch.roll(x, 1, dims=-1)) / 2


def test_blur_is_equivariant_within_floor_and_gradient_is_not():
    imgs = _blobs(count=4, sigma=2.5)
    blur = _gaussian_blur()
    rep = evaluate_equivariance(blur, imgs, n_offgrid=5, seed=3)
    assert rep.task == "denoise" and set(rep.grid) == set(GRID_ANGLES_DEG) and len(rep.offgrid) == 5
    assert max(rep.grid.values()) < 1e-10  # exact: grid rotation commutes with an isotropic blur
    floor = max(rep.floor[a] for a in rep.offgrid)
    assert max(rep.offgrid.values()) < max(10 * floor, 1e-5)
    assert rep.summary["reference"] < 1e-5  # the isotropic reference is itself an exactly equivariant blur

    grad = evaluate_equivariance(_horizontal_gradient, imgs, n_offgrid=5, seed=3)
    assert min(grad.grid.values()) > 0.3  # 90°: d/dx becomes d/dy, an unrelated image
    assert grad.grid[180.0] == pytest.approx(2.0, rel=1e-6)  # d/dx is odd: F(R180 x) = -R180 F(x)
    assert min(grad.offgrid.values()) > 0.1
    assert grad.summary["offgrid"] > 1000 * rep.summary["offgrid"]


def test_equivariance_error_on_module_and_identity():
    imgs = torch.as_tensor(_blobs(count=3), dtype=torch.float32)
    ident = torch.nn.Identity()
    e = equivariance_error(ident, imgs, [90, 33.3])
    assert e[90.0] == 0.0
    # identity: E(θ) = ||R x - R x|| = 0 whatever the rotation
    assert e[33.3] == 0.0

    conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0., 0., 0.], [-1., 0., 1.], [0., 0., 0.]]]]))
    conv.train()
    e2 = equivariance_error(conv, imgs, GRID_ANGLES_DEG)
    assert conv.training  # mode restored
    assert e2[180.0] == pytest.approx(2.0, rel=1e-5)


def test_reference_and_default_mask_on_noise():
    """On pixel noise the round-trip floor is large, the isotropic reference small, and the tapered
    default mask gives a smaller reference error than a hard disc."""
    from cryoxplain.metrics.equivariance import default_mask, isotropic_reference

    noise = np.random.default_rng(2).standard_normal((6, N, N))
    ang = offgrid_angles(3, seed=0)
    fl = np.mean(list(rotation_floor(noise, ang).values()))
    ref = np.mean(list(isotropic_reference(noise, ang).values()))
    ref_hard = np.mean(list(isotropic_reference(noise, ang, mask=disc_mask(N)).values()))
    assert ref < fl / 5 and ref < ref_hard
    m = default_mask(N)
    assert m.max() == 1 and 0 < m[N // 2, 1] < 1 and np.array_equal(m, rot90(m))


def test_floor_shrinks_as_images_get_smoother():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, N, N))
    angles = offgrid_angles(4, seed=1)
    floors = []
    for sigma in (0.0, 1.0, 2.0, 4.0):
        img = noise if sigma == 0 else _gaussian_blur(sigma)(torch.as_tensor(noise)).numpy()
        floors.append(np.mean(list(rotation_floor(img, angles).values())))
    assert all(a > b for a, b in zip(floors, floors[1:])), floors
    assert floors[-1] < floors[0] / 5
    assert all(v == 0.0 for v in rotation_floor(noise, GRID_ANGLES_DEG).values())
    # on compact smooth images the band-limited rotation is far more accurate than an order-5 spline
    blobs = _blobs(count=3)
    fft_fl = np.mean(list(rotation_floor(blobs, angles).values()))
    sp_fl = np.mean(list(rotation_floor(blobs, angles, method="spline").values()))
    assert fft_fl < 1e-7 < 1e-6 < sp_fl


def test_floor_round_trip_is_not_an_exact_algebraic_inverse():
    """R_-θ R_θ must not cancel the shears exactly (that would hide the interpolation error) for
    any number of quarter turns in θ."""
    noise = np.random.default_rng(4).standard_normal((3, N, N))
    fl = rotation_floor(noise, [10.0, 100.0, 190.0, 280.0, -35.0])
    assert all(v > 0.1 for v in fl.values()), fl
    th = math.radians(10.0)
    same = rotate(rotate(noise, th), -th)  # one factorisation forwards and backwards: only edge losses
    m = default_mask(N)
    assert np.linalg.norm(m * (same - noise)) / np.linalg.norm(m * noise) < fl[10.0] / 2


def test_classifier_invariance():
    imgs = torch.as_tensor(_blobs(count=6, seed=5), dtype=torch.float32)
    # invariant classifier: logits from radial statistics (disc-masked moments)
    m = torch.as_tensor(disc_mask(N))
    r2 = torch.as_tensor((lambda x, y: x ** 2 + y ** 2)(*_coords()), dtype=torch.float32)

    def invariant(x):
        x = x[:, 0] * m
        return torch.stack([x.sum((-2, -1)), (x * r2).sum((-2, -1)) / 100, -x.sum((-2, -1))], 1)

    rep = evaluate_equivariance(invariant, imgs, n_offgrid=3, seed=0)
    assert rep.task == "classify"
    assert all(v["agreement"] == 1.0 and abs(v["kl"]) < 1e-9 for v in rep.grid.values())
    xcoord = torch.as_tensor(_coords()[0], dtype=torch.float32)

    def lopsided(x):  # depends on the x-moment: not invariant
        s = (x[:, 0] * xcoord * m).sum((-2, -1))
        return torch.stack([s, -s], 1)

    res = classifier_invariance(lopsided, imgs, [180.0])
    assert res[180.0]["agreement"] < 0.5 and res[180.0]["kl"] > 0.01
    with pytest.raises(ShapeError):
        equivariance_error(lopsided, imgs, [90])


def test_report_json_and_table_and_errors():
    rep = evaluate_equivariance(_gaussian_blur(), _blobs(count=2), n_offgrid=2, seed=7)
    d = rep.to_dict()
    assert set(d["grid"]) == {"90", "180", "270"} and len(d["offgrid"]) == 2 and "summary" in d
    tab = rep.format_table()
    assert "off-grid" in tab and "floor" in tab
    assert offgrid_angles(2, seed=7) == list(rep.offgrid)
    assert all(abs(((a + 45) % 90) - 45) >= 2 for a in offgrid_angles(50, seed=1))

    class Fixed(torch.nn.Module):
        input_shape = (32, 32)

        def forward(self, x):
            return x

    with pytest.raises(ShapeError, match="32x32"):
        evaluate_equivariance(Fixed(), _blobs(count=1), n_offgrid=1)
    with pytest.raises(ShapeError):
        evaluate_equivariance(_gaussian_blur(), np.zeros((2, 8, 10)))
    with pytest.raises(ParameterError):
        evaluate_equivariance(_gaussian_blur(), np.full((1, 8, 8), np.nan))
