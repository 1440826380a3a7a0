"""Rotation-equivariance error of image-to-image models and rotation invariance of classifiers.

Definition (used everywhere in cryoxplain; spec denoising.md §5)
-----------------------------------------------------------------
For a denoiser ``F``, images ``x_1..x_n`` and an angle θ,

    E(θ) = ‖M ⊙ (F(R_θ x) − R_θ F(x))‖₂ / ‖M ⊙ R_θ F(x)‖₂

where ``R_θ`` is the rotation of :mod:`cryoxplain.geometry.rotate` (exact pixel permutation for
multiples of 90°, band-limited FFT three-shear otherwise), ``M`` a disc mask (default
:func:`default_mask`: the disc inscribed in the box with a raised-cosine edge of width box/8), and the norms are taken
over **all images together** (ratio of summed squares, so images with little signal do not
dominate).  ``E = 0`` for an exactly equivariant ``F``; ``E ≈ √2`` for an ``F`` whose outputs of
rotated inputs are unrelated to its rotated outputs.

Reported on three sets of angles:

* **grid** θ ∈ {90°, 180°, 270°}: the rotation is exact, so E isolates the model's own error;
* **off-grid** random θ: includes the error of the band-limited rotation;
* **floor**: the rotation operator's own round-trip error on the same images and angles,
  ``‖M ⊙ (R_−θ R_θ x − x)‖₂ / ‖M ⊙ x‖₂`` (exactly 0 on the grid).  A model is never blamed for
  an off-grid error at the level of the floor.  Because pixel noise is not band-limited, the floor
  on noisy inputs is large (≈ 0.1–0.25); the report therefore also gives the floor on the outputs
  ``F(x)`` and the **isotropic reference**: E of an exactly equivariant isotropic Gaussian blur on
  the same images and angles, i.e. what the measurement itself contributes for a denoiser.

For classifiers (outputs of shape ``(B, C)``: logits), rotation *invariance* is reported as the
fraction of images whose predicted class is unchanged by the rotation (``agreement``) and the mean
Kullback–Leibler divergence ``KL(p(x) ‖ p(R_θ x))`` of the softmax outputs (nats).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence, Union

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..geometry.rotate import disc_mask, rotate
from ..models.protocol import model_input_shape

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
    "isotropic_reference",
    "EquivarianceCallback",
    "evaluate_stack_equivariance",
    "plot_equivariance",
]

GRID_ANGLES_DEG = (90.0, 180.0, 270.0)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _to_batch(images: Array) -> torch.Tensor:
    """(H,W) / (B,H,W) / (B,1,H,W) numpy or torch → float tensor (B,1,H,W) (no copy if possible)."""
    t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None]
    elif t.ndim != 4 or t.shape[1] != 1:
        raise ShapeError(f"expected images (H,W), (B,H,W) or (B,1,H,W), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    if t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"equivariance is measured on square boxes, got {t.shape[-2]}x{t.shape[-1]}")
    if not torch.isfinite(t).all():
        raise ParameterError("images contain NaN or infinite values")
    return t


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


def _masked_sq(d: torch.Tensor, m: torch.Tensor) -> float:
    return float(((m * d.double()) ** 2).sum())


def _mask_tensor(mask, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    m = default_mask(h, w) if mask is None else np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if m.shape != (h, w):
        raise ShapeError(f"mask shape {m.shape} does not match images {h}x{w}")
    return torch.as_tensor(m, dtype=torch.float64, device=like.device)


def default_mask(h: int, w: int | None = None) -> np.ndarray:
    """The metric's default mask: the disc inscribed in the box with a raised-cosine edge of width
    ``min(h, w)/8`` pixels (see :func:`~cryoxplain.geometry.rotate.disc_mask`).

    The taper keeps the comparison away from the hard edge where band-limited rotation of the
    box's content rings; with a hard disc an exactly isotropic filter measures E ≈ 0.04 on noisy
    33-px particles, with this taper ≈ 0.01 (docs/equivariance.md).
    """
    w = h if w is None else w
    return disc_mask(h, w, taper=min(h, w) / 8.0)


def _isotropic_lowpass(sigma: float):
    """An exactly rotation-equivariant reference operator: Gaussian blur of ``sigma`` px with periodic
    borders (:func:`cryoxplain.imaging.filters.gaussian_blur`), which commutes exactly with the
    quarter turns about the centre pixel ``N // 2`` on even and odd boxes."""
    from ..imaging.filters import gaussian_blur

    def f(x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x.double(), sigma, border="periodic")

    return f


