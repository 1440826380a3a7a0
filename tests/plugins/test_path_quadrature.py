"""The quadrature defaults of the path methods reach their stated completeness error on the toy models.

Completeness error: ``|Σ A − (f(x) − f(baseline))| / |f(x) − f(baseline)|`` per image
(benchmarks/path_accuracy.py prints it for every rule and step count; the numbers in the comments
are its ``--models toys --steps 50 100`` run, docs/benchmarks-explainers.md).  Toy models and images are seeded
and tiny (16×16), so these tests are deterministic and take well under a second each.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from cryoxplain.explain import create_explainer
from cryoxplain.testing.toys import toy_classifier, toy_denoiser, toy_images


def _errors(method, model, target, **params):
    x = toy_images(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # blur_ig's max_gap warning: the error is asserted here
        att = create_explainer(method, **params).attribute(model, x, target)
    ex = att.extras
    fx, fb = (np.asarray(ex[k], dtype=np.float64) for k in ("target_value", "baseline_value"))
    gap = np.asarray(att.maps, dtype=np.float64).sum((1, 2)) - (fx - fb)
    # the extras' completeness_gap is the same quantity
    np.testing.assert_allclose(np.asarray(ex["completeness_gap"], dtype=np.float64), gap, atol=1e-4 * np.abs(fx).max())
    return np.abs(gap) / np.abs(fx - fb), gap, fx


def test_ig_default_is_exact_to_float_rounding_on_a_smooth_model():
    # 50 Gauss–Legendre nodes on the softplus toy denoiser: max 2e-7 (the float32 rounding)
    err, *_ = _errors("integrated_gradients", toy_denoiser(), "pixel:8,8")
    assert err.max() < 1e-5


def test_ig_default_reaches_2_percent_on_the_relu_toy_classifier():
    # ReLU kinks along the path limit every rule; Gauss–Legendre 50: median 0.8 %, max 1.4 %
    # (riemann_trapezoid 50: max 3.9 %, riemann_middle 50: max 5.7 %)
    err, *_ = _errors("integrated_gradients", toy_classifier(), "class:0")
    assert np.median(err) < 0.01
    assert err.max() < 0.02


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "riemann_middle"])
def test_ig_default_rule_beats_the_other_rules_at_equal_cost(rule):
    for model, target in ((toy_denoiser(), "pixel:8,8"), (toy_classifier(), "class:0")):
        gl, *_ = _errors("integrated_gradients", model, target)
        other, *_ = _errors("integrated_gradients", model, target, rule=rule)
        assert gl.max() < other.max()


def test_blur_ig_default_reaches_1_percent_on_a_smooth_model():
    # 100 σ intervals, riemann_right, σ_max = 16/4: max 0.32 %.  Floor ~1e-3: the truncated
    # kernel's radius int(4σ + 0.5) jumps with σ, which the σ-derivative does not see.
    err, *_ = _errors("blur_ig", toy_denoiser(), "pixel:8,8")
    assert err.max() < 0.01


def test_blur_ig_default_on_the_relu_toy_classifier():
    # median 1.0 %; the worst image's f(x) − f(baseline) is only −0.88 (f ≈ 12), so its relative
    # error is 16 % while its gap is 0.14 = 1.1 % of |f(x)|; the gap shrinks with more steps
    err, gap, fx = _errors("blur_ig", toy_classifier(), "class:0")
    assert np.median(err) < 0.015
    assert (np.abs(gap) < 0.015 * np.abs(fx)).all()
    fine, *_ = _errors("blur_ig", toy_classifier(), "class:0", steps=400)
    assert fine.max() < err.max() / 4
