"""``check_explainer(cls)``: the conformance suite every explainer plugin should pass.

It builds the explainer with its defaults (or ``params``) and explains the toy models of
:mod:`cryoxplain.testing.toys` — a tiny denoiser (target ``disc-energy``) and a tiny
classifier (target ``predicted``) — on the CPU, checking

* **declarations**: every :class:`~cryoxplain.explain.Param` has a help text, a type among
  bool/int/float/str and a default of that type that passes its own checks (choices, min, max);
  the class has ``name``, ``reference`` and a docstring;
* **the result**: an :class:`~cryoxplain.explain.Attribution` with float32 maps ``(B, H, W)`` of
  the inputs' size, finite, not all zero; per-image extras have the batch as first axis and the
  standard extras (:data:`cryoxplain.explain.extras.STANDARD_EXTRAS`) their documented shape;
  the inputs are left untouched; provenance names the method and its parameters;
* **determinism**: a second explainer with the same parameters gives identical maps;
* **batch consistency** (unless the explainer says ``batch_independent`` is False): explaining a
  batch equals explaining each image alone with its stack index;
* **completeness** (when the class declares ``completeness = True``): it returns ``target_value``,
  ``baseline_value`` and ``completeness_gap`` = ``Σ maps − (f(x) − f(baseline))``, and the gap is at most
  ``completeness_rtol`` (5 %) of the batch's largest ``|f(x) − f(baseline)|``;
* **user errors** raise :class:`~cryoxplain.errors.CryoxplainError` subclasses: an unknown
  parameter, NaN inputs, a 2-channel batch, images of the wrong size for a fixed-size model.

Use it in a plugin's own tests: ``check_explainer(MyExplainer)`` (raises ``AssertionError`` with
what failed; returns a dict summary).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import CryoxplainError, ParameterError, ShapeError
from ..explain.base import Attribution, Explainer, Param
from ..explain.extras import STANDARD_EXTRAS
from ..explain.targets import parse_target
from .toys import toy_classifier, toy_denoiser, toy_images

__all__ = ["check_explainer", "check_params"]

_TYPES = (bool, int, float, str)


def check_params(cls: type[Explainer]) -> None:
    """The declaration checks of :func:`check_explainer` (no model run)."""
    assert isinstance(cls, type) and issubclass(cls, Explainer), f"{cls!r} is not an Explainer subclass"
    assert cls.name, f"{cls.__name__}: no name"
    assert cls.reference, f"{cls.name}: no reference"
    assert (cls.__doc__ or "").strip(), f"{cls.name}: no docstring"
    names = [p.name for p in cls.params]
    assert len(names) == len(set(names)), f"{cls.name}: duplicate parameter names {names}"
    for p in cls.params:
        assert isinstance(p, Param), f"{cls.name}: {p!r} is not a Param"
        assert p.help, f"{cls.name}.{p.name}: no help text"
        assert p.type in _TYPES, f"{cls.name}.{p.name}: type {p.type!r} is not one of bool, int, float, str"
        assert p.default is not None, f"{cls.name}.{p.name}: no default"
        assert type(p.default) is p.type or (p.type is float and type(p.default) is int), \
            f"{cls.name}.{p.name}: default {p.default!r} is not a {p.type.__name__}"
        try:
            assert p.parse(p.default) == p.default
            assert p.parse(str(p.default)) == p.default or p.type is str
        except ParameterError as exc:  # pragma: no cover - reported as a failure
            raise AssertionError(f"{cls.name}.{p.name}: the default fails its own checks ({exc})") from None
    for old, new in cls.renamed.items():
        assert new in names, f"{cls.name}: deprecated name {old!r} points to undeclared {new!r}"


def _check_result(name: str, att, x: torch.Tensor) -> None:
    b, _, h, w = x.shape
    assert isinstance(att, Attribution), f"{name}: attribute returned {type(att).__name__}, not an Attribution"
    assert att.maps.shape == (b, h, w) and att.maps.dtype == np.float32, \
        f"{name}: maps {att.maps.shape} {att.maps.dtype}, expected {(b, h, w)} float32"
    assert np.isfinite(att.maps).all(), f"{name}: non-finite maps"
    assert np.abs(att.maps).max() > 0, f"{name}: all-zero maps on a toy model"
    assert att.method == name, f"{name}: provenance method {att.method!r}"
    for k, (shape, _) in STANDARD_EXTRAS.items():
        if k in att.extras:
            v = np.asarray(att.extras[k])
            want = {"(B,)": (b,), "(B, H, W)": (b, h, w)}.get(shape)
            if want is not None:
                assert v.shape == want, f"{name}: extras[{k!r}] has shape {v.shape}, documented {shape}"
            else:
                assert v.ndim == 2 and v.shape[0] == b, f"{name}: extras[{k!r}] has shape {v.shape}, documented {shape}"


def check_explainer(cls: type[Explainer], params: dict | None = None, *, n_images: int = 3,
                    batch_rtol: float = 1e-4, completeness_rtol: float = 0.05) -> dict:
    """Run the conformance suite (module docstring) on explainer class ``cls``; returns a summary."""
    check_params(cls)
    params = dict(params or {})
    name = cls.name
    x = toy_images(n_images)
    report = {"name": name, "checks": []}
    for model, spec in ((toy_denoiser(), "disc-energy"), (toy_classifier(), "predicted")):
        kind = model.task
        spec = parse_target(spec, tuple(x.shape[-2:]))  # a Target: plugins that override attribute take only those
        x0 = x.clone()
        att = cls(**params).attribute(model, x, spec)
        assert torch.equal(x, x0), f"{name}: the inputs were modified"
        _check_result(name, att, x)
        # determinism: a fresh explainer with the same parameters
        again = cls(**params).attribute(model, x, spec)
        np.testing.assert_array_equal(again.maps, att.maps, err_msg=f"{name}: not deterministic ({kind})")
        report["checks"] += [f"{kind}: result", f"{kind}: determinism"]
        # batch consistency: each image alone (with its stack index) = the batch
        if getattr(cls(**params), "batch_independent", True):
            scale = float(np.abs(att.maps).max())
            for i in range(n_images):
                alone = cls(**params)
                alone.index_offset = i  # its stack index, as explain_stack sets it
                one = alone.attribute(model, x[i:i + 1], spec)
                np.testing.assert_allclose(one.maps[0], att.maps[i], rtol=batch_rtol, atol=batch_rtol * scale,
                                           err_msg=f"{name}: image {i} alone differs from the batch ({kind})")
            report["checks"].append(f"{kind}: batch consistency")
        # completeness
        if getattr(cls, "completeness", False):
            ex = att.extras
            assert "completeness_gap" in ex, f"{name}: declares completeness but returns no completeness_gap"
            gap = np.asarray(ex["completeness_gap"], dtype=np.float64)
            assert "target_value" in ex and "baseline_value" in ex, \
                f"{name}: declares completeness but returns no target_value/baseline_value"
            delta = np.asarray(ex["target_value"], np.float64) - np.asarray(ex["baseline_value"], np.float64)
            np.testing.assert_allclose(gap, att.maps.astype(np.float64).sum((1, 2)) - delta,
                                       rtol=1e-3, atol=1e-4 * (np.abs(delta).max() + 1e-6),
                                       err_msg=f"{name}: completeness_gap is not Σ maps − (f(x) − f(b))")
            bound = completeness_rtol * (np.abs(delta).max() + 1e-6)  # relative to the batch's largest f(x) − f(b)
            assert np.all(np.abs(gap) <= bound), f"{name}: completeness gap {gap} too large for f(x) − f(b) = {delta}"
            report["checks"].append(f"{kind}: completeness")
    # user errors
    model = toy_classifier()
    for bad, err, what in ((dict(no_such_parameter=1), ParameterError, "unknown parameter"),):
        try:
            cls(**params, **bad)
        except err:
            pass
        else:
            raise AssertionError(f"{name}: {what} accepted")
    ex = cls(**params)
    nan = x.clone()
    nan[0, 0, 2, 3] = float("nan")
    for inputs, err, what in ((nan, CryoxplainError, "NaN inputs"),
                              (x.expand(-1, 2, -1, -1), ShapeError, "a 2-channel batch"),
                              (toy_images(2, size=12), ShapeError, "12×12 images for a 16×16 model")):
        try:
            ex.attribute(model, inputs, parse_target("predicted"))
        except err:
            continue
        except Exception as exc:  # noqa: BLE001 - reported
            raise AssertionError(f"{name}: {what} raised {type(exc).__name__} ({exc}), not a cryoxplain error") from None
        raise AssertionError(f"{name}: {what} accepted")
    report["checks"].append("user errors")
    return report