def isotropic_reference(images: Array, angles_deg: Iterable[float], mask=None, *, sigma: float = 1.0,
                        method: str = "fft") -> dict[float, float]:
    """E(θ) of an exactly equivariant operator (isotropic Gaussian blur, ``sigma`` px) on ``images``.

    This is the measurement floor for a denoiser: the value an ideally equivariant smoothing
    operator gets from the same images, angles, mask and rotation.  (The round-trip floor on
    *noisy* inputs is much larger, because pixel noise is not band-limited to the disc of
    frequencies that a rotation maps onto itself; a denoiser removes most of that content.)
    """
    return equivariance_error(_isotropic_lowpass(sigma), images, angles_deg, mask=mask, method=method)


def offgrid_angles(n: int, seed: int = 0, min_distance_deg: float = 2.0) -> list[float]:
    """``n`` random angles (degrees, uniform on [0°, 360°)) at least ``min_distance_deg`` from any multiple of 90°."""
    rng = np.random.default_rng(seed)
    out: list[float] = []
    while len(out) < n:
        a = float(rng.uniform(0.0, 360.0))
        d = abs(((a + 45.0) % 90.0) - 45.0)
        if d >= min_distance_deg:
            out.append(round(a, 4))
    return out


# ---------------------------------------------------------------------------------------------
# the metric
# ---------------------------------------------------------------------------------------------
def equivariance_error(fn, images: Array, angles_deg: Iterable[float], mask=None, *, method: str = "fft",
                       batch_size: int = 64, outputs: torch.Tensor | None = None) -> dict[float, float]:
    """E(θ) (module docstring) of an image-to-image ``fn`` for each angle in ``angles_deg`` (degrees).

    ``fn``: an ``nn.Module`` or a callable on ``(B,1,H,W)`` tensors; ``images``: ``(B,H,W)`` or
    ``(B,1,H,W)`` (numpy or torch, square boxes); ``mask``: ``(H,W)`` weights (default: inscribed
    disc).  ``outputs`` may pass a precomputed ``fn(images)``.  Returns ``{angle_deg: E}``.
    """
    x = _to_batch(images)
    f = as_image_function(fn, batch_size=batch_size)
    n, _, h, w = x.shape
    m = _mask_tensor(mask, h, w, x)
    y = _as_output_batch(f(x) if outputs is None else outputs, n)
    if _is_classifier_output(y):
        raise ShapeError("fn returns (B, C) class scores; use classifier_invariance() for classifiers")
    res: dict[float, float] = {}
    for a in angles_deg:
        a = float(a)
        th = math.radians(a)
        ry = rotate(y, th, method=method)
        fr = _as_output_batch(f(rotate(x, th, method=method)), n)
        den = _masked_sq(ry, m)
        if den == 0.0:
            raise ParameterError("the model output is zero inside the mask; the relative equivariance error is undefined")
        res[a] = math.sqrt(_masked_sq(fr - ry, m) / den)
    return res


