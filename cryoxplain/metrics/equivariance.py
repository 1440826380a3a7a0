"""Rotation-equivariance error of image-to-image models and rotation invariance of classifiers.

Definition (used everywhere in cryoxplain; spec denoising.md §5, docs/equivariance.md §1)
-----------------------------------------------------------------------------------------
For a denoiser ``F``, images ``x_1..x_n`` and an angle θ,

    E(θ) = ‖W ⊙ F(R_θ x) − R_θ (W ⊙ F(x))‖₂ / ‖R_θ (W ⊙ F(x))‖₂

where ``R_θ`` is the rotation of :mod:`cryoxplain.geometry.rotate` (exact pixel permutation for
multiples of 90°, band-limited FFT three-shear otherwise) and ``W`` the **output window**: a
smooth (raised-cosine) disc that lies inside the model's valid disc
(:func:`cryoxplain.models.protocol.model_valid_radius`; the whole box for cartesian models), see
:func:`output_window`.  The window is applied to the output *before* it is rotated, so the
band-limited rotation never sees a hard edge of the output (a model that is zero, or passes its
input through, outside its disc would otherwise be blamed for the rotation's ringing at that
edge); the same window is the evaluation disc.  The norms are taken over **all images together**
(ratio of summed squares, so images with little signal do not dominate).  ``E = 0`` for an exactly
equivariant ``F``; ``E ≈ √2`` for an ``F`` whose outputs of rotated inputs are unrelated to its
rotated outputs.  Models compared with each other must be measured with the same window (pass
``window=``; :func:`common_window` builds it for several models).

Reported on three sets of angles:

* **grid** θ ∈ {90°, 180°, 270°}: the rotation is exact, so E isolates the model's own error;
* **off-grid** θ: :data:`DEFAULT_N_OFFGRID` stratified angles (one per equal sector of
  [0°, 360°), at least 2° from the grid; :func:`offgrid_angles`), reported per angle, as the mean
  and as the spread (standard deviation over angles);
* **floor**: the rotation operator's own round-trip error on the same windowed images and angles,
  ``‖R_−θ R_θ (W x) − W x‖₂ / ‖W x‖₂`` (exactly 0 on the grid), on the inputs and on the outputs
  ``F(x)``, and the **isotropic reference**: E of an exactly equivariant isotropic Gaussian blur
  on the same images, window and angles, i.e. what the measurement itself contributes for a
  denoiser.

For classifiers (outputs of shape ``(B, C)``: logits), rotation *invariance* is reported as the
fraction of images whose predicted class is unchanged by the rotation (``agreement``) and the mean
Kullback–Leibler divergence ``KL(p(x) ‖ p(R_θ x))`` of the softmax outputs (nats).

This module is the math only (arrays and models in, numbers out).  The report record and its table
are in :mod:`cryoxplain.metrics.report`, the figures in :mod:`cryoxplain.metrics.plots`, the training
callback in :mod:`cryoxplain.metrics.callbacks`, and the run on a saved model and an MRC stack in
:func:`cryoxplain.evaluate.evaluate_stack_equivariance`.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence, Union

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..geometry.rotate import rotate
from ..imaging.batch import as_image_batch
from ..imaging.masks import disc_mask
from .report import EquivarianceReport

Array = Union[np.ndarray, torch.Tensor]

__all__ = [
    "GRID_ANGLES_DEG",
    "as_image_function",
    "equivariance_error",
    "rotation_floor",
    "classifier_invariance",
    "evaluate_equivariance",
    "EquivarianceReport",
    "offgrid_angles",
    "default_mask",
    "output_window",
    "common_window",
    "window_radius",
    "isotropic_reference",
    "DEFAULT_N_OFFGRID",
    "DEFAULT_N_IMAGES",
]

# deprecated locations, kept for one release (imported lazily: metrics imports no models, I/O or plotting)
_MOVED = {
    "EquivarianceCallback": "cryoxplain.metrics.callbacks",  # use cryoxplain.metrics.callbacks
    "evaluate_stack_equivariance": "cryoxplain.evaluate",  # use cryoxplain.evaluate
    "plot_equivariance": "cryoxplain.metrics.plots",  # use cryoxplain.metrics.plots
}


def __getattr__(name):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

GRID_ANGLES_DEG = (90.0, 180.0, 270.0)
#: default number of stratified off-grid angles (with fewer, ratios of E compress: docs/equivariance.md)
DEFAULT_N_OFFGRID = 12
#: default number of images the metric is evaluated on
DEFAULT_N_IMAGES = 64


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _to_batch(images: Array) -> torch.Tensor:
    """(H,W) / (B,H,W) / (B,1,H,W) numpy or torch → float tensor (B,1,H,W), square boxes, finite values."""
    return as_image_batch(images, square=True)


def as_image_function(fn, device=None, batch_size: int = 64) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a model or callable into ``f(x: (B,1,H,W) tensor) -> tensor`` evaluated without gradients.

    ``nn.Module``\\ s are put in eval mode (their previous mode is restored after each call), moved
    inputs to the module's device and fed in batches of ``batch_size``; a model with a fixed
    ``input_shape`` is checked against the images.  Plain callables receive the tensor as is and may
    return numpy or torch, ``(B,H,W)`` or ``(B,1,H,W)``; classifiers return ``(B, C)`` logits.
    """
    if isinstance(fn, torch.nn.Module):
        module = fn
        if device is None:
            p = next(module.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")

        def f(x: torch.Tensor) -> torch.Tensor:
            from ..models.protocol import model_input_shape  # lazily: metrics import no models at import time

            shape = model_input_shape(module)
            if shape is not None and tuple(shape) != tuple(x.shape[-2:]):
                raise ShapeError(f"the model expects {tuple(shape)[0]}x{tuple(shape)[1]} images, "
                                 f"got {x.shape[-2]}x{x.shape[-1]}; resample or crop the stack to the model's box size")
            was_training = module.training
            module.eval()
            try:
                outs = []
                with torch.no_grad():
                    for i in range(0, x.shape[0], batch_size):
                        xb = x[i:i + batch_size].to(device=device, dtype=torch.float32)
                        outs.append(module(xb).detach().to(x.device, torch.float64 if x.dtype == torch.float64 else torch.float32))
                return torch.cat(outs)
            finally:
                module.train(was_training)

        return f

    def g(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = fn(x)
        y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
        return y.to(x.device)

    return g


def _as_output_batch(y: torch.Tensor, n: int) -> torch.Tensor:
    if y.ndim == 3:
        y = y[:, None]
    if y.ndim == 4 and y.shape[1] != 1:
        raise ShapeError(f"image-to-image function returned {y.shape[1]} channels; expected 1")
    if y.shape[0] != n:
        raise ShapeError(f"function returned {y.shape[0]} outputs for {n} inputs")
    return y


def _is_classifier_output(y: torch.Tensor) -> bool:
    return y.ndim == 2


def _masked_sq(d: torch.Tensor, m: torch.Tensor | None = None) -> float:
    d = d.double()
    return float(((d if m is None else m * d) ** 2).sum())


def _mask_tensor(mask, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    m = default_mask(h, w) if mask is None else np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.shape != (h, w):
        raise ShapeError(f"mask shape {m.shape} does not match images {h}x{w}")
    return torch.as_tensor(m, dtype=torch.float64, device=like.device)


def default_mask(h: int, w: int | None = None) -> np.ndarray:
    """The box's default window: :func:`cryoxplain.imaging.masks.disc_mask` inscribed in the box with
    a raised-cosine edge of width ``min(h, w)/8`` pixels (= :func:`output_window` with no valid radius)."""
    return output_window(h, w)


def output_window(h: int, w: int | None = None, radius: float | None = None, taper: float | None = None) -> np.ndarray:
    """The metric's output window: a raised-cosine disc that is 1 up to ``radius − taper`` and 0 from
    ``radius`` on (:func:`cryoxplain.imaging.masks.disc_mask`).

    ``radius`` (px) defaults to the inscribed disc ``min(h, w)/2``; pass a model's valid radius
    (:func:`window_radius`) so the window lies inside the disc where the model predicts.
    ``taper`` defaults to ``min(h, w)/8`` (clipped to the radius).  A smooth edge matters: the
    band-limited rotation of a hard edge rings (docs/equivariance.md §1).
    """
    w = h if w is None else w
    r = min(h, w) / 2.0 if radius is None else float(radius)
    if not r > 0:
        raise ParameterError(f"window radius must be > 0 pixels, got radius={radius}")
    t = min(h, w) / 8.0 if taper is None else float(taper)
    return disc_mask((h, w), r, taper=min(t, r))


def window_radius(h: int, *models) -> float:
    """The largest window radius valid for every model given: the smallest of their valid radii
    (:func:`cryoxplain.models.protocol.model_valid_radius`), or ``h/2`` (the box) when none says."""
    from ..models.protocol import model_valid_radius  # lazily: metrics import no models at import time

    radii = [r for r in (model_valid_radius(m) for m in models) if r is not None]
    return min([h / 2.0] + radii)


def common_window(h: int, *models, taper: float | None = None) -> np.ndarray:
    """One :func:`output_window` for comparing ``models`` on ``h × h`` images: inside every model's valid disc."""
    return output_window(h, h, window_radius(h, *models), taper)


def _window_tensor(window, fn, h: int, w: int, like: torch.Tensor) -> torch.Tensor | None:
    """``window``: None (the model's own, :func:`common_window`), ``"none"`` (no window: the metric
    before the window existed) or an ``(H, W)`` array of weights."""
    if isinstance(window, str):
        if window != "none":
            raise ParameterError(f"window must be an (H, W) array, None or 'none', got window={window!r}")
        return None
    if window is None:
        if h != w:
            raise ShapeError(f"equivariance is measured on square boxes, got {h}x{w}")
        window = common_window(h, fn)
    return _mask_tensor(window, h, w, like)


def _windowed(y: torch.Tensor, wt: torch.Tensor | None) -> torch.Tensor:
    return y.double() if wt is None else wt * y.double()


def _isotropic_lowpass(sigma: float):
    """An exactly rotation-equivariant reference operator: Gaussian blur of ``sigma`` px with periodic
    borders (:func:`cryoxplain.imaging.filters.gaussian_blur`), which commutes exactly with the
    quarter turns about the centre pixel ``N // 2`` on even and odd boxes."""
    from ..imaging.filters import gaussian_blur

    def f(x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x.double(), sigma, border="periodic")

    return f


def isotropic_reference(images: Array, angles_deg: Iterable[float], mask=None, *, sigma: float = 1.0,
                        method: str = "fft", window=None) -> dict[float, float]:
    """E(θ) of an exactly equivariant operator (isotropic Gaussian blur, ``sigma`` px) on ``images``.

    This is the measurement floor for a denoiser: the value an ideally equivariant smoothing
    operator gets from the same images, angles, window and rotation.  (The round-trip floor on
    *noisy* inputs is much larger, because pixel noise is not band-limited to the disc of
    frequencies that a rotation maps onto itself; a denoiser removes most of that content.)
    ``window`` as in :func:`equivariance_error` (default: the box's window, :func:`default_mask`).
    """
    return equivariance_error(_isotropic_lowpass(sigma), images, angles_deg, mask=mask, method=method, window=window)


def check_angles_deg(angles, name: str = "offgrid angles") -> list[float]:
    """Angles in degrees as finite floats (NaN/Inf or non-numbers raise ParameterError)."""
    out = []
    for a in angles:
        try:
            v = float(a)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be numbers of degrees, got {a!r}") from None
        if not math.isfinite(v):
            raise ParameterError(f"{name} must be finite numbers of degrees, got {a!r}")
        out.append(v)
    return out


def offgrid_angles(n: int = DEFAULT_N_OFFGRID, seed: int = 0, min_distance_deg: float = 2.0) -> list[float]:
    """``n`` stratified random angles (degrees): one drawn uniformly (seeded) in each of ``n`` equal
    sectors of [0°, 360°), at least ``min_distance_deg`` from any multiple of 90°.

    Stratified so that the angles cover the distance from the grid evenly: E → 0 as θ approaches a
    multiple of 90° for any model, so a few clustered random angles bias the mean (and compress
    ratios of E between models; docs/equivariance.md §1).
    """
    n = int(n)
    if n < 0:
        raise ParameterError(f"n_offgrid must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    out: list[float] = []
    for i in range(n):
        lo, hi = 360.0 * i / n, 360.0 * (i + 1) / n
        for _ in range(1000):
            a = float(rng.uniform(lo, hi))
            if abs(((a + 45.0) % 90.0) - 45.0) >= min_distance_deg:
                break
        else:  # a sector narrower than the excluded band around a grid angle: its allowed end
            a = min(max(90.0 * round(lo / 90.0) + min_distance_deg, lo), hi)
        out.append(round(a, 4))
    return out


# ---------------------------------------------------------------------------------------------
# the metric
# ---------------------------------------------------------------------------------------------
def equivariance_error(fn, images: Array, angles_deg: Iterable[float], mask=None, *, method: str = "fft",
                       batch_size: int = 64, outputs: torch.Tensor | None = None, window=None) -> dict[float, float]:
    """E(θ) (module docstring) of an image-to-image ``fn`` for each angle in ``angles_deg`` (degrees).

    ``fn``: an ``nn.Module`` or a callable on ``(B,1,H,W)`` tensors; ``images``: ``(B,H,W)`` or
    ``(B,1,H,W)`` (numpy or torch, square boxes).  ``window``: the output window applied before
    rotating (default :func:`common_window` of ``fn``: a smooth disc inside its valid disc; pass
    one window to compare several models; ``"none"``: no window).  ``mask``: optional ``(H,W)``
    weights applied after rotating (the evaluation mask of the metric before the window existed;
    default none: the window is the evaluation disc).  ``outputs`` may pass a precomputed
    ``fn(images)``.  Returns ``{angle_deg: E}``.
    """
    x = _to_batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    n, _, h, w = x.shape
    m = None if mask is None else _mask_tensor(mask, h, w, x)
    wt = _window_tensor(window, fn, h, w, x)
    y = _as_output_batch(f(x) if outputs is None else outputs, n)
    if _is_classifier_output(y):
        raise ShapeError("fn returns (B, C) class scores; use classifier_invariance() for classifiers")
    y = _windowed(y, wt)
    res: dict[float, float] = {}
    for a in angles_deg:
        a = float(a)
        th = math.radians(a)
        ry = rotate(y, th, method=method)
        fr = _windowed(_as_output_batch(f(rotate(x, th, method=method)), n), wt)
        den = _masked_sq(ry, m)
        if den == 0.0:
            raise ParameterError("the model output is zero inside the window; the relative equivariance error is undefined")
        res[a] = math.sqrt(_masked_sq(fr - ry, m) / den)
    return res


def rotation_floor(images: Array, angles_deg: Iterable[float], mask=None, *, method: str = "fft",
                   window=None) -> dict[float, float]:
    """The rotation operator's own error ``‖R_−θ R_θ (W x) − W x‖₂/‖W x‖₂`` per angle (degrees), pooled over images.

    ``window`` ``W`` as in :func:`equivariance_error` (default: the box's, :func:`default_mask`);
    ``mask`` optional weights applied to the difference and the norm.  With the FFT rotation, R_−θ
    uses the three-shear factorisation that does *not* cancel R_θ's shears exactly (an exact
    algebraic inverse would report only the losses at the box edges).
    """
    x = _to_batch(images).double()
    n, _, h, w = x.shape
    m = None if mask is None else _mask_tensor(mask, h, w, x)
    x = _windowed(x, _window_tensor(window, None, h, w, x))
    den = _masked_sq(x, m)
    if den == 0.0:
        raise ParameterError("images are zero inside the window")
    out = {}
    for a in angles_deg:
        th = math.radians(float(a))
        # R_θ = S(φ)·Q(k) (quarter turn Q, then three shears S).  Run backwards with the same
        # factorisation the shears cancel exactly (each is unitary) and the interpolation error is
        # hidden; a quarter turn swaps the x/y roles, so the non-cancelling choice depends on k.
        k = int(round(th / (math.pi / 2))) % 4
        back_order = "yxy" if k % 2 == 0 else "xyx"
        back = rotate(rotate(x, th, method=method, shear_order="xyx"), -th, method=method, shear_order=back_order)
        out[float(a)] = math.sqrt(_masked_sq(back - x, m) / den)
    return out


def classifier_invariance(fn, images: Array, angles_deg: Iterable[float], *, method: str = "fft",
                          batch_size: int = 64, logits: torch.Tensor | None = None) -> dict[float, dict[str, float]]:
    """Rotation invariance of a classifier: ``{angle: {"agreement": …, "kl": …}}``.

    ``agreement``: fraction of images whose arg-max class is the same for ``x`` and ``R_θ x``;
    ``kl``: mean ``KL(softmax(f(x)) ‖ softmax(f(R_θ x)))`` in nats.  ``fn`` returns ``(B, C)`` logits.
    """
    x = _to_batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    z0 = f(x) if logits is None else logits
    if not _is_classifier_output(z0):
        raise ShapeError(f"classifier_invariance needs (B, C) logits, got shape {tuple(z0.shape)}")
    lp0 = torch.log_softmax(z0.double(), dim=1)
    out = {}
    for a in angles_deg:
        z = f(rotate(x, math.radians(float(a)), method=method))
        lp = torch.log_softmax(z.double(), dim=1)
        kl = (lp0.exp() * (lp0 - lp)).sum(dim=1).mean()
        agree = (lp0.argmax(1) == lp.argmax(1)).double().mean()
        out[float(a)] = {"agreement": float(agree), "kl": float(kl)}
    return out


# ---------------------------------------------------------------------------------------------
# the full report
# ---------------------------------------------------------------------------------------------
def _with_progress(f, total: int, progress: bool | None):
    """``f`` that moves a tqdm bar (stderr) by one per call; the bar closes after ``total`` calls."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="equivariance", unit="pass", leave=False,
               disable=None if progress is None else not progress)

    def counted(z):
        out = f(z)
        bar.update(1)
        if bar.n >= total:
            bar.close()
        return out

    return counted


def evaluate_equivariance(fn, images: Array, n_offgrid: int = DEFAULT_N_OFFGRID, seed: int = 0, *, mask=None,
                          offgrid: Sequence[float] | None = None, method: str = "fft",
                          batch_size: int = 64, window=None, progress: bool | None = False) -> EquivarianceReport:
    """Full equivariance report of a denoiser (or invariance report of a classifier).

    ``progress``: a bar over the model passes (one per angle, plus the unrotated one) on stderr;
    ``None`` shows it only on a terminal.

    Grid angles 90/180/270° (exact), ``n_offgrid`` stratified angles drawn with ``seed``
    (:func:`offgrid_angles`; or the given ``offgrid`` angles, degrees) with the band-limited
    rotation, the rotation's round-trip floor on the inputs and on the outputs, and the
    isotropic-filter reference (:func:`isotropic_reference`), all with the same output window
    (``window``: default :func:`common_window` of ``fn``; see :func:`equivariance_error`; ``mask``
    likewise).  The task is detected from the output: ``(B, C)`` logits → classifier (no window).
    """
    if n_offgrid < 0:
        raise ParameterError(f"n_offgrid must be >= 0, got {n_offgrid}")
    x = _to_batch(images)
    n, _, h, w = x.shape
    f = as_image_function(fn, batch_size=batch_size)
    angles_off = check_angles_deg(offgrid) if offgrid is not None else offgrid_angles(n_offgrid, seed)
    if progress is not False:
        f = _with_progress(f, 1 + len(GRID_ANGLES_DEG) + len(angles_off), progress)
    y = f(x)
    all_angles = list(GRID_ANGLES_DEG) + angles_off
    if _is_classifier_output(y):
        floor = rotation_floor(x, all_angles, mask=mask, method=method, window=window)
        rep = EquivarianceReport("classify", n, h, method, seed=seed, mask="none" if mask is None else "custom",
                                 window="box default" if window is None else "custom")
        rep.grid = classifier_invariance(f, x, GRID_ANGLES_DEG, method=method, logits=y)
        rep.offgrid = classifier_invariance(f, x, angles_off, method=method, logits=y)
        rep.floor = floor
        return rep
    if window is None:
        r = window_radius(h, fn)
        window = output_window(h, w, r)
        wname = f"disc (radius {r:g} px, taper {min(h, w) / 8:g} px)"
    else:
        wname = "none" if isinstance(window, str) else "custom"
    y = _as_output_batch(y, n)
    rep = EquivarianceReport("denoise", n, h, method, seed=seed, mask="none" if mask is None else "custom", window=wname)
    kw = dict(mask=mask, method=method, window=window)
    rep.grid = equivariance_error(f, x, GRID_ANGLES_DEG, outputs=y, **kw)
    rep.offgrid = equivariance_error(f, x, angles_off, outputs=y, **kw)
    rep.floor = rotation_floor(x, all_angles, **kw)
    rep.floor_output = rotation_floor(y, all_angles, **kw)
    rep.reference = isotropic_reference(x, all_angles, **kw)
    return rep
