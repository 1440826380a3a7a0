"""sift_ablation §7–§9 / §11.4–§11.6: feature paths, feature IG, the planted toy and the plugin contract."""
import numpy as np
import pytest
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.targets import ClassLogit, DiscEnergy, PixelOutput
from cryoxplain_plugins.ablation_path.optimize import PathConfig, _objective_and_grad, initial_path
from cryoxplain_plugins.ablation_path.projection import check_path_axioms, t_grid
from cryoxplain_plugins.sift_ablation import SiftAblation
from cryoxplain_plugins.sift_ablation.decomposition import BasisConfig, build_decoder, pad_decoders
from cryoxplain_plugins.sift_ablation.pathspace import FeatureScore, optimise_feature_paths, sat_max

from sift_helpers import particle
from sift_toys import A, LogDetector, injected_keypoints, scale_toy_image


@pytest.fixture(scope="module")
def toy():
    x = scale_toy_image()
    return LogDetector(x).eval(), torch.as_tensor(x, dtype=torch.float32)[None, None]


class Injected(SiftAblation):
    """The explainer with the toy's keypoints injected (independent of the detector)."""

    def decoders(self, inputs):
        return [build_decoder(inputs[b, 0], self.basis_config(), keypoints=injected_keypoints())
                for b in range(inputs.shape[0])]


def prob(model):
    return lambda X, idx: torch.softmax(model(X), 1)[:, 1]


def test_sat_max_table():
    assert [round(sat_max(k, 14), 3) for k in (1, 2, 3, 4, 5, 8, 10)] == [0.467, 0.733, 0.829, 0.867, 0.905, 0.933, 0.952]


def test_planted_toy_occlusion_with_injected_keypoints(toy):
    model, X = toy
    a = Injected(keep_below=0.0, intervention="occlusion").attribute(model, X, ClassLogit(1))
    d = a.extras["feature_occlusion"][0]
    assert a.extras["n_features"][0] == 3                  # (C, B, A) in σ order
    assert d[2] >= 0.9 and d[0] <= 0.05 and abs(d[1]) <= 0.01
    assert a.extras["feature_attribution"][0, 2] == pytest.approx(d[2])


@pytest.mark.parametrize("objective", ["contrastive", "straddle"])
def test_planted_toy_path_finds_the_blob(toy, objective):
    model, X = toy
    a = SiftAblation(keep_below=0.0, objective=objective).attribute(model, X, ClassLogit(1))
    ex = a.extras
    K = ex["n_features"][0]
    kp = ex["keypoints"][0, :K]
    top = int(np.nanargmax(ex["feature_attribution"][0, :K]))
    assert np.hypot(kp[top, 0] - A[0][0], kp[top, 1] - A[0][1]) <= 1.0 and kp[top, 2] < 3.0
    r, c = np.unravel_index(np.argmax(a.maps[0]), a.maps[0].shape)
    assert np.hypot(c - A[0][0], r - A[0][1]) <= 3.0
    assert a.maps.shape == (1, 64, 64) and a.maps.dtype == np.float32 and np.isfinite(a.maps).all()
    assert ex["reconstruction_error"][0] <= 1e-12 and ex["reconstruction_error_float32"][0] <= 1e-6
    # the path ends at the implicit baseline D(0) = c; F there is low
    assert ex["score_curve"][0, 0] == pytest.approx(ex["score_at_input"][0]) and ex["score_curve"][0, -1] < 0.1