def rotation_floor(images: Array, angles_deg: Iterable[float], mask=None, *, method: str = "fft") -> dict[float, float]:
    """The rotation operator's own error ``‖M⊙(R_−θ R_θ x − x)‖₂/‖M⊙x‖₂`` per angle (degrees), pooled over images.

    With the FFT rotation, R_−θ uses the three-shear factorisation that does *not* cancel R_θ's
    shears exactly (an exact algebraic inverse would report only the losses at the box edges).
    """
    x = _to_batch(images).double()
    n, _, h, w = x.shape
    m = _mask_tensor(mask, h, w, x)
    den = _masked_sq(x, m)
    if den == 0.0:
        raise ParameterError("images are zero inside the mask")
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
# the report
# ---------------------------------------------------------------------------------------------
@dataclass
class EquivarianceReport:
    """Result of :func:`evaluate_equivariance`.

    ``task`` is ``denoise`` (``grid``/``offgrid``: ``{angle_deg: E}``) or ``classify``
    (``grid``/``offgrid``: ``{angle_deg: {"agreement", "kl"}}``).  ``floor``: ``{angle_deg:
    round-trip error of the rotation on the inputs}``; ``floor_output`` the same on ``F(x)``
    (denoisers only: the rotation is applied to the outputs in E).
    """

    task: str
    n_images: int
    box: int
    method: str
    grid: dict = field(default_factory=dict)
    offgrid: dict = field(default_factory=dict)
    floor: dict = field(default_factory=dict)
    floor_output: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    seed: int = 0
    mask: str = "disc"

    @staticmethod
    def _mean(d: dict, key: str | None = None) -> float:
        vals = [v[key] if key else v for v in d.values()]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def summary(self) -> dict[str, float]:
        if self.task == "classify":
            return {"grid_agreement": self._mean(self.grid, "agreement"), "grid_kl": self._mean(self.grid, "kl"),
                    "offgrid_agreement": self._mean(self.offgrid, "agreement"),
                    "offgrid_kl": self._mean(self.offgrid, "kl"),
                    "floor": self._mean({a: v for a, v in self.floor.items() if a in self.offgrid})}
        return {"grid": self._mean(self.grid), "offgrid": self._mean(self.offgrid),
                "floor": self._mean({a: v for a, v in self.floor.items() if a in self.offgrid}),
                "floor_output": self._mean({a: v for a, v in self.floor_output.items() if a in self.offgrid}),
                "reference": self._mean({a: v for a, v in self.reference.items() if a in self.offgrid})}

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("grid", "offgrid", "floor", "floor_output", "reference"):
            d[k] = {f"{a:g}": v for a, v in d[k].items()}
        d["summary"] = self.summary
        d["definition"] = ("E(theta) = ||M*(F(R x) - R F(x))|| / ||M*R F(x)||, pooled over images; "
                           "floor = ||M*(R_-theta R_theta x - x)|| / ||M*x|| (floor_output: the same on F(x)); "
                           "reference = E(theta) of an isotropic Gaussian blur (sigma 1 px) on the same images")
        return d

    def rows(self) -> list[tuple]:
        """Table rows ``(kind, angle_deg, value, floor, floor_output, reference)`` in angle order."""
        rows = []
        for kind, d in (("grid", self.grid), ("off-grid", self.offgrid)):
            for a in sorted(d):
                rows.append((kind, a, d[a], self.floor.get(a, 0.0), self.floor_output.get(a, math.nan),
                             self.reference.get(a, math.nan)))
        return rows

    def format_table(self) -> str:
        lines = []
        s = self.summary
        if self.task == "classify":
            lines.append(f"{'set':<9}{'angle':>9}{'agreement':>11}{'KL(nats)':>11}{'floor(x)':>11}")
            for kind, a, v, fl, _, _ in self.rows():
                lines.append(f"{kind:<9}{a:>9.2f}{v['agreement']:>11.4f}{v['kl']:>11.3e}{fl:>11.3e}")
            lines.append(f"{'mean grid':<18}{s['grid_agreement']:>11.4f}{s['grid_kl']:>11.3e}{0.0:>11.3e}")
            lines.append(f"{'mean off-grid':<18}{s['offgrid_agreement']:>11.4f}{s['offgrid_kl']:>11.3e}{s['floor']:>11.3e}")
        else:
            lines.append(f"{'set':<9}{'angle':>9}{'E(theta)':>11}{'floor(x)':>11}{'floor(Fx)':>11}{'iso-ref':>11}")
            for kind, a, v, fl, flo, ref in self.rows():
                lines.append(f"{kind:<9}{a:>9.2f}{v:>11.4e}{fl:>11.3e}{flo:>11.3e}{ref:>11.3e}")
            lines.append(f"{'mean grid':<18}{s['grid']:>11.4e}{0.0:>11.3e}{0.0:>11.3e}{0.0:>11.3e}")
            lines.append(f"{'mean off-grid':<18}{s['offgrid']:>11.4e}{s['floor']:>11.3e}{s['floor_output']:>11.3e}"
                         f"{s['reference']:>11.3e}")
            lines.append("floor(x): rotation round trip on the inputs; floor(Fx): on the outputs; iso-ref: E of an "
                         "exactly equivariant isotropic blur (the metric's floor for a denoiser)")
        lines.append(f"({self.n_images} images, {self.box}x{self.box} box, {self.mask} mask, rotation: {self.method})")
        return "\n".join(lines)


