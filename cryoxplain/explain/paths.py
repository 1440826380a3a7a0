r"""Path integration for the Integrated-Gradients family.

Every path method (IG, Blur IG, Spectral/Fourier-path IG, Ablation Paths, ...) computes, for a
path ``x(α)`` with ``α ∈ [0, 1]`` running from a baseline ``x(0)`` to the input ``x(1)``,

.. math::

    A_i \;=\; \int_0^1 \frac{\partial f}{\partial x_i}\bigl(x(\alpha)\bigr)\,
              \frac{d x_i}{d\alpha}(\alpha)\; d\alpha
        \;\approx\; \sum_k w_k\, \partial_i f\bigl(x(\alpha_k)\bigr)\, \dot x_i(\alpha_k),

and by the fundamental theorem of calculus for line integrals ``Σ_i A_i = f(x(1)) − f(x(0))``
(*completeness*) up to the quadrature error.  This module supplies the two ingredients:

* :func:`quadrature` — nodes ``α_k`` and weights ``w_k`` on ``[0, 1]`` for the rules
  ``riemann_left``, ``riemann_right``, ``riemann_middle``, ``riemann_trapezoid`` and
  ``gauss_legendre``;
* :func:`integrate_path` — the weighted sum above for an arbitrary batched path, evaluating at
  most ``internal_batch_size`` path points per forward/backward pass so memory stays bounded
  whatever the number of steps.

A *path* is a callable ``path(alpha, idx) -> points``: ``alpha`` is a float tensor ``(n,)`` of
path positions and ``idx`` a long tensor ``(n,)`` saying which image of the batch each position
belongs to; it returns the ``n`` path points ``(n, C, H, W)``.  The velocity ``dx/dα`` is taken
from ``path.velocity(alpha, idx)`` when the path has one (exact, e.g. :class:`StraightLinePath`),
otherwise by forward-mode automatic differentiation of the path in ``α`` (``velocity="autodiff"``)
or by finite differences (``"central"`` / ``"forward"`` with step ``eps``; ``"forward"`` with
``eps = grad_step`` is the discretisation used by PAIR's Blur IG).

The explained function ``f`` is called as ``f(points, idx) -> (n,)``;
:func:`cryoxplain.explain.base.explained_function` returns such a function for a model and a
:class:`~cryoxplain.explain.base.Target` (``idx`` selects per-image target data such as a class).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import ParameterError

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gauss_legendre")
_ALIASES = {
    "left": "riemann_left", "right": "riemann_right", "middle": "riemann_middle", "midpoint": "riemann_middle",
    "trapezoid": "riemann_trapezoid", "trapezoidal": "riemann_trapezoid", "riemann_trapezoid": "riemann_trapezoid",
    "gausslegendre": "gauss_legendre", "gauss_legendre": "gauss_legendre", "gl": "gauss_legendre",
    "riemann_left": "riemann_left", "riemann_right": "riemann_right", "riemann_middle": "riemann_middle",
    "riemann_midpoint": "riemann_middle",
}
#: rule names accepted by :func:`quadrature` (canonical names and aliases; ``-`` equals ``_``)
RULE_NAMES = tuple(sorted(set(_ALIASES) | set(RULES)))

#: on CPU, at most this many pixels (path points × H × W) per forward/backward pass (see :func:`pass_size`)
CPU_PASS_PIXELS = 2 ** 15

# the explained model's own CPU pass cap (its ``cpu_pass_pixels`` attribute), set for the duration of
# one Explainer.attribute call (:func:`model_pass_pixels`); None: CPU_PASS_PIXELS
_MODEL_PASS_PIXELS: contextvars.ContextVar = contextvars.ContextVar("cryoxplain_model_pass_pixels", default=None)


@contextlib.contextmanager
def model_pass_pixels(model):
    """Within the block, :func:`pass_size` caps CPU passes at ``model.cpu_pass_pixels`` pixels when the
    model declares it (the optional protocol attribute of :mod:`cryoxplain.models.protocol`), else at
    :data:`CPU_PASS_PIXELS`.  Used by :meth:`cryoxplain.explain.base.Explainer.attribute`."""
    n = getattr(model, "cpu_pass_pixels", None)
    token = _MODEL_PASS_PIXELS.set(None if n is None else max(1, int(n)))
    try:
        yield
    finally:
        _MODEL_PASS_PIXELS.reset(token)

PathFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IndexedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def canonical_rule(rule: str) -> str:
    """Canonical name of a quadrature rule (``"gauss-legendre"`` → ``"gauss_legendre"``)."""
    key = str(rule).strip().lower().replace("-", "_")
    if key not in _ALIASES:
        raise ParameterError(f"unknown quadrature rule {rule!r}; use one of {', '.join(RULES)}")
    return _ALIASES[key]


def quadrature(n: int, rule: str = "gauss_legendre") -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alphas`` and weights ``weights`` (float64, shape ``(n,)``) of an ``n``-point rule on [0, 1].

    ``Σ w_k g(α_k) ≈ ∫_0^1 g(α) dα``; the weights always sum to 1, so constants integrate exactly.

    * ``riemann_left``  — ``α_k = k/n``, ``w_k = 1/n`` (k = 0…n−1); exact for constants.
    * ``riemann_right`` — ``α_k = (k+1)/n``, ``w_k = 1/n``; exact for constants.
    * ``riemann_middle`` — ``α_k = (k+½)/n``, ``w_k = 1/n``; exact for polynomials of degree 1.
    * ``riemann_trapezoid`` — ``α_k = k/(n−1)``, ``w_k = 1/(n−1)`` with both end weights halved
      (n ≥ 2); exact for degree 1.  (Captum's ``riemann_trapezoid`` uses ``1/n`` instead of
      ``1/(n−1)``, so its weights sum to ``1 − 1/n``; ours are the textbook rule.)
    * ``gauss_legendre`` — Legendre nodes mapped from [−1, 1] to [0, 1], weights halved; exact
      for polynomials of degree ``2n − 1`` (the best rule for smooth integrands).
    """
    rule = canonical_rule(rule)
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise ParameterError(f"number of quadrature steps must be an integer, got {n!r}") from None
    if n < 1 or (rule == "riemann_trapezoid" and n < 2):
        need = 2 if rule == "riemann_trapezoid" else 1
        raise ParameterError(f"{rule} needs at least {need} step(s), got {n}")
    k = np.arange(n, dtype=np.float64)
    if rule == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if rule == "riemann_right":
        return (k + 1) / n, np.full(n, 1.0 / n)
    if rule == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    if rule == "riemann_trapezoid":
        w = np.full(n, 1.0 / (n - 1))
        w[0] *= 0.5
        w[-1] *= 0.5
        return k / (n - 1), w
    x, w = _leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