@pytest.mark.parametrize("objective", ["retain", "dissipate", "contrastive", "straddle"])
def test_axioms_on_every_iterate_with_mixed_feature_counts(toy, objective):
    model, X = toy
    x2 = torch.as_tensor(particle(64), dtype=torch.float32)
    decs = [build_decoder(X[0, 0], BasisConfig(keep_below=0.0), keypoints=injected_keypoints()),
            build_decoder(x2, BasisConfig())]
    nf = np.array([d.n_features for d in decs])
    assert nf[0] != nf[1]
    Z, c, _ = pad_decoders(decs)
    seen = []

    def cb(K, it, p, pd, v):
        for q in (p, pd) if pd is not None else (p,):
            r = check_path_axioms(q, 1e-6)
            assert r["ok"], (K, it, r)
        seen.append(K)

    cfg = PathConfig(objective=objective, blur_sigma=0.0, max_iters=8)
    res, targets = optimise_feature_paths(prob(model), Z, c, nf, cfg, callback=cb)
    assert set(seen) == set(nf.tolist())
    # padded entries stay on the affine path t_j
    b = int(np.argmin(nf))
    assert np.allclose(res.phi[b, :, nf[b]:, 0], t_grid(14)[:, None])
    assert np.all(targets <= [sat_max(k, 14) - 0.02 for k in nf])


def _image_space_feature_ig(model, dec, nodes, weights):
    """Σ_k w_k ⟨Z̄_i, ∇F((1 − t_k) x + t_k c)⟩ by plain autograd on images (an independent oracle)."""
    x = dec.Z.sum(0) + dec.c
    out = torch.zeros(dec.n_features, dtype=torch.float64)
    for t, w in zip(nodes, weights):
        img = ((1 - t) * x + t * dec.c).float().requires_grad_(True)
        f = torch.softmax(model(img[None, None]), 1)[0, 1]
        (g,) = torch.autograd.grad(f, img)
        out += w * (dec.Z.float() * g).flatten(1).sum(1).double()
    return out.numpy()


def test_feature_ig_completeness_and_oracle(toy):
    model, X = toy
    a = Injected(keep_below=0.0, intervention="occlusion", feature_ig_rule="gauss_legendre").attribute(
        model, X, ClassLogit(1))
    ex = a.extras
    assert abs(ex["feature_ig_completeness_gap"][0]) <= 1e-5      # float32 model; float64 toy gives 1e-15
    from cryoxplain.explain.paths import quadrature

    dec = build_decoder(X[0, 0], BasisConfig(keep_below=0.0), keypoints=injected_keypoints())
    ref = _image_space_feature_ig(model, dec, *quadrature(32, "gauss_legendre"))
    assert np.allclose(ex["feature_ig"][0, :3], ref, atol=1e-5)


def test_first_path_gradient_is_feature_ig(toy):
    """feature_ig_rule=path is −Σ_j ∂S/∂Φ[j] of the retain objective at the affine start (Theorem-5 analogue)."""
    model, X = toy
    a = Injected(keep_below=0.0, intervention="occlusion").attribute(model, X, ClassLogit(1))
    dec = build_decoder(X[0, 0], BasisConfig(keep_below=0.0), keypoints=injected_keypoints())
    Z, c, _ = pad_decoders([dec])
    cfg = PathConfig(objective="retain", blur_sigma=0.0, mask_size=3)
    fs = FeatureScore(prob(model), Z, c, torch.tensor([0]))
    one, zero = torch.ones(1, 1, 3, 1, dtype=torch.float64), torch.zeros(1, 1, 3, 1, dtype=torch.float64)
    _, g, _ = _objective_and_grad(cfg, fs, one, zero, initial_path(1, cfg, 3, 1), None)
    assert np.allclose(a.extras["feature_ig"][0, :3], -g[0, :, :, 0].sum(0).numpy(), atol=1e-12)
    ref = _image_space_feature_ig(model, dec, t_grid(14), np.full(14, 1 / 14))
    assert np.allclose(a.extras["feature_ig"][0, :3], ref, atol=1e-5)


