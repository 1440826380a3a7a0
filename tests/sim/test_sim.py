"""Particle simulation: SNR, projection geometry, analytic Gaussians, seeds, atomic-model parsing."""
import numpy as np
import pytest
from scipy import ndimage

from cryoxplain.errors import InputFileError, ParameterError
from cryoxplain.sim import (CTFParams, Density, ctf_2d, density_from_atoms, disc_mask, electron_wavelength,
                            euler_to_matrix, gaussian_density, load_density, matrix_to_euler, phantom, project,
                            random_rotations, read_atoms, rotation_z, simulate_particles)

ATOMS = [("N", 11.104, 6.134, -6.504), ("C", 11.639, 6.071, -5.147), ("C", 13.0, 4.5, -4.0), ("O", 12.5, 3.8, -2.9)]
Z = {"N": 7, "C": 6, "O": 8}


def write_pdb(path, atoms=ATOMS):
    lines = []
    for i, (el, x, y, z) in enumerate(atoms, 1):
        name = f" {el:<3}"
        lines.append(f"ATOM  {i:5d} {name:4s} GLY A{1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{0.0:6.2f}          {el:>2s}")
    lines.append("END")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_cif(path, atoms=ATOMS):
    head = ["data_tiny", "#", "loop_"] + [f"_atom_site.{k}" for k in (
        "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
        "label_entity_id", "label_seq_id", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy", "B_iso_or_equiv",
        "auth_seq_id", "auth_asym_id", "pdbx_PDB_model_num")]
    rows = [f"ATOM {i} {el} {el} . GLY A 1 1 {x} {y} {z} 1.00 0.00 1 A 1" for i, (el, x, y, z) in enumerate(atoms, 1)]
    path.write_text("\n".join(head + rows + ["#"]) + "\n")
    return path


@pytest.fixture(scope="module")
def small_phantom():
    return phantom(size=32, pixel_size=2.0, seed=3)


# ---------------------------------------------------------------- SNR

@pytest.mark.parametrize("snr", [0.25, 1 / 64])
@pytest.mark.parametrize("scale", ["image", "stack"])
def test_requested_snr_met_on_average(small_phantom, snr, scale):
    r = simulate_particles(small_phantom, 40, box=32, snr=snr, seed=11, noise_scale=scale)
    m = disc_mask(32)
    sig = r.clean[:, m].var(axis=1)
    noise = ((r.noisy - r.clean)[:, m] ** 2).mean(axis=1)
    measured = sig.mean() / noise.mean() if scale == "stack" else np.mean(sig / noise)
    assert abs(measured / snr - 1) < 0.05
    assert abs(np.mean(r.metadata["snr_measured"]) / snr - 1) < 0.05
    assert r.clean.dtype == np.float32 and r.noisy.shape == (40, 32, 32)


def test_paired_copies_are_independent_with_same_snr(small_phantom):
    r = simulate_particles(small_phantom, 20, snr=0.25, seed=2, paired=True)
    n1, n2 = (r.noisy - r.clean).ravel(), (r.noisy2 - r.clean).ravel()
    assert abs(np.corrcoef(n1, n2)[0, 1]) < 0.02
    assert abs(n1.var() / n2.var() - 1) < 0.05


# ---------------------------------------------------------------- geometry

