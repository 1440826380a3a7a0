"""The one centre convention (docs/conventions.md): pixel N//2 on each axis, for every operator."""
import math

import numpy as np
import pytest
import torch

from cryoxplain.explain.targets import DiscEnergy
from cryoxplain.geometry.rotate import mirror, rot90, rotate
from cryoxplain.geometry.spiral import spiral_geometry
from cryoxplain.imaging.masks import box_center, disc_mask, radial_distance
from cryoxplain.sim.density import phantom
from cryoxplain.sim.project import project
from cryoxplain.sim.so3 import euler_to_matrix


@pytest.mark.parametrize("n", [16, 17, 64, 33])
@pytest.mark.parametrize("taper", [0.0, 3.0])
def test_disc_mask_is_exactly_invariant_under_quarter_turns_and_mirrors(n, taper):
    m = disc_mask(n, taper=taper)
    assert m[n // 2, n // 2] == 1 and box_center(n) == n // 2
    for k in range(4):
        assert np.array_equal(rot90(m, k), m)
        assert np.array_equal(rotate(m, k * math.pi / 2), m)
    assert np.array_equal(mirror(m, -1), m) and np.array_equal(mirror(m, -2), m)
    # a smaller disc too (its edge falls between lattice rings)
    m2 = disc_mask(n, radius=n / 3)
    assert np.array_equal(rot90(m2, 1), m2)


@pytest.mark.parametrize("n", [16, 17])
def test_disc_energy_target_is_invariant_under_quarter_turns(n):
    y = torch.randn(3, 1, n, n, dtype=torch.float64)
    t = DiscEnergy()
    base = t(y)
    for k in (1, 2, 3):
        np.testing.assert_allclose(t(rot90(y, k)).numpy(), base.numpy(), rtol=1e-12)
    mask = t._mask_for((n, n), "cpu", torch.float64).numpy()
    assert np.array_equal(rot90(mask, 1), mask) and mask[n // 2, n // 2] == 1


def test_centre_is_pixel_n_over_2():
    d = radial_distance(8)
    assert d[4, 4] == 0 and d[0, 4] == 4 and d[7, 4] == 3
    # the quarter turn keeps the centre pixel and turns +x towards +y about it
    img = np.zeros((8, 8))
    img[4, 4], img[4, 6] = 1.0, 2.0
    r = rot90(img, 1)
    assert r[4, 4] == 1.0 and r[6, 4] == 2.0
    assert spiral_geometry(8).center == 4 and spiral_geometry(9).center == 4


@pytest.mark.parametrize("box", [24, 25])
def test_simulated_particle_rotated_in_plane_equals_simulation_at_rotated_orientation(box):
    vol = phantom(16, seed=3).data  # well inside the box: nothing reaches the unpaired edge row
    a = euler_to_matrix(0.4, 1.1, -0.7)
    # active in-plane rotation by +90° (x towards y) applied after A: image(R⁻¹p) = projection at R·A
    r = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    p = project(vol, np.stack([a, r @ a]), box, oversample=1)
    scale = np.abs(p[0]).max()
    np.testing.assert_allclose(rot90(p[0], 1), p[1], atol=1e-5 * scale)
    assert np.abs(rot90(p[0], 1) - p[0]).max() > 0.05 * scale  # the particle is not symmetric