def test_one_feature_limit_is_the_straight_line(toy):
    model, _ = toy
    x = np.random.default_rng(0).standard_normal((64, 64)) * 0.3           # pure noise: K < 2
    X = torch.as_tensor(x, dtype=torch.float32)[None, None]
    a = SiftAblation(objective="contrastive").attribute(model, X, ClassLogit(1))
    ex = a.extras
    assert ex["too_few_keypoints"][0] and ex["n_features"][0] == 1
    assert np.allclose(ex["path"][0, :, 0], np.concatenate([[0], t_grid(14), [1]]), atol=1e-6)
    assert ex["converged"][0] and ex["iterations"][0] == 6
    assert ex["sat_max"][0] == pytest.approx(0.4667, abs=1e-4)
    c = torch.as_tensor(ex["baseline"][0])
    t = torch.as_tensor(np.concatenate([[0], t_grid(14), [1]]), dtype=torch.float32)
    imgs = ((1 - t)[:, None, None] * X[0, 0] + t[:, None, None] * c)[:, None]
    with torch.no_grad():
        ref = torch.softmax(model(imgs), 1)[:, 1].numpy()
    assert np.allclose(ex["score_curve"][0], ref, atol=1e-5)


def test_parameters_are_validated():
    with pytest.raises(ParameterError):
        SiftAblation(bogus=1)
    for bad in ({"reducer": "cav", "objective": "contrastive"}, {"heatmap": "contrast", "reducer": "iwa"},
                {"keep_above": 1.0}, {"sparsity": 0.6}, {"noise_std": "loud"}, {"heatmap": "contrast",
                                                                               "intervention": "occlusion"}):
        with pytest.raises(ParameterError):
            SiftAblation(**bad)


def test_registered_as_entry_point():
    from cryoxplain.explain.registry import get_explainer

    assert get_explainer("sift_ablation") is SiftAblation


@pytest.mark.parametrize("heatmap", ["magnitude", "voronoi", "contrast"])
def test_denoiser_targets_batches_and_hdf5(tmp_path, heatmap):
    import h5py

    from cryoxplain.explain.base import Attribution

    class Smooth(torch.nn.Module):
        input_shape = None

        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 3, 1, 1) * 1.5

    xs = torch.as_tensor(np.stack([particle(32), particle(32, snr=1.0), np.zeros((32, 32))]),
                         dtype=torch.float32)[:, None]
    e = SiftAblation(max_iters=3, heatmap=heatmap, objective="contrastive", max_keypoints=16)
    for target in (DiscEnergy(), PixelOutput(16, 14)):
        whole = e.attribute(Smooth(), xs, target)
        parts = [e.attribute(Smooth(), xs[i:i + 1], target) for i in range(3)]
        assert np.isfinite(whole.maps).all() and whole.maps.shape == (3, 32, 32)
        cat = Attribution.concatenate(parts)
        assert np.allclose(cat.maps, whole.maps, atol=1e-6)                     # independent of the batch split
        assert np.allclose(cat.extras["feature_attribution"], whole.extras["feature_attribution"], equal_nan=True,
                           atol=1e-6)
        assert whole.extras["keypoints"].shape == (3, 16, 6)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        g = f.create_group("x")
        parts[0].to_hdf5(g, 0)
        parts[1].to_hdf5(g, 1)
        fa = g["extras/feature_attribution"][:]
    assert fa.shape == (2, 16) and np.isnan(fa[:, -1]).all()