@functools.lru_cache(maxsize=32)
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Legendre nodes and weights on [−1, 1] (remembered: numpy's eigenvalue solve costs a few ms
    per call, a per-``attribute()`` overhead of the default IG); read-only arrays."""
    x, w = np.polynomial.legendre.leggauss(n)
    x.flags.writeable = w.flags.writeable = False
    return x, w


class StraightLinePath:
    """``x(α) = b + α (x − b)`` with the exact velocity ``x − b`` (the path of Integrated Gradients).

    ``inputs`` and ``baselines`` are ``(B, C, H, W)``; ``baselines`` may also broadcast
    (e.g. ``(1, C, H, W)`` or a scalar tensor).
    """

    def __init__(self, inputs: torch.Tensor, baselines: torch.Tensor):
        self.inputs = inputs.detach()
        self.baselines = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device).detach().expand_as(inputs)
        self.delta = self.inputs - self.baselines

    def __call__(self, alpha: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        a = alpha.to(self.inputs.dtype).view(-1, *([1] * (self.inputs.ndim - 1)))
        return self.baselines[idx] + a * self.delta[idx]

    def velocity(self, alpha: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.delta[idx]


def pass_size(internal_batch_size: int | None, total: int, image_shape, device) -> int:
    """Path points per forward/backward pass: ``internal_batch_size`` (None: all ``total``), and on
    CPU at most ``cap // (H·W)`` (at least 1), where ``cap`` is the explained model's
    ``cpu_pass_pixels`` inside :func:`model_pass_pixels`, else :data:`CPU_PASS_PIXELS`.

    On one CPU core the time per image of a forward+backward pass grows with the batch once the
    activations leave the cache: the shipped 64×64 denoiser (8 layers × 32 channels) costs about
    twice as much per image in passes of 64 as in passes of 1–8 (docs/benchmarks-explainers.md),
    while small classifiers gain little beyond 8.  ``internal_batch_size`` stays the memory bound;
    on a GPU it is used as given.  Only the grouping of points changes, not the result (beyond
    float rounding).
    """
    chunk = total if internal_batch_size is None else min(total, int(internal_batch_size))
    if torch.device(device).type == "cpu" and image_shape is not None:
        pixels = int(np.prod(tuple(image_shape)[-2:]))
        cap = _MODEL_PASS_PIXELS.get()
        chunk = min(chunk, max(1, (CPU_PASS_PIXELS if cap is None else cap) // max(pixels, 1)))
    return max(1, chunk)


@dataclass
class PathIntegral:
    """Result of :func:`integrate_path`.

    * ``attribution`` — ``(B, C, H, W)``: ``Σ_k w_k ∇f(x(α_k)) ⊙ ẋ(α_k)``.
    * ``alphas``, ``weights`` — ``(K,)`` the quadrature used.
    * ``values`` — ``(B, K)``: ``f(x(α_k))`` for every image and node (free by-product of the
      forward passes; useful for plots and for path-optimisation methods).
    * ``step_contributions`` — ``(B, K)``: ``w_k Σ_i ∂_i f(x(α_k)) ẋ_i(α_k)``, i.e. how much of the
      total attribution each node contributes (Blur IG's per-scale attribution, a spectrum for
      Fourier paths).  ``step_contributions.sum(1) == attribution.sum((1, 2, 3))``.
    """

    attribution: torch.Tensor
    alphas: torch.Tensor
    weights: torch.Tensor
    values: torch.Tensor
    step_contributions: torch.Tensor


def _points_and_velocity(path, velocity, eps: float):
    """A function ``(alpha, idx) -> (points, dx/dα)`` for the chosen velocity rule."""
    if velocity is None:
        v = getattr(path, "velocity", None)
        velocity = v if callable(v) else "autodiff"
    if callable(velocity):
        return lambda alpha, idx: (path(alpha, idx), velocity(alpha, idx))
    if velocity == "autodiff":
        def auto(alpha, idx):
            from torch.func import jvp

            return jvp(lambda a: path(a, idx), (alpha,), (torch.ones_like(alpha),))
        return auto
    if velocity == "central":
        return lambda alpha, idx: (path(alpha, idx), (path(alpha + eps, idx) - path(alpha - eps, idx)) / (2 * eps))
    if velocity == "forward":
        def forward(alpha, idx):
            p = path(alpha, idx)
            return p, (path(alpha + eps, idx) - p) / eps
        return forward
    raise ParameterError(f"velocity must be a callable, 'autodiff', 'central' or 'forward', got {velocity!r}")


def integrate_path(f: IndexedFn, path: PathFn, batch_size: int, alphas, weights, *,
                   velocity: Callable | str | None = None, eps: float = 1e-3,
                   internal_batch_size: int | None = None, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> PathIntegral:
    """Integrate ``∇f · dx/dα`` along ``path`` for a batch of ``batch_size`` images.

    Parameters
    ----------
    f : callable ``(points (n, C, H, W), idx (n,)) -> (n,)``
        The explained function (see :func:`cryoxplain.explain.base.explained_function`).
    path : callable ``(alpha (n,), idx (n,)) -> (n, C, H, W)``
        The path; ``alpha = 1`` should give the input and ``alpha = 0`` the baseline.
    batch_size : int
        Number of images ``B`` (``idx`` runs over ``0 … B−1``).
    alphas, weights : array-like ``(K,)``
        Quadrature nodes and weights, e.g. from :func:`quadrature`.
    velocity : callable, ``"autodiff"``, ``"central"``, ``"forward"`` or None
        How to get ``dx/dα``; None uses ``path.velocity`` when it exists, else ``"autodiff"``.
    eps : float
        Step of the finite-difference velocities.
    internal_batch_size : int or None
        At most this many path points per forward/backward pass (None: all ``B·K`` at once); on
        CPU also at most :data:`CPU_PASS_PIXELS` pixels per pass (:func:`pass_size`).
        Points are taken node-major (all images at ``α_0``, then at ``α_1`` …).
    device, dtype
        Where and in which precision ``alphas`` and ``idx`` are handed to the path (default:
        float32, on ``path.inputs.device`` if the path has ``inputs``, else on the device of the
        point ``path(0, 0)``).

    Returns
    -------
    PathIntegral
    """
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float64))
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if a.ndim != 1 or a.shape != w.shape or a.numel() == 0:
        raise ParameterError(f"alphas and weights must be 1-D of equal non-zero length, got {tuple(a.shape)} and {tuple(w.shape)}")
    if internal_batch_size is not None and int(internal_batch_size) < 1:
        raise ParameterError(f"internal_batch_size must be at least 1, got {internal_batch_size}")
    B, K = int(batch_size), a.numel()
    inputs = getattr(path, "inputs", None)
    shape = None if inputs is None else tuple(inputs.shape)
    if device is None:
        device = getattr(inputs, "device", None)
    if device is None or shape is None:  # ask the path itself (one cheap evaluation)
        with torch.no_grad():
            probe = path(torch.zeros(1, dtype=dtype, device=device), torch.zeros(1, dtype=torch.long, device=device))
        device, shape = (probe.device if device is None else device), tuple(probe.shape)
    points_and_velocity = _points_and_velocity(path, velocity, eps)
    total = B * K
    chunk = pass_size(internal_batch_size, total, shape, device)

    flat_k = torch.arange(K).repeat_interleave(B)   # node of each point (node-major order)
    flat_b = torch.arange(B).repeat(K)              # image of each point
    attribution = None
    values = torch.zeros(B, K, dtype=torch.float64)
    contrib = torch.zeros(B, K, dtype=torch.float64)
    for start in range(0, total, chunk):
        ks, bs = flat_k[start:start + chunk], flat_b[start:start + chunk]
        alpha = a[ks].to(device=device, dtype=dtype)
        idx = bs.to(device)
        with torch.no_grad():
            pts, v = points_and_velocity(alpha, idx)
        pts, v = pts.detach().requires_grad_(True), v.detach()
        with torch.enable_grad():
            y = f(pts, idx)
            if y.shape != (pts.shape[0],):
                raise ParameterError(f"explained function returned shape {tuple(y.shape)}, expected ({pts.shape[0]},)")
            (g,) = torch.autograd.grad(y.sum(), pts)
        term = (g.detach() * v).to(torch.float64) * w[ks].to(g.device).view(-1, *([1] * (g.ndim - 1)))
        if attribution is None:
            attribution = torch.zeros((B,) + tuple(term.shape[1:]), dtype=torch.float64, device=term.device)
        attribution.index_add_(0, idx.to(term.device), term)
        values[bs, ks] = y.detach().to("cpu", torch.float64)
        contrib[bs, ks] = term.flatten(1).sum(1).to("cpu")
    return PathIntegral(attribution=attribution.to(dtype), alphas=a, weights=w, values=values,
                        step_contributions=contrib)


def completeness_gap(f: IndexedFn, path: PathFn, batch_size: int, attribution: torch.Tensor,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``Σ_i A_i − (f(x(1)) − f(x(0)))`` per image ``(B,)``: the quadrature error of a path method.

    Captum calls this the *convergence delta*; it goes to 0 as the number of steps grows.
    """
    B = int(batch_size)
    if device is None:
        device = attribution.device
    idx = torch.arange(B, device=device)
    with torch.no_grad():
        f1 = f(path(torch.ones(B, device=device), idx), idx).double()
        f0 = f(path(torch.zeros(B, device=device), idx), idx).double()
    return attribution.double().flatten(1).sum(1) - (f1 - f0)