def test_rotation_about_z_is_inplane_rotation_of_projection(small_phantom):
    theta = 0.7
    p0 = project(small_phantom.data, np.eye(3)[None])[0].astype(np.float64)
    pr = project(small_phantom.data, rotation_z(theta)[None])[0].astype(np.float64)
    # image(x) = P(R2ᵀ x) with R2ᵀ (x, y) = (c x − s y, s x + c y) in pixel coordinates about box//2
    n, c, s = 32, np.cos(theta), np.sin(theta)
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    src_x, src_y = c * xx - s * yy + n // 2, s * xx + c * yy + n // 2
    expected = ndimage.map_coordinates(p0, [src_y, src_x], order=3, mode="constant")
    m = disc_mask(n, n / 2 - 2)
    err = np.linalg.norm((pr - expected)[m]) / np.linalg.norm(expected[m])
    wrong = ndimage.map_coordinates(p0, [c * yy + s * xx + n // 2, c * xx + s * yy + n // 2], order=3)
    err_wrong_sign = np.linalg.norm((pr - wrong)[m]) / np.linalg.norm(expected[m])
    assert err < 0.015, err  # trilinear on a 2× spline-upsampled volume (3.8 % without oversampling)
    assert err_wrong_sign > 10 * err  # the test can tell the direction of rotation apart


@pytest.mark.parametrize("random_rot", [False, True])
def test_centred_gaussian_atom_projects_to_analytic_2d_gaussian(random_rot):
    n, sigma, weight = 33, 2.0, 6.0
    vol = gaussian_density(np.zeros((1, 3)), [weight], 1.0, sigma, n)
    rot = random_rotations(1, np.random.default_rng(5)) if random_rot else np.eye(3)[None]
    img = project(vol, rot)[0]
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    analytic = weight / (2 * np.pi * sigma ** 2) * np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    tol = 0.03 if random_rot else 1e-4
    assert np.abs(img - analytic).max() < tol * analytic.max()
    assert abs(img.sum() - weight) < tol * weight


def test_atom_from_pdb_projects_to_analytic_gaussian(tmp_path):
    pdb = write_pdb(tmp_path / "c.pdb", [("C", 1.0, 2.0, 3.0)])
    d = density_from_atoms(pdb, pixel_size=1.0, box=31, sigma=1.5)
    img = project(d.data, np.eye(3)[None])[0]
    yy, xx = np.mgrid[0:31, 0:31] - 15
    analytic = 6 / (2 * np.pi * 1.5 ** 2) * np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.5 ** 2))
    assert np.abs(img - analytic).max() < 1e-4 * analytic.max()


def test_euler_round_trip_and_relion_matrix():
    rng = np.random.default_rng(0)
    rots = random_rotations(200, rng)
    assert np.allclose(rots @ np.swapaxes(rots, 1, 2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rots), 1)
    eul = matrix_to_euler(rots)
    assert np.allclose(euler_to_matrix(eul[:, 0], eul[:, 1], eul[:, 2]), rots, atol=1e-10)
    assert (eul[:, 1] >= 0).all() and (eul[:, 1] <= np.pi).all()
    # RELION: tilt 90° about y maps the z axis onto -x in the rotated frame
    a = euler_to_matrix(0, np.pi / 2, 0)
    assert np.allclose(a @ [0, 0, 1], [-1, 0, 0])
    # uniform on SO(3): E[R] = 0
    assert np.abs(random_rotations(4000, rng).mean(0)).max() < 0.05


# ---------------------------------------------------------------- reproducibility