def evaluate_equivariance(fn, images: Array, n_offgrid: int = 8, seed: int = 0, *, mask=None,
                          offgrid: Sequence[float] | None = None, method: str = "fft",
                          batch_size: int = 64) -> EquivarianceReport:
    """Full equivariance report of a denoiser (or invariance report of a classifier).

    Grid angles 90/180/270° (exact), ``n_offgrid`` random angles drawn with ``seed`` (or the given
    ``offgrid`` angles, degrees) with the band-limited rotation, the rotation's round-trip floor on
    the inputs and on the outputs, and the isotropic-filter reference (:func:`isotropic_reference`).
    ``mask`` defaults to :func:`default_mask`.  The task is detected from the output: ``(B, C)``
    logits → classifier.
    """
    if n_offgrid < 0:
        raise ParameterError(f"n_offgrid must be >= 0, got {n_offgrid}")
    x = _to_batch(images)
    n, _, h, w = x.shape
    f = as_image_function(fn, batch_size=batch_size)
    y = f(x)
    angles_off = [float(a) for a in offgrid] if offgrid is not None else offgrid_angles(n_offgrid, seed)
    all_angles = list(GRID_ANGLES_DEG) + angles_off
    mname = f"disc (taper {min(h, w) / 8:g} px)" if mask is None else "custom"
    floor = rotation_floor(x, all_angles, mask=mask, method=method)
    if _is_classifier_output(y):
        rep = EquivarianceReport("classify", n, h, method, seed=seed, mask=mname)
        rep.grid = classifier_invariance(f, x, GRID_ANGLES_DEG, method=method, logits=y)
        rep.offgrid = classifier_invariance(f, x, angles_off, method=method, logits=y)
        rep.floor = floor
        return rep
    y = _as_output_batch(y, n)
    rep = EquivarianceReport("denoise", n, h, method, seed=seed, mask=mname)
    rep.grid = equivariance_error(f, x, GRID_ANGLES_DEG, mask=mask, method=method, outputs=y)
    rep.offgrid = equivariance_error(f, x, angles_off, mask=mask, method=method, outputs=y)
    rep.floor = floor
    rep.floor_output = rotation_floor(y, all_angles, mask=mask, method=method)
    rep.reference = isotropic_reference(x, all_angles, mask=mask, method=method)
    return rep


# ---------------------------------------------------------------------------------------------
# training-history callback
# ---------------------------------------------------------------------------------------------
class EquivarianceCallback:
    """Training callback adding equivariance columns to a denoiser's per-epoch history.

    Called as ``cb(model, epoch, val_noisy, val_clean) -> dict`` by
    :func:`cryoxplain.train.train_denoiser` (eval mode, no gradients) with the normalised validation
    inputs.  It measures the network itself on the first ``n_images`` validation images, always with
    the same angles (so the curves are comparable across epochs), and returns

    * ``equivariance``: mean E(θ) over ``n_offgrid`` fixed random off-grid angles (seeded) — the
      error under arbitrary in-plane rotations, what the thesis' Fig 7.7–7.9 plot;
    * ``equivariance_grid``: mean E over 90°, 180°, 270° (exact rotations: the network alone);
    * ``equivariance_floor``: the rotation operator's mean round-trip floor on the same images and
      off-grid angles (constant over epochs);
    * ``equivariance_reference``: E of an exactly equivariant isotropic blur on the same images and
      angles (constant; the level below which a model's off-grid E is measurement error).
    """

    def __init__(self, n_images: int = 16, n_offgrid: int = 4, seed: int = 0, method: str = "fft"):
        if n_images < 1 or n_offgrid < 1:
            raise ParameterError("the equivariance callback needs n_images >= 1 and n_offgrid >= 1")
        self.n_images, self.method = int(n_images), method
        self.angles = offgrid_angles(int(n_offgrid), seed)
        self._floor: float | None = None
        self._ref: float | None = None

    def __call__(self, model, epoch, val_noisy, val_clean=None) -> dict:
        if val_noisy is None or len(val_noisy) == 0 or val_noisy.shape[-1] != val_noisy.shape[-2]:
            return {}  # nothing to measure on (no validation split, or non-square boxes)
        x = val_noisy[: self.n_images]
        f = as_image_function(model)
        y = f(x)
        off = equivariance_error(f, x, self.angles, method=self.method, outputs=y)
        grid = equivariance_error(f, x, GRID_ANGLES_DEG, method=self.method, outputs=y)
        if self._floor is None:
            self._floor = float(np.mean(list(rotation_floor(x, self.angles, method=self.method).values())))
            self._ref = float(np.mean(list(isotropic_reference(x, self.angles, method=self.method).values())))
        return {"equivariance": float(np.mean(list(off.values()))),
                "equivariance_grid": float(np.mean(list(grid.values()))),
                "equivariance_floor": self._floor, "equivariance_reference": self._ref}