@dataclass
class IGResult:
    """Result of :func:`integrated_gradients`: the maps and the completeness bookkeeping."""

    attribution: torch.Tensor      # (B, C, H, W)
    target_value: torch.Tensor     # (B,) f(x), float64
    baseline_value: torch.Tensor   # (B,) f(b), float64
    completeness_gap: torch.Tensor  # (B,) Σ IG − (f(x) − f(b)), float64
    path: PathIntegral


def integrated_gradients(f: IndexedFn, inputs: torch.Tensor, baselines: torch.Tensor, steps: int = 50,
                         rule: str = "gauss_legendre", internal_batch_size: int | None = 64) -> IGResult:
    """Integrated Gradients (Sundararajan et al. 2017) of a bound batch, the one implementation:
    ``(x − b) ⊙ ∫_0^1 ∇f(b + α (x − b)) dα`` with the ``steps``-point ``rule`` (:func:`quadrature`)."""
    alphas, weights = quadrature(steps, rule)
    b = inputs.shape[0]
    res = integrate_path(f, StraightLinePath(inputs, baselines), b, alphas, weights,
                         internal_batch_size=internal_batch_size, device=inputs.device, dtype=inputs.dtype)
    with torch.no_grad():
        fx, fb = f(inputs).double(), f(baselines).double()
    gap = res.attribution.double().flatten(1).sum(1) - (fx - fb)
    return IGResult(res.attribution, fx, fb, gap, res)