def test_keypoint_overlay_png(tmp_path, toy):
    model, X = toy
    e = SiftAblation(keep_below=0.0, intervention="occlusion")
    a = e.attribute(model, X, ClassLogit(1))
    p = e.render_png(a, X, tmp_path / "kp.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_viewer_page(tmp_path, toy):
    model, X = toy
    e = SiftAblation(keep_below=0.0, max_iters=4)
    a = e.attribute(model, X, ClassLogit(1))
    e.write_html(a, X, tmp_path / "v.html")
    text = (tmp_path / "v.html").read_text()
    assert "D(1 − φ(t))" in text and text.count("data:image/png;base64") >= 4 * a.extras["path"].shape[1]


@pytest.mark.parametrize("objective", ["retain", "dissipate", "contrastive", "straddle"])
def test_pixel_decoder_limit_matches_the_pixel_plugin(objective):
    """§11.4.2: one feature per pixel, Z̄_p = (x − x_BL)_p e_p, c = x_BL, reproduces the pixel
    ablation path (blur 0, mask at image size) on the same optimiser."""
    from cryoxplain_plugins.ablation_path.optimize import optimise_paths

    torch.manual_seed(0)
    n = 10
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * n * n, 2)).double().eval()
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((1, 1, n, n)))
    xb = torch.as_tensor(rng.standard_normal((1, 1, n, n))) * 0.1
    score = lambda X, idx: torch.softmax(model(X), 1)[:, 1]
    cfg = PathConfig(objective=objective, blur_sigma=0.0, mask_size=n, max_iters=12, min_iters=2)
    ref = optimise_paths(score, x, xb, cfg)
    Z = torch.diag_embed((x - xb).flatten()).reshape(1, n * n, n, n)
    res, _ = optimise_feature_paths(score, Z, xb[:, 0], np.array([n * n]), cfg)
    assert np.allclose(res.phi[0, :, :, 0], ref.phi[0].reshape(cfg.n_t, -1), atol=1e-12, rtol=0)
    assert np.allclose(res.objective_trace, ref.objective_trace, atol=1e-12, equal_nan=True)
    assert res.iterations[0] == ref.iterations[0]
    if objective == "straddle":
        assert np.allclose(res.phi_down[0, :, :, 0], ref.phi_down[0].reshape(cfg.n_t, -1), atol=1e-12, rtol=0)


def test_blur_baseline_link():
    """§11.4.5: keep_above = σ_b on a grid edge gives D(0) = Γ(x, σ_b), the pixel plugin's blur
    baseline (the project's scipy-compatible gaussian_blur) up to the kernel sampling/truncation."""
    from cryoxplain.imaging.filters import gaussian_blur

    for snr in (None, 0.25):
        x = particle(64, snr=snr)
        for sb in (4.5, 9.0):
            dec = build_decoder(x, BasisConfig(keep_below=0.0, keep_above=sb), keypoints=injected_keypoints())
            assert np.abs(dec.c.numpy() - gaussian_blur(x, sb)).max() <= 1e-4 * np.abs(x).max()


def test_l2_metric_weights_axioms_and_planted_toy(toy):
    """metric=l2 (ω_i ∝ ‖Z̄_i‖₂, spec §7.2): every iterate is an ablation path in the ω-mass, the
    weights are reported, and the planted blob is still the top feature."""
    from cryoxplain_plugins.sift_ablation.pathspace import mass_weights

    model, X = toy
    decs = [build_decoder(X[0, 0], BasisConfig(keep_below=0.0), keypoints=injected_keypoints())]
    nf = np.array([d.n_features for d in decs])
    Z, c, _ = pad_decoders(decs)
    w = mass_weights(Z, nf, "l2")
    energy = decs[0].energy.numpy()
    np.testing.assert_allclose(w[0], energy / energy.sum(), rtol=1e-6)
    assert not np.allclose(w[0], 1 / nf[0])

    def cb(K, it, p, pd, v):
        wt = torch.as_tensor(w[:, :K]).reshape(1, K, 1)
        for q in (p, pd):
            r = check_path_axioms(q, 1e-6, weights=wt)
            assert r["ok"], (K, it, r)

    optimise_feature_paths(prob(model), Z, c, nf, PathConfig(objective="straddle", blur_sigma=0.0, max_iters=6),
                           callback=cb, weights=w)
    a = Injected(keep_below=0.0, metric="l2").attribute(model, X, ClassLogit(1))
    e = a.extras
    K = int(e["n_features"][0])
    np.testing.assert_allclose(e["mass_weights"][0, :K], energy / energy.sum(), rtol=1e-5)
    assert int(np.nanargmax(e["feature_attribution"][0, :K])) == 2          # blob A, as with euclidean