# ---------------------------------------------------------------------------------------------
# model + stack (what `cryoxplain evaluate equivariance` calls)
# ---------------------------------------------------------------------------------------------
def _normalize(x: torch.Tensor) -> torch.Tensor:
    """The denoisers' input normalisation (:mod:`cryoxplain.models.normalize`)."""
    try:
        from ..models.normalize import normalize
    except ModuleNotFoundError:  # pragma: no cover - before the cartesian branch is merged
        dims = tuple(range(1, x.ndim))
        mu, sd = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True, unbiased=False)
        return (x - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))
    return normalize(x)[0]


def evaluate_stack_equivariance(stack, model="default", *, n_images: int = 64, n_offgrid: int = 8,
                                seed: int = 0, device: str = "auto", batch_size: int = 64,
                                method: str = "fft", angles_deg: Sequence[float] | None = None,
                                radius: float | None = None, taper: float | None = None):
    """Equivariance report of a saved model on (a seeded random subset of) an MRC particle stack.

    ``model``: a model file or shipped model name (default: the shipped ``default`` model).  Up to
    ``n_images`` images are drawn with ``seed``.  Each image is normalised once with its own
    statistics (exactly as :mod:`cryoxplain.models.normalize` does before denoising) and the network
    is measured in these units, so E reflects the network, not the per-box normalisation.
    ``radius``/``taper`` (pixels) change the mask (default :func:`default_mask`).
    Returns ``(report, model_info)``.
    """
    from ..io.mrc import open_stack
    from ..models.registry import load_model
    from ..utils import resolve_device

    if n_images < 1:
        raise ParameterError(f"n_images must be >= 1, got {n_images}")
    dev = resolve_device(device)
    net, info = load_model(model, device=dev)
    with open_stack(stack) as st:
        h, w = st.image_shape
        if h != w:
            raise ShapeError(f"{stack}: images are {h}x{w}; equivariance is measured on square boxes")
        n = len(st)
        idx = np.arange(n) if n <= n_images else np.sort(np.random.default_rng(seed).choice(n, n_images, replace=False))
        imgs = np.stack([st[int(i)] for i in idx])
    x = _normalize(torch.from_numpy(imgs)[:, None])
    mask = None
    if radius is not None or taper is not None:
        mask = disc_mask(h, w, radius=radius, taper=min(h, w) / 8.0 if taper is None else taper)
    rep = evaluate_equivariance(net, x, n_offgrid=n_offgrid, seed=seed, offgrid=angles_deg, method=method,
                                batch_size=batch_size, mask=mask)
    if mask is not None:
        rep.mask = f"disc (radius {radius if radius is not None else min(h, w) / 2:g} px, taper {taper if taper is not None else min(h, w) / 8:g} px)"
    return rep, info


def plot_equivariance(report: EquivarianceReport, path, *, title: str | None = None, force: bool = False):
    """PNG of the error (denoisers: E(θ), log scale; classifiers: agreement and KL) vs angle, with the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ga, oa = sorted(report.grid), sorted(report.offgrid)
    if report.task == "classify":
        ax.plot(ga, [1 - report.grid[a]["agreement"] for a in ga], "s", color="C0", label="grid: 1 − agreement")
        ax.plot(oa, [1 - report.offgrid[a]["agreement"] for a in oa], "o", color="C0", mfc="none",
                label="off-grid: 1 − agreement")
        ax.plot(ga, [report.grid[a]["kl"] for a in ga], "s", color="C1", label="grid: KL (nats)")
        ax.plot(oa, [report.offgrid[a]["kl"] for a in oa], "o", color="C1", mfc="none", label="off-grid: KL (nats)")
        ax.set_ylabel("rotation non-invariance")
    else:
        ax.plot(ga, [max(report.grid[a], 1e-16) for a in ga], "s", color="C0", ms=7, label="E(θ), grid (exact rotation)")
        ax.plot(oa, [report.offgrid[a] for a in oa], "o", color="C0", mfc="none", label="E(θ), off-grid (FFT rotation)"
                if report.method == "fft" else "E(θ), off-grid (spline rotation)")
        ax.set_ylabel("equivariance error E(θ)")
    fa = [a for a in oa if a in report.floor]
    if fa:
        ax.plot(fa, [max(report.floor[a], 1e-16) for a in fa], "x", color="0.4", label="rotation floor (inputs)")
    ax.set_yscale("log")
    ax.set_xlabel("rotation angle θ (degrees)")
    ax.set_xlim(0, 360)
    ax.set_xticks(range(0, 361, 45))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"rotation equivariance ({report.n_images} images, {report.box}² box)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
