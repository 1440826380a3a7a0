"""Path integration helpers (cryoxplain.explain.paths): quadrature and batched path integrals."""
import numpy as np
import pytest
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.base import Target, explained_function
from cryoxplain.explain.paths import (RULES, StraightLinePath, canonical_rule, completeness_gap, integrate_path,
                                      quadrature)


@pytest.mark.parametrize("rule,exact_degree", [("riemann_left", 0), ("riemann_right", 0), ("riemann_middle", 1),
                                               ("riemann_trapezoid", 1), ("gauss_legendre", 7)])
def test_quadrature_exactness(rule, exact_degree):
    a, w = quadrature(4, rule)
    assert a.shape == w.shape == (4,)
    assert ((a >= 0) & (a <= 1)).all()
    assert np.isclose(w.sum(), 1.0)
    for d in range(exact_degree + 1):
        assert np.isclose((w * a ** d).sum(), 1.0 / (d + 1)), d
    # one degree more is not exact (the rule is no better than claimed)
    d = exact_degree + 1
    assert not np.isclose((w * a ** d).sum(), 1.0 / (d + 1))


def test_quadrature_converges_and_names():
    errs = [abs((lambda a, w: (w * np.exp(a)).sum())(*quadrature(n, "riemann_middle")) - (np.e - 1)) for n in (4, 8, 16)]
    assert errs[0] > errs[1] > errs[2] and errs[1] / errs[2] > 3.5  # second order
    assert canonical_rule("Gauss-Legendre") == "gauss_legendre"
    assert canonical_rule("trapezoid") == "riemann_trapezoid"
    assert set(RULES) == {canonical_rule(r) for r in RULES}
    with pytest.raises(ParameterError, match="unknown quadrature rule"):
        quadrature(4, "simpson")
    with pytest.raises(ParameterError, match="at least 2"):
        quadrature(1, "trapezoid")
    with pytest.raises(ParameterError):
        quadrature(0)


def _cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Softplus(),
        torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).double().eval()


class _PerImageClass(Target):
    """Logit of a class chosen per image (exercises Target.select)."""

    def __init__(self, classes):
        self.classes = classes

    def __call__(self, out):
        return out.gather(1, self.classes[:, None])[:, 0]

    def select(self, idx):
        return _PerImageClass(self.classes[idx])


def test_linear_function_is_integrated_exactly():
    w = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    f = lambda x, idx=None: (x * w).sum(dim=(1, 2, 3))
    x, b = torch.randn(3, 1, 5, 5, dtype=torch.float64), torch.randn(3, 1, 5, 5, dtype=torch.float64)
    for rule in RULES:
        r = integrate_path(f, StraightLinePath(x, b), 3, *quadrature(3, rule), dtype=torch.float64)
        assert torch.allclose(r.attribution, w * (x - b)), rule  # IG of a linear function: w ⊙ (x − b)


def test_quadratic_function_gauss_legendre_exact():
    # f(x) = Σ x²: IG attribution is exactly x² − b² (integrand linear in α); 1 GL node suffices
    f = lambda x, idx=None: (x ** 2).sum(dim=(1, 2, 3))
    x, b = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 4, 4, dtype=torch.float64)
    r = integrate_path(f, StraightLinePath(x, b), 2, *quadrature(1, "gauss_legendre"), dtype=torch.float64)
    assert torch.allclose(r.attribution, x ** 2 - b ** 2)


def _recording_classifier():
    """A small CNN, a per-image class target, three 8×8 float64 images and an explained function that
    records the number of path points in each pass (``seen``)."""
    model = _cnn()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    tgt = _PerImageClass(torch.tensor([0, 2, 1]))
    seen = []

    def f(pts, idx):
        seen.append(pts.shape[0])
        return explained_function(model, tgt)(pts, idx)

    return model, tgt, x, f, seen


def test_internal_batch_size_does_not_change_result_and_bounds_chunks():
    model, tgt, x, f, seen = _recording_classifier()

    path = StraightLinePath(x, torch.zeros_like(x))
    a, w = quadrature(7, "gauss_legendre")
    full = integrate_path(f, path, 3, a, w, dtype=torch.float64)
    assert seen == [21]
    seen.clear()
    part = integrate_path(f, path, 3, a, w, internal_batch_size=5, dtype=torch.float64)
    assert max(seen) == 5 and sum(seen) == 21  # chunks mix images; Target.select keeps their classes
    assert torch.allclose(full.attribution, part.attribution, atol=1e-12)
    assert torch.allclose(full.values, part.values)
    assert torch.allclose(part.step_contributions.sum(1), part.attribution.flatten(1).sum(1))
    # values are f at the nodes, per image with its own class
    out = model(a[2] * x)
    assert torch.allclose(full.values[:, 2], out.gather(1, tgt.classes[:, None])[:, 0])