def test_same_seed_identical_output(small_phantom):
    kw = dict(box=32, snr=0.5, ctf=CTFParams(defocus_min=8000, defocus_max=12000), dose=50, paired=True)
    a = simulate_particles(small_phantom, 6, seed=4, **kw)
    b = simulate_particles(small_phantom, 6, seed=4, **kw)
    c = simulate_particles(small_phantom, 6, seed=5, **kw)
    for k in ("clean", "noisy", "noisy2", "projection"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.allclose(a.noisy, c.noisy)
    assert not np.allclose(a.metadata["euler"], c.metadata["euler"])
    # particle i depends only on (seed, i): a shorter run is a prefix of the longer one
    d = simulate_particles(small_phantom, 3, seed=4, **kw)
    assert np.array_equal(d.noisy, a.noisy[:3])


# ---------------------------------------------------------------- CTF and dose

def test_ctf_matches_formula():
    lam = electron_wavelength(300)
    assert abs(lam - 0.019687) < 1e-5
    ctf = ctf_2d((64, 64), 1.5, 15000, 15000, 0.0, 300, 2.7, 0.07)
    assert abs(ctf[0, 0] - 0.07) < 1e-12
    k = 5 / (64 * 1.5)
    chi = np.pi * lam * 15000 * k ** 2 - np.pi / 2 * 2.7e7 * lam ** 3 * k ** 4 + np.arcsin(0.07)
    assert abs(ctf[0, 5] - np.sin(chi)) < 1e-12
    # astigmatism: along the angle the defocus is U, perpendicular V
    a = ctf_2d((64, 64), 1.5, 20000, 10000, 0.0)
    assert np.isclose(a[0, 5], ctf_2d((64, 64), 1.5, 20000)[0, 5])
    assert np.isclose(a[5, 0], ctf_2d((64, 64), 1.5, 10000)[5, 0])
    with pytest.raises(ParameterError):
        CTFParams(defocus_min=-1)


def test_poisson_noise_unbiased_and_shrinks_with_dose(small_phantom):
    lo = simulate_particles(small_phantom, 10, snr=None, dose=5, seed=1)
    hi = simulate_particles(small_phantom, 10, snr=None, dose=5000, seed=1)
    e_lo, e_hi = (lo.noisy - lo.clean).var(), (hi.noisy - hi.clean).var()
    assert 800 < e_lo / e_hi < 1250  # variance ∝ 1/dose
    assert abs((lo.noisy - lo.clean).mean()) < 3 * np.sqrt(e_lo / lo.noisy.size)


# ---------------------------------------------------------------- densities

def test_pdb_and_mmcif_parse_the_same_atoms(tmp_path):
    pdb = write_pdb(tmp_path / "tiny.pdb")
    cif = write_cif(tmp_path / "tiny.cif")
    for p in (pdb, cif):
        xyz, w, info = read_atoms(p)
        assert np.allclose(xyz, [a[1:] for a in ATOMS], atol=1e-3)
        assert list(w) == [Z[a[0]] for a in ATOMS]
    dp = load_density(pdb, pixel_size=1.0)
    dc = load_density(cif, pixel_size=1.0)
    assert np.allclose(dp.data, dc.data, atol=1e-6)
    assert abs(dp.data.sum() - sum(Z[a[0]] for a in ATOMS)) < 1e-3


def test_bad_atomic_model_and_missing_pixel_size(tmp_path):
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a structure\n")
    with pytest.raises(InputFileError):
        load_density(bad, pixel_size=1.0)
    with pytest.raises(ParameterError, match="pixel_size"):  # library names the parameter; the CLI shows --pixel-size
        load_density(write_pdb(tmp_path / "a.pdb"))
    with pytest.raises(InputFileError, match="unknown density format"):
        load_density(write_pdb(tmp_path / "a.txt"), pixel_size=1)


def test_map_without_voxel_size_requires_pixel_size(shared_data):
    path = shared_data / "aspire_clean70SRibosome_vol_65p.mrc"
    with pytest.raises(ParameterError, match="no voxel size"):
        load_density(path)
    d = load_density(path, pixel_size=5.0)
    assert d.size == 65 and d.pixel_size == 5.0


def test_map_with_voxel_size_resamples(tmp_path):
    from cryoxplain.io.mrc import write_mrc
    dens = phantom(size=32, pixel_size=2.0, seed=1)
    write_mrc(tmp_path / "m.mrc", dens.data, 2.0, kind="volume")
    same = load_density(tmp_path / "m.mrc")
    assert same.pixel_size == 2.0 and np.array_equal(same.data, dens.data)
    half = load_density(tmp_path / "m.mrc", pixel_size=4.0)
    assert half.size == 16 and half.pixel_size == 4.0
    assert abs(half.data.sum() / dens.data.sum() - 1) < 0.02


def test_parameter_errors(small_phantom):
    with pytest.raises(ParameterError):
        simulate_particles(small_phantom, 0)
    with pytest.raises(ParameterError):
        simulate_particles(small_phantom, 2, snr=-1)
    with pytest.raises(ParameterError):
        simulate_particles(small_phantom, 2, dose=0)
    with pytest.raises(ParameterError):
        Density(np.zeros((4, 4, 5)), 1.0)


def test_orientations_are_haar_uniform():
    from scipy import stats

    eul = matrix_to_euler(random_rotations(3000, np.random.default_rng(42)))
    # Haar measure in ZYZ Euler angles: rot and psi uniform, cos(tilt) uniform on [-1, 1]
    assert stats.kstest(np.cos(eul[:, 1]), "uniform", args=(-1, 2)).pvalue > 0.01
    assert stats.kstest(eul[:, 0], "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 0.01
    assert stats.kstest(eul[:, 2], "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 0.01
    # and a non-uniform sampler (uniform tilt) is rejected
    assert stats.kstest(np.cos(np.random.default_rng(0).uniform(0, np.pi, 3000)), "uniform", args=(-1, 2)).pvalue < 1e-6
