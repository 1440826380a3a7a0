"""Ablation Path plugin: path axioms, Algorithm 1 optimality, Theorem 5, optimisation, baselines,
heatmap orientation, stopping rule, extras and the viewer page."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from ablation_toy import DISC_CENTRE, DISC_RADIUS, SIZE, train_toy
from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.explain.base import Target
from cryoxplain.explain.registry import create_explainer, get_explainer
from cryoxplain.imaging.filters import gaussian_blur
from cryoxplain.imaging.normalize import looks_normalized, normalize_images
from cryoxplain_plugins.ablation_path import AblationPath
from cryoxplain_plugins.ablation_path import baselines as bl
from cryoxplain_plugins.ablation_path import heatmaps as hmod
from cryoxplain_plugins.ablation_path.optimize import (PathConfig, initial_path, optimise_paths,
                                                       path_values_and_grads)
from cryoxplain_plugins.ablation_path.projection import (check_path_axioms, linf_lower_bound, monotonise,
                                                         monotonise_fast, monotonise_linf, path_saturation,
                                                         pinch, repair, reparametrise, saturate, t_grid)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy():
    return train_toy()


def logit1():
    return Target.from_callable(lambda o: o[:, 1], "logit 1")


def prob1(model):
    return lambda X, idx=None: torch.softmax(model(X), 1)[:, 1]


def disc():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.hypot(yy - DISC_CENTRE[0], xx - DISC_CENTRE[1]) <= DISC_RADIUS


# ------------------------------------------------------------------------------ Algorithm 1

def _lp_linf(p: np.ndarray) -> float:
    """min_q max|q − p| s.t. q non-decreasing, by linear programming (variables q, s)."""
    n = p.size
    c = np.r_[np.zeros(n), 1.0]
    rows, rhs = [], []
    for i in range(n - 1):                       # q_i − q_{i+1} ≤ 0
        r = np.zeros(n + 1); r[i], r[i + 1] = 1, -1; rows.append(r); rhs.append(0.0)
    for i in range(n):                           # ±(q_i − p_i) − s ≤ 0
        r = np.zeros(n + 1); r[i], r[-1] = 1, -1; rows.append(r); rhs.append(p[i])
        r = np.zeros(n + 1); r[i], r[-1] = -1, -1; rows.append(r); rhs.append(-p[i])
    res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=[(None, None)] * n + [(0, None)],
                  method="highs")
    assert res.status == 0
    return res.fun


def test_monotonise_examples_from_spec():
    np.testing.assert_allclose(monotonise_linf([0, .5, .1, .2, .25, .4, 1]), [0, .3, .3, .3, .3, .4, 1])
    np.testing.assert_allclose(monotonise_linf([0, 1, .5, .2, .6, 1]), [0, .6, .6, .6, .6, 1])
    # the vectorised variant is also optimal but less local (spec §7.3)
    fast = monotonise_fast(torch.tensor([0, 1, .5, .2, .6, 1.0]).view(6, 1, 1)).flatten().numpy()
    np.testing.assert_allclose(fast, [0, .6, .6, .6, .8, 1])


def test_monotonise_is_linf_optimal_against_lp():
    rng = np.random.default_rng(1)
    for k in range(150):
        n = int(rng.integers(2, 16))
        if k % 3 == 0:
            p = rng.random(n)
        elif k % 3 == 1:
            p = np.sort(rng.random(n)) + 0.3 * rng.standard_normal(n)
        else:
            p = np.round(rng.random(n) * 4) / 4          # ties
        q = monotonise_linf(p)
        assert np.all(np.diff(q) >= -1e-12), (p, q)
        opt = _lp_linf(p)
        assert abs(np.abs(q - p).max() - opt) < 1e-7, (p, q, opt)
        assert abs(linf_lower_bound(p) - opt) < 1e-7
        qf = monotonise_fast(torch.from_numpy(p).view(n, 1, 1)).flatten().numpy()
        assert np.all(np.diff(qf) >= -1e-12) and abs(np.abs(qf - p).max() - opt) < 1e-7


def test_monotonise_many_random_and_local():
    rng = np.random.default_rng(2)
    a = rng.random((14, 3000))
    a[:, :1000] = np.sort(a[:, :1000], axis=0) + 0.05 * rng.standard_normal((14, 1000))
    phi = torch.from_numpy(a).view(14, 50, 60)
    out = monotonise(phi).view(14, -1).numpy()
    assert np.all(np.diff(out, axis=0) >= -1e-12)
    err = np.abs(out - a).max(0)
    lb = np.array([linf_lower_bound(a[:, j]) for j in range(a.shape[1])])
    np.testing.assert_allclose(err, lb, atol=1e-12)
    # already monotone: unchanged; a single local dip changes only its neighbourhood
    p = np.linspace(0, 1, 14)
    np.testing.assert_array_equal(monotonise_linf(p), p)
    p2 = p.copy(); p2[7] = p2[6] - 0.01
    q2 = monotonise_linf(p2)
    assert np.array_equal(q2[:6], p[:6]) and np.array_equal(q2[8:], p[8:])


# ------------------------------------------------------------------------------ other projections

def _random_monotone(rng, b, n, h, w):
    a = np.sort(rng.random((b, n, h, w)), axis=1)
    return torch.from_numpy(a)


def test_reparametrise_exact_mass_and_idempotent():
    rng = np.random.default_rng(3)
    phi = _random_monotone(rng, 3, 9, 7, 5)
    phi[0, :4] = 0.0                                   # flat stretches and saturated masks
    phi[1, 5:] = 1.0
    out = reparametrise(phi)
    chk = check_path_axioms(out, atol=1e-12)
    assert chk["ok"], chk
    np.testing.assert_allclose(reparametrise(out), out, atol=1e-12)      # idempotent on valid paths
    np.testing.assert_allclose(repair(out), out, atol=1e-12)
    start = initial_path(2, PathConfig(n_t=9), 4, 4)
    np.testing.assert_allclose(repair(start), start, atol=1e-15)


def test_saturation_and_pinch_fixpoints():
    x = torch.tensor([0.0, 0.5, 1.0, 0.3, 0.8], dtype=torch.float64)
    y = saturate(x, 0.8)
    np.testing.assert_allclose(y[:3], [0, 0.5, 1], atol=1e-12)
    assert y[3] < 0.3 and y[4] > 0.8                    # ½ repels, 0/1 attract
    np.testing.assert_allclose(saturate(x, 1e-7), x, atol=1e-6)
    assert saturate(x, 0.0) is x
    up = torch.zeros(4, dtype=torch.float64)
    down = torch.tensor([0.0, 1.0, 0.2, -0.3], dtype=torch.float64)
    new = pinch(up, down, 0.1)
    np.testing.assert_allclose(new[:2], [0, 1])
    assert 0 < new[2] < 0.2 and abs(new[3]) < 0.3


# ------------------------------------------------------------------------------ Theorem 5

def test_theorem5_first_gradient_is_integrated_gradients(toy):
    """∫ ∇P↑(φ_aff) dt = (x_BL − x_Tg) ⊙ AverageGrads = −(Captum IG), same quadrature points."""
    from captum.attr import IntegratedGradients

    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    xb = torch.from_numpy(gaussian_blur(x1[0], 6.0)[None].repeat(2, 0)).unsqueeze(1)
    N = 12
    alphas = np.arange(1, N + 1) / N                   # captum riemann_right: α_k = k/N
    ts = 1 - alphas                                    # our path runs target → baseline: t = 1 − α
    phi = torch.from_numpy(np.broadcast_to(ts.reshape(1, N, 1, 1), (2, N, SIZE, SIZE)).copy())
    _, g = path_values_and_grads(prob1(model), x, xb, phi)
    ours = g.mean(1).numpy()
    ig = IntegratedGradients(lambda z: torch.softmax(model(z), 1)[:, 1])
    ref = ig.attribute(x, baselines=xb, n_steps=N, method="riemann_right")[:, 0].numpy()
    scale = np.abs(ref).max()
    np.testing.assert_allclose(ours, -ref, atol=1e-5 * scale)


def test_theorem5_against_cryoxplain_integrated_gradients(toy):
    """Same statement against the project's own ``integrated_gradients`` plugin (zero baseline,
    raw logit target, right Riemann rule): the affine-start retaining gradient is −IG."""
    ig = create_explainer("integrated_gradients", steps=10, rule="riemann_right", baseline="zero")
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    tgt = logit1()
    ref = ig.attribute(model, x, tgt).maps
    N = 10
    ts = 1 - np.arange(1, N + 1) / N
    phi = torch.from_numpy(np.broadcast_to(ts.reshape(1, N, 1, 1), (2, N, SIZE, SIZE)).copy())
    _, g = path_values_and_grads(lambda X, idx: tgt(model(X)), x, torch.zeros_like(x), phi)
    ours = g.mean(1).numpy()
    np.testing.assert_allclose(ours, -ref, atol=1e-5 * np.abs(ref).max())


# ------------------------------------------------------------------------------ optimisation

@pytest.mark.parametrize("objective,regularise,mono", [("retain", "state", "exact"), ("dissipate", "state", "exact"),
                                                       ("contrastive", "state", "exact"),
                                                       ("straddle", "state", "exact"),
                                                       ("retain", "update", "fast")])
def test_every_iterate_is_an_ablation_path(toy, objective, regularise, mono):
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    xb = torch.zeros_like(x)
    cfg = PathConfig(objective=objective, n_t=8, mask_size=16, blur_sigma=3.0, max_iters=8, min_iters=8,
                     regularise=regularise, monotonise=mono)
    seen = []

    def cb(it, p, pd, val):
        for q in (p,) if pd is None else (p, pd):
            chk = check_path_axioms(q, atol=1e-6)
            assert chk["ok"], (it, chk)
        seen.append(it)

    res = optimise_paths(prob1(model), x, xb, cfg, callback=cb)
    assert seen == list(range(1, 9))
    assert check_path_axioms(res.phi)["ok"]
    assert res.phi.shape == (2, 8, 16, 16)
    assert (res.phi_down is not None) == (objective == "straddle")


@pytest.mark.parametrize("objective", ["retain", "contrastive"])
def test_optimised_objective_beats_straight_path(toy, objective):
    model, x1, _ = toy
    ex = AblationPath(objective=objective, mask_size=16, blur_sigma=3.0, max_iters=25, saturation=0.0)
    a = ex.attribute(model, torch.from_numpy(x1[:3]).unsqueeze(1), logit1())
    e = a.extras
    assert np.all(e["objective_final"] >= e["objective_initial"] - 1e-9)
    assert np.all(e["objective_final"] > e["objective_initial"] + 0.01)
    assert bool(np.all(e["score_is_probability"]))


def test_stopping_rule_saturation_and_cap(toy):
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    xb = torch.zeros_like(x)
    cfg = PathConfig(objective="retain", n_t=8, mask_size=16, blur_sigma=2.0, saturation=3.0,
                     min_iters=6, max_iters=60)
    res = optimise_paths(prob1(model), x, xb, cfg)
    assert res.converged.all() and np.all(res.saturation > 0.8)
    assert np.all(res.iterations >= 6) and np.all(res.iterations < 60)
    # the trace ends at the iteration that stopped, and the stored saturation is the path's
    sat = path_saturation(torch.from_numpy(res.phi)).numpy()
    np.testing.assert_allclose(sat, res.saturation)
    for b in range(2):
        assert np.isfinite(res.objective_trace[b, :res.iterations[b] + 1]).all()
        assert np.isnan(res.objective_trace[b, res.iterations[b] + 1:]).all()
    cap = optimise_paths(prob1(model), x, xb, PathConfig(n_t=8, mask_size=16, saturation=0.0,
                                                         target_saturation=1.0, max_iters=4, min_iters=0))
    assert not cap.converged.any() and np.all(cap.iterations == 4)


def test_heatmaps_point_at_the_evidence(toy):
    """Sign/orientation: the retaining path keeps the known evidence disc longest and every
    salient-up reduction peaks inside it."""
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    d = disc()
    ex = AblationPath(objective="retain", mask_size=16, blur_sigma=3.0, max_iters=40, window="off")
    a = ex.attribute(model, x, logit1())
    path = a.extras["path"]                              # (B, T, 16, 16), mask grid
    up = torch.nn.functional.interpolate(torch.from_numpy(path[:, 1:-1]).float(), size=(SIZE, SIZE),
                                         mode="bilinear", align_corners=False).numpy()
    for b in range(2):
        assert up[b][:, d].mean() < up[b][:, ~d].mean()   # disc ablated later
        for red in ("clt", "avg", "iwa"):
            th = hmod.reduce_path(red, a.extras["path"][b, 1:-1], a.extras["score_curve"][b],
                                  int(np.argmin(np.abs(a.extras["t"][b] - a.extras["t_transition"][b]))))
            th = torch.nn.functional.interpolate(torch.from_numpy(th)[None, None].float(), size=(SIZE, SIZE),
                                                 mode="bilinear", align_corners=False)[0, 0].numpy()
            if red != "avg":     # Θ_avg is known to be polluted far from the boundary (thesis §2.7.2)
                assert d[np.unravel_index(np.argmax(th), th.shape)], red
            assert th[d].mean() > th[~d].mean(), red
        assert d[np.unravel_index(np.argmax(a.maps[b]), a.maps[b].shape)]
    st = AblationPath(objective="straddle", mask_size=16, blur_sigma=3.0, max_iters=40)
    s = st.attribute(model, x, logit1())
    for b in range(2):
        assert s.maps[b][d].mean() > s.maps[b][~d].mean()   # Θ_cav with the sign fixed
    from cryoxplain_plugins.ablation_path.viewer import build_payload
    pl = build_payload(s, x)
    assert pl["comp_label"].startswith("φ↓") and len(pl["images"][0]["comp"]["x"]) == s.extras["path_down"].shape[1]


def test_pixel_ablation_orientation():
    """Θ_avg is a left inverse of the (correctly oriented) pixel-insertion path (spec §4.2)."""
    rng = np.random.default_rng(4)
    theta = rng.random((6, 6))
    n = 400
    ts = t_grid(n)
    # retaining path: the LEAST salient pixels are ablated (set to 1) first
    path = np.stack([(theta < t).astype(float) for t in ts])
    np.testing.assert_allclose(hmod.reduce_path("avg", path), theta, atol=0.02)


# ------------------------------------------------------------------------------ baselines

def test_blur_baseline_is_minimal_flip(toy):
    model, x1, _ = toy
    x = torch.from_numpy(x1[:1]).unsqueeze(1)
    ex = AblationPath()
    _, _, predict = ex.make_score(model, logit1(), x)
    img, sigma, flipped = bl.minimal_flip_blur(x1[0], predict)
    assert flipped and 4.0 <= sigma <= 100.0
    assert predict(img[None])[0] != predict(x1[:1])[0]
    assert predict(gaussian_blur(x1[0], sigma / 1.02)[None])[0] == predict(x1[:1])[0]


def test_cryoem_baselines(toy, tmp_path):
    # baselines of explain.baselines (one meaning per name): mean = flat at the image's own mean,
    # mean_image = the mean image of a stack file (formerly ablation_path's "mean"), noise seeded
    # per image; background = outside the inscribed disc about the box centre N // 2
    from cryoxplain.explain.baselines import noise_baseline
    from cryoxplain.explain.base import image_seed

    model, x1, _ = toy
    img = torch.from_numpy(x1[:1]).unsqueeze(1)
    gens = [torch.Generator().manual_seed(image_seed(0, 0))]
    nb = noise_baseline(img, gens)[0, 0].numpy()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    bg = x1[0][np.hypot(yy - SIZE // 2, xx - SIZE // 2) > SIZE / 2]
    assert abs(nb.std() - bg.std()) < 0.1 and abs(nb.mean() - bg.mean()) < 0.1
    out, _, _ = bl.make_baselines("mean", x1[:4])
    np.testing.assert_allclose(out[1], np.full((SIZE, SIZE), x1[1].mean()), atol=1e-6)
    with pytest.raises(ParameterError):
        bl.make_baselines("mean_image", x1[:1])      # needs a file
    from cryoxplain.io.mrc import write_mrc
    f = tmp_path / "stack.mrcs"
    write_mrc(f, x1[:5], voxel_size=1.0)
    out, _, _ = bl.make_baselines("mean_image", x1[:2], path=str(f))
    np.testing.assert_allclose(out[1], x1[:5].mean(0), atol=1e-5)
    xn = normalize_images(x1[:2])
    assert looks_normalized(xn) and not looks_normalized(x1[:2] + 1)
    out, _, _ = bl.make_baselines("mean_image", xn, path=str(f), normalize_file=True)
    np.testing.assert_allclose(out[0], normalize_images(x1[:5]).mean(0), atol=1e-5)
    bad = tmp_path / "bad.mrcs"
    write_mrc(bad, np.zeros((2, 8, 8), np.float32), voxel_size=1.0)
    with pytest.raises(ShapeError):
        bl.make_baselines("file", x1[:2], path=str(bad))


# ------------------------------------------------------------------------------ plugin protocol

def test_registered_and_parameters():
    assert get_explainer("ablation_path") is AblationPath
    ex = create_explainer("ablation_path", objective="straddle", n_t="10")
    assert ex.n_t == 10 and ex.objective == "straddle"
    with pytest.raises(ParameterError):
        create_explainer("ablation_path", objective="nonsense")
    with pytest.raises(ParameterError):
        create_explainer("ablation_path", reducer="cav")          # cav needs straddle
    with pytest.raises(ParameterError):
        create_explainer("ablation_path", baseline="file")        # needs a path


def test_denoiser_target_and_extras(toy, tmp_path):
    """Image-to-image model with an ROI-energy target (raw score), batched; extras and HDF5."""
    import h5py

    torch.manual_seed(0)
    den = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.Conv2d(4, 1, 3, padding=1)).eval()
    roi = torch.from_numpy(disc()).float()
    tgt = Target.from_callable(lambda o: (o[:, 0] ** 2 * roi).sum((1, 2)), "roi energy")
    _, x1, _ = toy
    x = torch.from_numpy(x1[:3]).unsqueeze(1)
    ex = AblationPath(objective="retain", mask_size=16, blur_sigma=3.0, max_iters=5, baseline="noise", seed=3)
    a = ex.attribute(den, x, tgt)
    e = a.extras
    assert a.maps.shape == (3, SIZE, SIZE) and np.isfinite(a.maps).all()
    assert e["path"].shape == (3, 16, 16, 16) and e["t"].shape == (3, 16) and e["score_curve"].shape == (3, 16)
    assert check_path_axioms(e["path"][:, 1:-1])["ok"]
    assert np.all(e["path"][:, 0] == 0) and np.all(e["path"][:, -1] == 1)
    assert not e["score_is_probability"].any()
    with torch.no_grad():
        np.testing.assert_allclose(e["score_curve"][:, 0], tgt(den(x)).numpy(), rtol=1e-5)
    with h5py.File(tmp_path / "a.h5", "w") as h:
        a.to_hdf5(h.create_group("ablation"))
    with h5py.File(tmp_path / "a.h5") as h:
        assert h["ablation/extras/path"].shape == (3, 16, 16, 16)
    with pytest.raises(ShapeError):  # (B, H, W) is a valid stack since the template: use 2 channels
        ex.attribute(den, x.expand(-1, 2, -1, -1), tgt)
    ex.write_html(a, x, tmp_path / "den.html")          # raw scores, NaN baseline σ → null
    assert '"baseline_sigma":null' in (tmp_path / "den.html").read_text()


# ------------------------------------------------------------------------------ viewer

@pytest.fixture(scope="module")
def viewer_page(toy, tmp_path_factory):
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1)
    ex = AblationPath(objective="contrastive", mask_size=16, blur_sigma=3.0, max_iters=30)
    a = ex.attribute(model, x, logit1())
    out = tmp_path_factory.mktemp("viewer") / "path.html"
    ex.write_html(a, x, out)
    return out, a


def test_viewer_is_self_contained(viewer_page):
    out, a = viewer_page
    text = out.read_text()
    assert text.count("<html") == 1
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)     # nothing loaded from outside
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    payload = json.loads(re.search(r'<script id="payload" type="application/json">(.*?)</script>', text, re.S)
                         .group(1).replace("<\\/", "</"))
    assert len(payload["images"]) == 2
    im = payload["images"][0]
    assert len(im["main"]["x"]) == len(im["t"]) == len(im["curve"]) == 16
    assert all(u.startswith("data:image/png;base64,") for u in im["main"]["x"] + im["comp"]["mask"])
    np.testing.assert_allclose(im["curve"], a.extras["score_curve"][0])


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.mark.browser
def test_viewer_in_headless_chromium(viewer_page, tmp_path):
    import shutil

    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if shutil.os.path.exists("/usr/bin/chromium") else None)
    if chromium is None:
        pytest.skip("Debian chromium not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    out, a = viewer_page
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 760})
            requests, errors = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(out.as_uri())
            src0 = page.get_attribute("#img-xt", "src")
            mask0 = page.get_attribute("#img-mask", "src")
            cx0 = float(page.get_attribute("#marker", "cx"))
            assert page.input_value("#t-slider") == "0"
            page.focus("#t-slider")
            for _ in range(6):
                page.keyboard.press("ArrowRight")
            assert page.input_value("#t-slider") == "6"
            src1 = page.get_attribute("#img-xt", "src")
            cx1 = float(page.get_attribute("#marker", "cx"))
            cy1 = float(page.get_attribute("#marker", "cy"))
            assert src1 != src0 and page.get_attribute("#img-mask", "src") != mask0
            assert cx1 > cx0
            # the marker sits on the score curve at the current t
            t6, f6 = a.extras["t"][0, 6], a.extras["score_curve"][0, 6]
            assert "t = %.3f" % t6 in page.text_content("#readout")
            pts = [tuple(map(float, q.split(","))) for q in page.get_attribute("#curve-main", "points").split()]
            assert abs(pts[6][0] - cx1) < 1e-6 and abs(pts[6][1] - cy1) < 1e-6
            # image switching and the complement switch
            page.check("#comp-toggle")
            assert page.get_attribute("#img-xt", "src") != src1
            page.select_option("#img-select", "1")
            assert page.get_attribute("#img-target", "src") != ""
            loaded = page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert loaded
            page.uncheck("#comp-toggle")
            page.select_option("#img-select", "0")
            page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
            assert (tmp_path / "viewer.png").stat().st_size > 10_000
            assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
            assert errors == []
        finally:
            browser.close()


def test_cli_explain_writes_viewer(tmp_path, toy):
    """`cryoxplain explain --method ablation_path --html` (explainer-core's CLI hook)."""
    from cryoxplain.cli.main import COMMANDS, main
    from cryoxplain.io.mrc import write_mrc
    from cryoxplain.models import registry

    assert "explain" in COMMANDS and "classifier" in registry.architectures()
    torch.manual_seed(0)
    cfg = {"n_classes": 2, "image_shape": [SIZE, SIZE]}
    model = registry.build_model("classifier", **cfg)
    registry.save_model(tmp_path / "cls.safetensors", model, "classifier", cfg)
    _, x1, _ = toy
    write_mrc(tmp_path / "p.mrcs", x1[:2], voxel_size=2.0)
    args = ["explain", str(tmp_path / "p.mrcs"), "-m", str(tmp_path / "cls.safetensors"), "--method", "ablation_path",
            "-p", "mask_size=8", "-p", "max_iters=2", "-p", "baseline=zero", "-o", str(tmp_path / "a.h5"),
            "--html", str(tmp_path / "v.html"), "-d", "cpu"]
    def run(argv):
        with pytest.raises(SystemExit) as e:
            main(argv)
        return e.value.code

    assert run(args) in (0, None)
    text = (tmp_path / "v.html").read_text()
    assert 'id="t-slider"' in text and text.count("data:image/png;base64,") >= 2 * 3 * 10
    assert run(args[:-6] + ["-p", "objective=nope", "-o", str(tmp_path / "b.h5"), "-d", "cpu"]) == 2
    assert not (tmp_path / "b.h5").exists()


@pytest.mark.slow
def test_straddle_localises_the_arms_of_the_two_complex_classifier(tmp_path):
    """On explainer-core's two-complex particle classifier (complex B = A + two arms), the
    boundary-straddling reduction Θ_cav is highest on the distinguishing arms.  Also documents
    the trust flag: no blur σ flips this classifier's answer, so no class transition exists."""
    import classify_helpers as ch
    from cryoxplain.classify.train import train_classifier
    from cryoxplain.explain.targets import ClassLogit
    from cryoxplain.imaging.normalize import normalize_images
    from cryoxplain.io.mrc import write_mrc
    from cryoxplain.models.registry import load_model

    a, b = ch.labelled_particles(64, 32, snr=1.0, seed=0)
    write_mrc(tmp_path / "complexA.mrcs", a)
    write_mrc(tmp_path / "complexB.mrcs", b)
    train_classifier([tmp_path / "complexA.mrcs", tmp_path / "complexB.mrcs"], epochs=25, batch_size=8, lr=3e-3,
                     device="cpu", seed=0, out=tmp_path / "cls.safetensors", config={"width": 8})
    model, _ = load_model(tmp_path / "cls.safetensors")
    n, seed = 16, 11
    clean = ch.project(ch.DOMAINS_B, n, 32, seed=seed)
    arms = ch.project(ch.DOMAINS_B[5:], n, 32, seed=seed)
    core = ch.project(ch.DOMAINS_B[:5], n, 32, seed=seed)
    noisy = clean + np.random.default_rng(3).normal(scale=clean.std(), size=clean.shape)
    x = normalize_images(torch.from_numpy(noisy.astype(np.float32))[:, None])
    att = AblationPath(objective="straddle", blur_sigma=2.0).attribute(model, x, ClassLogit(1))
    m = att.maps
    on_arms, on_core, bg = m[(arms > 0.3) & (core < 0.1)].mean(), m[core > 0.3].mean(), m[clean < 0.05].mean()
    print(f"straddle Θ_cav: arms {on_arms:.3f} core {on_core:.3f} background {bg:.3f}; "
          f"transition {att.extras['has_transition'].mean():.2f}, converged {att.extras['converged'].mean():.2f}")
    assert on_arms > 0.05 and on_arms > max(on_core, bg) + 0.05


def test_saturation_default_is_zero_for_contrastive():
    """Issue 14: the thesis' best contrastive setting used no saturation (Table 2.5: 0.8 lowers
    contrastive scores); the other objectives keep 0.8; an explicit value is used as given."""
    assert create_explainer("ablation_path").path_config().saturation == 0.0  # default objective: contrastive
    assert create_explainer("ablation_path", objective="retain").path_config().saturation == 0.8
    assert create_explainer("ablation_path", saturation=0.5).path_config().saturation == 0.5


def test_weighted_mass_reparametrisation_and_uniform_limit():
    """Mass weights ω (the SIFT plugin's metric=l2): repair gives ω-mass t_j exactly and is
    idempotent; uniform weights reproduce the unweighted rule."""
    from cryoxplain_plugins.ablation_path.projection import path_saturation

    rng = np.random.default_rng(5)
    phi = _random_monotone(rng, 3, 9, 6, 1)
    w = torch.as_tensor(rng.uniform(0.1, 2.0, size=(3, 6, 1)))
    w = w / w.sum(dim=(1, 2), keepdim=True)
    out = repair(phi, weights=w)
    chk = check_path_axioms(out, atol=1e-12, weights=w)
    assert chk["ok"], chk
    assert not check_path_axioms(out, atol=1e-6)["ok"]                 # not the plain mean
    np.testing.assert_allclose(repair(out, weights=w), out, atol=1e-12)
    u = torch.full((3, 6, 1), 1 / 6, dtype=torch.float64)
    np.testing.assert_allclose(repair(phi, weights=u), repair(phi), atol=1e-12)
    np.testing.assert_allclose(path_saturation(out, u), path_saturation(out), atol=1e-12)


def test_weighted_optimiser_uniform_weights_equal_the_mean_rule(toy):
    """optimise_paths with ω = 1/(hm·wm) follows the same iterates as the unweighted optimiser."""
    model, x1, _ = toy
    x = torch.from_numpy(x1[:2]).unsqueeze(1).double()
    score = lambda X, idx: torch.softmax(model(X.float()), 1)[:, 1].double()
    cfg = PathConfig(objective="straddle", mask_size=8, blur_sigma=0.0, max_iters=5)
    base = torch.zeros_like(x)
    a = optimise_paths(score, x, base, cfg)
    hm, wm = a.phi.shape[-2:]
    u = torch.full((x.shape[0], hm, wm), 1.0 / (hm * wm), dtype=torch.float64)
    b = optimise_paths(score, x, base, cfg, weights=u)
    np.testing.assert_allclose(b.phi, a.phi, atol=1e-9)
    np.testing.assert_allclose(b.saturation, a.saturation, atol=1e-9)
    assert np.array_equal(a.iterations, b.iterations)