def test_completeness_gap_decreases_with_steps():
    model = _cnn(1)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    tgt = Target.from_callable(lambda o: o[:, 1], "logit 1")
    f = explained_function(model, tgt)
    path = StraightLinePath(x, torch.zeros_like(x))
    fx_fb = (f(x) - f(torch.zeros_like(x))).abs()
    gaps = []
    for n in (2, 8, 32):
        r = integrate_path(f, path, 2, *quadrature(n, "riemann_middle"), dtype=torch.float64)
        gaps.append(completeness_gap(f, path, 2, r.attribution).abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-2 * fx_fb.max().item()


def test_autodiff_and_finite_difference_velocity_match_exact():
    model = _cnn(2)
    f = explained_function(model, Target.from_callable(lambda o: o[:, 0], "logit 0"))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    b = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    exact = StraightLinePath(x, b)
    plain = lambda alpha, idx: exact(alpha, idx)  # no .velocity attribute → autodiff
    a, w = quadrature(5, "gauss_legendre")
    ref = integrate_path(f, exact, 2, a, w, dtype=torch.float64).attribution
    auto = integrate_path(f, plain, 2, a, w, dtype=torch.float64).attribution
    central = integrate_path(f, plain, 2, a, w, velocity="central", eps=1e-4, dtype=torch.float64).attribution
    assert torch.allclose(ref, auto, atol=1e-12)
    assert torch.allclose(ref, central, atol=1e-8)


def test_nonlinear_path_blur_like():
    # a curved path: x(α) = α² x (velocity 2αx); the line integral still telescopes to f(x) − f(0)
    model = _cnn(3)
    f = explained_function(model, Target.from_callable(lambda o: o[:, 2], "logit 2"))
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    path = lambda alpha, idx: (alpha ** 2).view(-1, 1, 1, 1) * x[idx]
    r = integrate_path(f, path, 2, *quadrature(24, "gauss_legendre"), dtype=torch.float64)
    assert completeness_gap(f, path, 2, r.attribution).abs().max() < 1e-6


def test_bad_arguments():
    f = lambda x, idx=None: x.sum(dim=(1, 2, 3))
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ParameterError, match="internal_batch_size"):
        integrate_path(f, StraightLinePath(x, 0 * x), 1, *quadrature(3), internal_batch_size=0)
    with pytest.raises(ParameterError, match="velocity"):
        integrate_path(f, StraightLinePath(x, 0 * x), 1, *quadrature(3), velocity="magic")
    with pytest.raises(ParameterError, match="equal"):
        integrate_path(f, StraightLinePath(x, 0 * x), 1, [0.5], [0.5, 0.5])


def test_cpu_passes_are_capped_by_pixels_not_by_the_result(monkeypatch):
    """On CPU a pass holds at most CPU_PASS_PIXELS pixels (cache-sized passes); the sum is the same."""
    import cryoxplain.explain.paths as paths

    assert paths.pass_size(64, 1000, (1, 1, 64, 64), "cpu") == paths.CPU_PASS_PIXELS // 4096
    assert paths.pass_size(64, 1000, (1, 1, 512, 512), "cpu") == 1
    assert paths.pass_size(64, 10, (1, 1, 8, 8), "cpu") == 10
    assert paths.pass_size(None, 30, (1, 1, 8, 8), "cpu") == 30
    assert paths.pass_size(64, 1000, (1, 1, 64, 64), "meta") == 64  # not CPU: internal_batch_size as given
    model, tgt, x, f, seen = _recording_classifier()

    a, w = quadrature(7, "gauss_legendre")
    full = integrate_path(f, StraightLinePath(x, torch.zeros_like(x)), 3, a, w, dtype=torch.float64)
    monkeypatch.setattr(paths, "CPU_PASS_PIXELS", 4 * 64)
    seen.clear()
    capped = integrate_path(f, StraightLinePath(x, torch.zeros_like(x)), 3, a, w, internal_batch_size=64,
                            dtype=torch.float64)
    assert max(seen) == 4 and sum(seen) == 21
    assert torch.allclose(full.attribution, capped.attribution, atol=1e-12)


def test_model_declared_cpu_pass_cap(monkeypatch):
    """A model's ``cpu_pass_pixels`` caps CPU passes inside Explainer.attribute (model_pass_pixels),
    and only there; the attribution is the same to float rounding."""
    import numpy as np
    import torch

    from cryoxplain.explain import create_explainer
    from cryoxplain.explain import paths

    class Lin(torch.nn.Module):
        task = "denoise"
        input_shape = None

        def __init__(self, cap=None):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(-1, 1, 16 * 16).reshape(1, 1, 16, 16))
            self.sizes = []
            if cap is not None:
                self.cpu_pass_pixels = cap

        def forward(self, x):
            self.sizes.append(x.shape[0])
            return torch.tanh(x * self.w)

    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert paths.pass_size(1000, 1000, (1, 1, 16, 16), "cpu") == paths.CPU_PASS_PIXELS // 256
    maps = {}
    for cap in (None, 2 * 256):
        m = Lin(cap)
        maps[cap] = create_explainer("integrated_gradients", steps=16).attribute(m, x, "pixel:8,8").maps
        if cap is not None:
            assert max(m.sizes) == 2, m.sizes
            with paths.model_pass_pixels(m):
                assert paths.pass_size(1000, 1000, (1, 1, 16, 16), "cpu") == 2
            assert paths.pass_size(1000, 1000, (1, 1, 16, 16), "cpu") == paths.CPU_PASS_PIXELS // 256
        else:
            assert max(m.sizes) == 16, m.sizes
    np.testing.assert_allclose(maps[None], maps[2 * 256], rtol=1e-5, atol=1e-7)
    from cryoxplain.models.registry import load_model

    assert load_model("default")[0].cpu_pass_pixels == 2 ** 12
