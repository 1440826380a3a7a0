"""Evaluating explanations: localisation against ground truth, complexity, reference maps, the
model-randomisation sanity check, support metrics for denoiser pixel targets and the rotation
equivariance of explanations (spec ``shared/specs/saliency_evaluation.md``).

Faithfulness (Deletion/Insertion, MuFidelity, infidelity, max-sensitivity) lives in
:mod:`cryoxplain.explain.faithfulness` (its one home); :func:`faithfulness_summary` here combines
them.  Data model (spec §3): ``maps`` ``(B, H, W)`` salient-high attributions, ``gt`` ``(B, H, W)``
bool ground truth, ``inputs`` ``(B, 1, H, W)`` the images as the model sees them.

Conventions (docs/conventions.md): pixel ``(x, y)`` = (column, row); the box centre is pixel
``N // 2`` and every disc / distance comes from :mod:`cryoxplain.imaging.masks`, so the ``centre``
reference map and the equivariance mask are exactly invariant under :func:`geometry.rotate.rot90`.
Arg-max ties: the first maximum in raster order (TorchRay).  Every metric takes an explicit
``mode`` (``signed`` | ``abs`` | ``positive``) and never modifies the maps.
"""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..imaging.masks import disc_mask, radial_distance

__all__ = ["MetricResult", "PointingResult", "SupportResult", "SanityResult", "ExplanationEquivariance",
           "bootstrap_ci", "pointing_game", "accept_fraction", "energy_pointing", "rank_accuracy", "roc_auc",
           "support_metrics", "gini_sparseness", "entropy_complexity", "laplacian_hf", "compressed_size",
           "high_frequency_fraction", "reference_maps", "REFERENCE_KINDS", "randomisation_test",
           "explanation_equivariance", "rotate_target", "faithfulness_summary", "ProbabilityTarget", "evaluate_maps", "MODES"]

MODES = ("signed", "abs", "positive")
REFERENCE_KINDS = ("random", "smooth_random", "centre", "sobel", "sobel_clean", "intensity", "oracle")


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
def bootstrap_ci(values, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs dropped), spec §8."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


@dataclass
class MetricResult:
    name: str
    values: np.ndarray  # (B,)
    params: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        v = np.asarray(self.values, dtype=np.float64)
        return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return bootstrap_ci(self.values)

    def to_dict(self) -> dict:
        return {"name": self.name, "mean": self.mean, "ci95": list(self.ci), "params": self.params}


@dataclass
class PointingResult(MetricResult):
    hits: np.ndarray = None  # (B,) bool (False for NaN maps)
    valid: np.ndarray = None  # (B,) bool: the map is not constant
    accept_fraction: np.ndarray = None  # (B,) the random-map expectation
    per_class: dict = field(default_factory=dict)
    score: float = math.nan  # TorchRay: mean over all classes of per-class accuracy (empty class = 0)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(score=self.score, per_class={str(k): v for k, v in self.per_class.items()},
                 random=float(np.mean(self.accept_fraction)))
        return d


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _maps(maps, name: str = "maps") -> np.ndarray:
    from ..imaging.batch import as_image_stack

    return as_image_stack(_np(maps), name=name, dtype=np.float64)


def _gt(gt, like: np.ndarray, name: str = "gt") -> np.ndarray:
    g = _np(gt)
    if g.ndim == 2:
        g = np.broadcast_to(g, like.shape)
    if g.shape != like.shape:
        raise ShapeError(f"{name} must be {like.shape} like the maps, got {g.shape}")
    g = g.astype(bool)
    empty = ~g.reshape(g.shape[0], -1).any(1)
    if empty.any():
        raise ParameterError(f"{name}: image {int(np.argmax(empty))} has an empty ground-truth mask")
    return g


def _mode(m: np.ndarray, mode: str) -> np.ndarray:
    if mode == "signed":
        return m
    if mode == "abs":
        return np.abs(m)
    if mode == "positive":
        return np.maximum(m, 0.0)
    raise ParameterError(f"mode={mode!r} must be one of {', '.join(MODES)}")


def _constant(m: np.ndarray) -> np.ndarray:
    f = m.reshape(m.shape[0], -1)
    return (f == f[:, :1]).all(1)


def _reject_constant(m: np.ndarray, what: str) -> None:
    c = _constant(m)
    if c.any():
        raise ParameterError(f"{what}: map {int(np.argmax(c))} is constant, so the pixel ordering is undefined")


# ---------------------------------------------------------------------------------------------
# pointing game and dense localisation (spec §5.5, §5.6)
# ---------------------------------------------------------------------------------------------
def _distance_to_gt(g: np.ndarray) -> np.ndarray:
    from scipy.ndimage import distance_transform_edt

    return np.stack([distance_transform_edt(~gi) for gi in g])


def accept_fraction(gt, tolerance: float = 4) -> np.ndarray:
    """The exact random-map hit probability per image (B,): the fraction of pixels within distance
    ``< tolerance`` of the ground truth (``tolerance = 0``: the GT area fraction)."""
    g = _np(gt).astype(bool)
    g = g[None] if g.ndim == 2 else g
    d = _distance_to_gt(g)
    acc = (d == 0) if tolerance == 0 else (d < tolerance)
    return acc.reshape(g.shape[0], -1).mean(1)


def pointing_game(maps, gt, tolerance: float = 4, mode: str = "signed", classes=None,
                  n_classes: int | None = None) -> PointingResult:
    """Pointing game (TorchRay rule, spec §5.5).

    The point q is the arg-max of the (``mode``-converted) map, first maximum in raster order.  A hit:
    the tolerance disc ``{r: ‖r − q‖ < τ}`` (strict; distances from :func:`imaging.masks.radial_distance`
    about q) meets the ground truth; ``τ = 0`` means q ∈ GT.  Constant maps are NaN (not hits).
    ``score`` is TorchRay's mean over *all* ``n_classes`` of the per-class accuracy (a class without
    images counts 0, thesis Remark 10); ``mean`` the plain mean over images.
    """
    if tolerance < 0:
        raise ParameterError(f"tolerance={tolerance} must be >= 0 pixels")
    m = _mode(_maps(maps), mode)
    g = _gt(gt, m)
    b, h, w = m.shape
    valid = ~_constant(m)
    q = m.reshape(b, -1).argmax(1)
    hits = np.zeros(b, bool)
    for i in range(b):
        if not valid[i]:
            continue
        qy, qx = divmod(int(q[i]), w)
        if tolerance == 0:
            hits[i] = bool(g[i, qy, qx])
        else:
            hits[i] = bool((radial_distance((h, w), center=(qy, qx))[g[i]] < tolerance).any())
    vals = np.where(valid, hits.astype(np.float64), np.nan)
    cls = np.zeros(b, int) if classes is None else _np(classes).astype(int).reshape(-1)
    if cls.shape != (b,):
        raise ShapeError(f"classes must be ({b},), got {cls.shape}")
    nc = int(n_classes) if n_classes is not None else int(cls.max()) + 1
    per_class = {}
    for c in range(nc):
        sel = (cls == c) & valid
        per_class[c] = float(hits[sel].sum()) / max(int(sel.sum()), 1)
    score = float(np.mean(list(per_class.values()))) if per_class else math.nan
    return PointingResult(f"pointing@{tolerance:g}", vals, {"tolerance": tolerance, "mode": mode},
                          hits=hits, valid=valid, accept_fraction=accept_fraction(g, tolerance),
                          per_class=per_class, score=score)


def energy_pointing(maps, gt, mode: str = "positive", weights=None) -> MetricResult:
    """Energy-based pointing (Score-CAM): ``Σ_{GT} φ⁺ / Σ φ⁺``; with soft ``weights`` w:
    ``Σ φ⁺ w / (Σ φ⁺ · max w)``.  An all-zero converted map gives NaN."""
    m = _mode(_maps(maps), mode)
    g = _gt(gt, m)
    tot = m.reshape(m.shape[0], -1).sum(1)
    if weights is None:
        num = (m * g).reshape(m.shape[0], -1).sum(1)
    else:
        wt = _np(weights).astype(np.float64).reshape(m.shape)
        num = (m * wt).reshape(m.shape[0], -1).sum(1) / wt.reshape(m.shape[0], -1).max(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.where(tot > 0, num / tot, np.nan)
    return MetricResult("energy", v, {"mode": mode, "weighted": weights is not None})


def rank_accuracy(maps, gt, mode: str = "signed") -> MetricResult:
    """Relevance rank accuracy (Arras et al. 2022): the fraction of GT pixels among the |GT|
    highest-ranked pixels (stable order, raster ties).  Constant maps are rejected."""
    m = _mode(_maps(maps), mode)
    g = _gt(gt, m)
    _reject_constant(m, "rank_accuracy")
    b = m.shape[0]
    fm, fg = m.reshape(b, -1), g.reshape(b, -1)
    v = np.empty(b)
    for i in range(b):
        k = int(fg[i].sum())
        top = np.argsort(-fm[i], kind="stable")[:k]
        v[i] = fg[i, top].mean()
    return MetricResult("rank_accuracy", v, {"mode": mode})


def roc_auc(maps, gt, mode: str = "signed") -> MetricResult:
    """ROC-AUC of the map as a GT detector (Mann–Whitney, average ranks for ties: a constant map
    scores 0.5).  Strongly centre-biased on centred particles: report it with the centre map."""
    from scipy.stats import rankdata

    m = _mode(_maps(maps), mode)
    g = _gt(gt, m)
    b = m.shape[0]
    fm, fg = m.reshape(b, -1), g.reshape(b, -1)
    n = fm.shape[1]
    v = np.empty(b)
    for i in range(b):
        k = int(fg[i].sum())
        if k == n:
            v[i] = math.nan
            continue
        r = rankdata(fm[i])
        v[i] = (r[fg[i]].sum() - k * (k + 1) / 2) / (k * (n - k))
    return MetricResult("roc_auc", v, {"mode": mode})


# ---------------------------------------------------------------------------------------------
# support metrics for denoiser pixel targets (spec §5.9)
# ---------------------------------------------------------------------------------------------
@dataclass
class SupportResult:
    out_of_support: np.ndarray  # O (B,)
    psf_mass: np.ndarray | None  # M_S (B,)
    on_particle: np.ndarray | None  # mass fraction on the particle within S_p (B,)
    enrichment: np.ndarray | None  # on_particle / area fraction (B,)
    area_fraction: np.ndarray | None
    r90: np.ndarray  # (B,) px

    def to_dict(self) -> dict:
        def m(a):
            return None if a is None else float(np.nanmean(a))

        return {"out_of_support": m(self.out_of_support), "psf_mass": m(self.psf_mass),
                "on_particle": m(self.on_particle), "enrichment": m(self.enrichment),
                "area_fraction": m(self.area_fraction), "r90": m(self.r90)}


def square_support(shape, pixel: tuple[int, int], radius: int) -> np.ndarray:
    """The receptive field of a stack of k×k convolutions: ``|r_x − p_x| ≤ ρ, |r_y − p_y| ≤ ρ``."""
    h, w = shape
    x, y = pixel
    yy, xx = np.mgrid[:h, :w]
    return (np.abs(xx - x) <= radius) & (np.abs(yy - y) <= radius)


def support_metrics(maps, target_pixel: tuple[int, int], support=None, particle=None,
                    psf_support=None) -> SupportResult:
    """Support metrics of ``abs`` maps for a pixel target ``(x, y)`` (spec §5.9).

    ``support`` (H, W) or (B, H, W) bool: pixels the output can depend on → out-of-support mass O.
    ``psf_support``: the empirical point-spread support S_p (gradient ≥ 1e-3 of its max) → M_S, and with
    ``particle`` the on-particle mass inside S_p and its enrichment over the area fraction.
    ``r90``: the smallest radius about the target pixel holding 90 % of Σ|A|.
    """
    a = np.abs(_maps(maps))
    b, h, w = a.shape
    tot = a.reshape(b, -1).sum(1)
    if (tot == 0).any():
        raise ParameterError("support_metrics: a map is zero everywhere")

    def bc(x, name):
        if x is None:
            return None
        x = _np(x).astype(bool)
        x = np.broadcast_to(x, a.shape) if x.ndim == 2 else x
        if x.shape != a.shape:
            raise ShapeError(f"{name} must be (H, W) or {a.shape}, got {x.shape}")
        return x

    s, part, sp = bc(support, "support"), bc(particle, "particle"), bc(psf_support, "psf_support")
    out = None if s is None else (a * ~s).reshape(b, -1).sum(1) / tot
    psf = on = enr = area = None
    if sp is not None:
        psf = (a * sp).reshape(b, -1).sum(1) / tot
        if part is not None:
            inside = (a * sp).reshape(b, -1).sum(1)
            on = (a * sp * part).reshape(b, -1).sum(1) / inside
            area = (sp & part).reshape(b, -1).sum(1) / sp.reshape(b, -1).sum(1)
            enr = on / area
    x, y = target_pixel
    d = radial_distance((h, w), center=(y, x)).reshape(-1)
    order = np.argsort(d, kind="stable")
    r90 = np.empty(b)
    for i in range(b):
        c = np.cumsum(a[i].reshape(-1)[order]) / tot[i]
        r90[i] = d[order][int(np.searchsorted(c, 0.9 - 1e-12))]
    return SupportResult(out, psf, on, enr, area, r90)


def psf_support(model, inputs, target_pixel, threshold: float = 1e-3) -> np.ndarray:
    """S_p: pixels where ``|∇_x y_p| ≥ threshold · max|∇_x y_p|`` at ``inputs`` (B, H, W) bool."""
    from .base import explained_function, gradient
    from .targets import PixelOutput

    x = torch.as_tensor(_np(inputs)).float()
    x = x[:, None] if x.ndim == 3 else x
    f = explained_function(model, PixelOutput(*target_pixel))
    _, g = gradient(f, x)
    g = g[:, 0].abs().double().numpy()
    return g >= threshold * g.reshape(g.shape[0], -1).max(1)[:, None, None]


# ---------------------------------------------------------------------------------------------
# complexity and sparseness (spec §5.4)
# ---------------------------------------------------------------------------------------------
def gini_sparseness(maps) -> np.ndarray:
    """Gini index of |φ| per map: uniform → 0, one-hot → (n−1)/n (Chalasani et al.; Quantus)."""
    a = np.sort(np.abs(_maps(maps)).reshape(len(_maps(maps)), -1), axis=1)
    n = a.shape[1]
    i = np.arange(1, n + 1)
    s = a.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, ((2 * i - n - 1) * a).sum(1) / (n * s), 0.0)


def entropy_complexity(maps) -> np.ndarray:
    """Entropy of p = |φ|/Σ|φ| (nats) per map: uniform → ln n, one-hot → 0 (Bhatt et al.)."""
    a = np.abs(_maps(maps)).reshape(len(_maps(maps)), -1)
    p = a / a.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p), 0.0)
    return -t.sum(1)


def _minmax(m: np.ndarray) -> np.ndarray:
    lo = m.reshape(m.shape[0], -1).min(1)[:, None, None]
    hi = m.reshape(m.shape[0], -1).max(1)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > lo, (m - lo) / np.where(hi > lo, hi - lo, 1), 0.0)


def laplacian_hf(maps) -> np.ndarray:
    """Var(∇²φ̂) with φ̂ min–max normalised and the 3×3 Laplacian (reflect boundary), per map."""
    from scipy.ndimage import convolve

    k = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
    m = _minmax(_maps(maps))
    return np.array([convolve(mi, k, mode="reflect").var() for mi in m])


def compressed_size(maps) -> np.ndarray:
    """Bytes of zlib level 9 of round(255·φ̂) as uint8, per map."""
    m = np.round(255 * _minmax(_maps(maps))).astype(np.uint8)
    return np.array([len(zlib.compress(mi.tobytes(), 9)) for mi in m], dtype=np.float64)


def high_frequency_fraction(maps, cutoff: float = 0.25) -> np.ndarray:
    """Fraction of power above ``cutoff`` cycles/px (:func:`cryoxplain.explain.spectrum.high_frequency_fraction`)."""
    from .spectrum import high_frequency_fraction as hff

    return np.asarray(hff(_maps(maps), cutoff), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# reference maps (spec §5.10)
# ---------------------------------------------------------------------------------------------
def _sobel(images: np.ndarray) -> np.ndarray:
    from scipy.ndimage import sobel

    from ..imaging.filters import gaussian_blur

    x = np.asarray(gaussian_blur(images.astype(np.float64), 1.0, border="reflect"))
    return np.stack([np.hypot(sobel(xi, axis=1, mode="reflect"), sobel(xi, axis=0, mode="reflect")) for xi in x])


def reference_maps(inputs, kinds: Sequence[str] = ("random", "smooth_random", "centre", "sobel", "intensity"),
                   clean=None, gt=None, seed: int = 0, index_offset: int = 0) -> dict[str, np.ndarray]:
    """Model-free reference maps ``{kind: (B, H, W)}`` on the same inputs (spec §5.10).

    ``random`` U(0,1) and ``smooth_random`` (white noise blurred with σ = 2 px) seeded per image with
    ``image_seed(seed, index_offset + i)``; ``centre`` = −distance to the box centre ``N // 2``;
    ``sobel`` = Sobel magnitude of the 1-px-blurred input (reflect borders), ``sobel_clean`` the same on
    ``clean``; ``intensity`` = the input; ``oracle`` = ``gt`` (a soft GT may be passed).
    """
    from ..imaging.filters import gaussian_blur
    from .base import image_seed

    x = _maps(inputs, "inputs")
    b, h, w = x.shape
    out = {}
    for k in kinds:
        if k in ("random", "smooth_random"):
            rs = [np.random.default_rng(image_seed(seed, index_offset + i)) for i in range(b)]
            if k == "random":
                out[k] = np.stack([r.random((h, w)) for r in rs])
            else:
                z = np.stack([r.standard_normal((h, w)) for r in rs])
                out[k] = np.asarray(gaussian_blur(z, 2.0))
        elif k == "centre":
            out[k] = np.broadcast_to(-radial_distance((h, w)), (b, h, w)).copy()
        elif k == "sobel":
            out[k] = _sobel(x)
        elif k == "sobel_clean":
            if clean is None:
                raise ParameterError("reference map sobel_clean needs clean=... images")
            out[k] = _sobel(_maps(clean, "clean"))
        elif k == "intensity":
            out[k] = x.copy()
        elif k == "oracle":
            if gt is None:
                raise ParameterError("reference map oracle needs gt=... (a mask or a soft ground truth)")
            out[k] = _maps(gt, "gt").copy()
        else:
            raise ParameterError(f"unknown reference map {k!r}; known: {', '.join(REFERENCE_KINDS)}")
    return out  # float64: model-free maps keep their exact symmetries (E_expl of sobel ~1e-16)


# ---------------------------------------------------------------------------------------------
# explainer adapters
# ---------------------------------------------------------------------------------------------
def _explain_fn(explainer, model, target) -> Callable[..., np.ndarray]:
    """``fn(images (B,1,H,W), target=None, model=None) -> maps (B,H,W)`` for an Explainer, a plugin
    name or a callable ``fn(model, images, target)``."""
    from .base import Explainer

    if isinstance(explainer, str):
        from .registry import create_explainer

        explainer = create_explainer(explainer)

    def run(x, tgt=None, mdl=None):
        mdl = model if mdl is None else mdl
        tgt = target if tgt is None else tgt
        if isinstance(explainer, Explainer):
            return explainer.attribute(mdl, x, tgt, index_offset=0).maps.astype(np.float64)
        return _maps(explainer(mdl, x, tgt))

    return run


# ---------------------------------------------------------------------------------------------
# model-parameter randomisation (spec §5.8)
# ---------------------------------------------------------------------------------------------
@dataclass
class SanityResult:
    layers: list  # names of the re-initialised modules, in cascade order
    rho: np.ndarray  # (K,) mean Spearman ρ(|A|, |A^(k)|) over images after step k
    rho_per_image: np.ndarray  # (K, B)

    @property
    def final(self) -> float:
        return float(self.rho[-1]) if len(self.rho) else math.nan

    def model_insensitive(self, bar: float = 0.8) -> bool:
        return self.final > bar

    def to_dict(self) -> dict:
        return {"layers": self.layers, "rho": [float(r) for r in self.rho], "final": self.final}


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        ra, rb = rankdata(a[i]), rankdata(b[i])
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
        out[i] = 1.0 if den == 0 and np.array_equal(a[i], b[i]) else (0.0 if den == 0 else float((ra * rb).sum() / den))
    return out


def randomisation_test(explainer, model: torch.nn.Module, inputs, target, cascade: bool = True,
                       seed: int = 0, mask=None, *, maps=None, final_only: bool = False) -> SanityResult:
    """Adebayo et al.'s cascading model-parameter randomisation (spec §5.8).

    The leaf modules that own parameters are re-initialised (their ``reset_parameters``, under
    ``torch.manual_seed(seed)``) from the output backwards (``cascade=True``: cumulatively; else one
    at a time), recomputing the maps after each step; ρ_k is the Spearman correlation of |A| and
    |A^(k)| over the pixels of the inscribed disc (or ``mask``), averaged over images.  The model is
    copied, never modified.  ``explainer``: an Explainer, a plugin name, or ``fn(model, x, target)``
    (reference maps ignore the model and score ρ = 1).  ``maps``: the maps of the unmodified model on
    ``inputs`` when already computed (saves one attribution).  ``final_only`` (cascade only): re-initialise
    every layer in the same order and with the same seeds, then attribute once, so the result holds only
    the last step of the cascade, identical to the full cascade's, at two attributions instead of L + 1.
    """
    x = torch.as_tensor(_np(inputs)).float() if not isinstance(inputs, torch.Tensor) else inputs
    x = x[:, None] if x.ndim == 3 else x
    run = _explain_fn(explainer, model, target)
    h, w = x.shape[-2:]
    sel = (disc_mask((h, w)) > 0) if mask is None else _np(mask).astype(bool)
    a0 = np.abs(run(x) if maps is None else _maps(maps).astype(np.float64))[:, sel]
    if a0.shape[0] != x.shape[0]:
        raise ShapeError(f"randomisation_test: {a0.shape[0]} maps for {x.shape[0]} images")
    if final_only and not cascade:
        raise ParameterError("randomisation_test: final_only needs cascade=True")
    work = copy.deepcopy(model)
    leaves = [(n, m) for n, m in work.named_modules()
              if any(True for _ in m.parameters(recurse=False)) and hasattr(m, "reset_parameters")]
    if not leaves:
        raise ParameterError("randomisation_test: the model has no re-initialisable layers (reset_parameters)")
    names, rhos = [], []
    pristine = copy.deepcopy(work.state_dict())
    for k, (name, mod) in enumerate(reversed(leaves)):
        if not cascade:
            work.load_state_dict(pristine)
        torch.manual_seed(seed + k)
        mod.reset_parameters()
        names.append(name)
        if final_only and k < len(leaves) - 1:
            continue
        ak = np.abs(run(x, mdl=work))[:, sel]
        rhos.append(_spearman_rows(a0, ak))
    if final_only:
        names = ["+".join(names)]  # one step: every layer re-initialised
    per = np.array(rhos)
    return SanityResult(names, per.mean(1), per)


# ---------------------------------------------------------------------------------------------
# rotation equivariance of explanations (spec §7)
# ---------------------------------------------------------------------------------------------
def rotate_target(target, k: int, shape: tuple[int, int]):
    """The target for the image turned by ``k`` quarter turns (:func:`geometry.rotate.rot90`).

    Class targets are invariant (bind :class:`PredictedClass` once on the unrotated images first);
    ``PixelOutput(x, y)`` moves with the pixel permutation of ``rot90`` about ``N // 2`` (at 64²,
    ``(20, 40) → (24, 20)`` for k = 1); ``ROISum`` masks are turned; ``DiscEnergy`` (centred on
    ``N // 2``, periodic distances) is exactly invariant.  Other targets raise ParameterError.
    """
    from ..geometry.rotate import rot90
    from .base import _CallableTarget
    from .targets import ClassLogit, DiscEnergy, PixelOutput, PredictedClass, ROISum, _PerImageLogit

    k = int(k) % 4
    if k == 0 or isinstance(target, (ClassLogit, PredictedClass, _PerImageLogit, DiscEnergy)):
        return target
    if isinstance(target, PixelOutput):
        one = np.zeros(shape)
        one[target.y, target.x] = 1
        y, x = np.argwhere(rot90(one, k) > 0.5)[0]
        return PixelOutput(int(x), int(y))
    if isinstance(target, ROISum):
        if target.mask is None:
            target._build(shape)
        return ROISum(rot90(target.mask.numpy(), k), f"{target.describe()} rot{90 * k}")
    if isinstance(target, _CallableTarget):
        return target
    raise ParameterError(f"target {target.describe()} cannot be rotated; use class:, predicted, pixel:, roi: or disc-energy")


@dataclass
class ExplanationEquivariance:
    grid: dict  # {deg: E_expl}
    offgrid: dict  # {deg: E_expl}
    floor: dict  # rotation floor on the maps, {deg: F_rot}
    seed_floor: float | None  # E between seeds s, s+1 at θ = 0 (stochastic explainers)
    model: dict  # the model's own E (denoiser) or agreement/KL (classifier) on the same images and angles
    n: int
    offgrid_target: str = ""

    @property
    def grid_max(self) -> float:
        return max(self.grid.values()) if self.grid else math.nan

    @property
    def offgrid_mean(self) -> float:
        return float(np.mean(list(self.offgrid.values()))) if self.offgrid else math.nan

    def equivariant_within_noise(self) -> bool | None:
        return None if self.seed_floor is None else self.grid_max <= 1.1 * self.seed_floor

    def to_dict(self) -> dict:
        return {"grid": self.grid, "offgrid": self.offgrid, "floor": self.floor, "seed_floor": self.seed_floor,
                "model": self.model, "n": self.n, "grid_max": self.grid_max, "offgrid_mean": self.offgrid_mean}


def _e(a: np.ndarray, ra: np.ndarray, m: np.ndarray) -> float:
    den = float(((m * ra) ** 2).sum())
    if den == 0:
        raise ParameterError("the rotated maps are zero inside the mask; E_expl is undefined")
    return math.sqrt(float(((m * (a - ra)) ** 2).sum()) / den)


def explanation_equivariance(explainer, model, inputs, target, angles="grid", mask=None, seed: int = 0,
                             *, maps=None, method: str = "fft", model_metric: bool = True) -> ExplanationEquivariance:
    """E_expl(θ) = ‖M(A(R_θx; R_θτ) − R_θA(x; τ))‖ / ‖M R_θA(x; τ)‖, pooled over images (spec §7).

    Uses :mod:`cryoxplain.metrics.equivariance`'s rotation (``geometry.rotate``: exact ``rot90`` on the
    grid, band-limited three-shear off it), mask (:func:`default_mask`), grid angles and
    :func:`offgrid_angles` (``angles``: ``"grid"``, an int = grid + that many seeded off-grid angles, or
    a list of degrees), and reports the rotation floor on the maps (:func:`rotation_floor`), the seed
    floor of explainers with a ``seed`` parameter, and the model's own (in)variance.  Off the grid a
    pixel target becomes a radius-2 disc ROI about the (rotated) point for both members.
    ``explainer``: an Explainer, a plugin name, or ``fn(model, x, target) -> maps``; ``maps``: its maps
    A(x; τ) on ``inputs`` when already computed (saves one attribution).
    """
    from ..geometry.rotate import rotate
    from ..metrics.equivariance import (GRID_ANGLES_DEG, classifier_invariance, default_mask, equivariance_error,
                                        offgrid_angles, rotation_floor)
    from .base import Explainer, bind_target
    from .targets import PixelOutput, ROISum

    x = torch.as_tensor(_np(inputs)) if not isinstance(inputs, torch.Tensor) else inputs
    x = (x[:, None] if x.ndim == 3 else x).float()
    n, _, h, w = x.shape
    if h != w:
        raise ShapeError(f"explanation_equivariance needs square images, got {h}x{w}")
    if isinstance(explainer, str):
        from .registry import create_explainer

        explainer = create_explainer(explainer)
    tgt = bind_target(target, model, x)  # predicted → the class of x, kept for R_θx
    run = _explain_fn(explainer, model, tgt)
    if angles == "grid":
        off = []
    elif isinstance(angles, int) and not isinstance(angles, bool):
        off = offgrid_angles(angles, seed)
    else:
        off = [float(a) for a in angles if abs(((float(a) + 45) % 90) - 45) > 1e-9]
    grid_angles = list(GRID_ANGLES_DEG) if angles == "grid" or isinstance(angles, int) else \
        [float(a) for a in angles if abs(((float(a) + 45) % 90) - 45) <= 1e-9 and float(a) % 360 != 0]
    m = default_mask(h, w) if mask is None else _np(mask).astype(np.float64)
    a = run(x) if maps is None else _maps(maps).astype(np.float64)
    if a.shape != (n, h, w):
        raise ShapeError(f"explanation_equivariance: maps of shape {a.shape} for {n} images of {h}x{w}")
    grid = {}
    for deg in grid_angles:
        k = int(round(deg / 90)) % 4
        th = math.radians(deg)
        ra = np.asarray(rotate(a, th))
        at = run(rotate(x, th), rotate_target(tgt, k, (h, w)))
        grid[float(deg)] = _e(at, ra, m)
    offd, off_desc = {}, ""
    for deg in off:
        th = math.radians(deg)
        t0, t1 = tgt, tgt
        if isinstance(tgt, PixelOutput):  # a pixel cannot be rotated off the grid: a disc ROI about both points
            c = h // 2
            ct, st = math.cos(th), math.sin(th)
            dx, dy = tgt.x - c, tgt.y - c
            xr, yr = c + ct * dx - st * dy, c + st * dx + ct * dy
            t0 = ROISum(disc_mask((h, w), 2.0, center=(tgt.y, tgt.x)), "roi disc r=2")
            t1 = ROISum(disc_mask((h, w), 2.0, center=(yr, xr)), "roi disc r=2 (rotated)")
            off_desc = "pixel target → disc ROI of radius 2"
        elif isinstance(tgt, ROISum):
            t1 = ROISum(np.asarray(rotate(tgt.mask.double().numpy(), th)), "roi (rotated)")
        a0 = a if t0 is tgt else run(x, t0)
        offd[float(deg)] = _e(run(rotate(x, th), t1), np.asarray(rotate(a0, th)), m)
    floor = rotation_floor(a, off, mask=m) if off else {}
    seed_floor = None
    if isinstance(explainer, Explainer) and "seed" in explainer.config:
        other = copy.copy(explainer)
        other.config = dict(explainer.config, seed=int(explainer.config["seed"] or 0) + 1)
        seed_floor = _e(other.attribute(model, x, tgt, index_offset=0).maps.astype(np.float64), a, m)
    own = {}
    if model_metric and isinstance(model, torch.nn.Module):
        with torch.no_grad():
            out = model(x[:1])
        if out.ndim == 2:
            own = classifier_invariance(model, x, grid_angles + off)
        else:
            own = equivariance_error(model, x, grid_angles + off)
    return ExplanationEquivariance(grid, offd, floor, seed_floor, own, n, off_desc)


# ---------------------------------------------------------------------------------------------
# one report over methods and reference maps
# ---------------------------------------------------------------------------------------------
class ProbabilityTarget:
    """A class target read on probabilities instead of logits (spec §5.1 ``score="probability"``):
    softmax over the classes, or the logistic of a single logit; the wrapped (bound) target picks the
    class.  Used for the Deletion/Insertion/MuFidelity of classifiers, so D and I lie in [0, 1]."""

    def __new__(cls, inner):
        from .base import Target

        class _Prob(Target):
            def __init__(self, t):
                self.inner = t

            def __call__(self, output):
                p = torch.sigmoid(output) if output.shape[1] == 1 else torch.softmax(output, 1)
                return self.inner(p)

            def select(self, idx):
                return _Prob(self.inner.select(idx))

            def describe(self):
                return f"probability({self.inner.describe()})"

        return _Prob(inner)


def faithfulness_summary(f, inputs, maps, *, baselines=("zero", "noise"), steps: int = 10, grid: int = 8,
                         p: float = 0.2, n_subsets: int = 200, seed: int = 0, batch: int = 64) -> dict:
    """D and I per baseline, D − I, MuFidelity and G = I + F_μ − D (zero baseline) as per-image arrays."""
    from .faithfulness import deletion_insertion, mu_fidelity

    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(_np(inputs)).float()
    x = x[:, None] if x.ndim == 3 else x
    m = torch.as_tensor(_maps(maps), dtype=x.dtype)
    out = {}
    for bl in baselines:
        c = deletion_insertion(f, x, m, steps=steps, baseline=bl, batch=batch, seed=seed, reject_constant=True)
        out[f"deletion_{bl}"], out[f"insertion_{bl}"] = c.deletion, c.insertion
        out[f"d_minus_i_{bl}"] = c.deletion - c.insertion
        out[f"deletion_{bl}_norm"], out[f"insertion_{bl}_norm"] = c.deletion_normalised, c.insertion_normalised
    mu = mu_fidelity(f, x, m, grid=grid, p=p, n_subsets=n_subsets, seed=seed, batch=batch)
    out["mufidelity"] = mu
    b0 = baselines[0]
    out["global"] = out[f"insertion_{b0}"] + mu - out[f"deletion_{b0}"]
    return out


def evaluate_maps(maps, *, gt=None, classes=None, n_classes=None, tolerances=(0, 2, 4, 6), mode: str = "signed",
                  f=None, inputs=None, faithfulness: bool = True, complexity: bool = True, diff=None,
                  **faith_kwargs) -> dict[str, np.ndarray]:
    """Every per-image metric of one set of maps: ``{column: (B,) values}`` (NaN where undefined).

    ``gt`` enables the localisation columns (``pg{τ}``, ``pg{τ}_diff`` on the ``diff`` subset (B,) bool,
    ``energy``, ``rank``, ``auc``); ``f`` and ``inputs`` the faithfulness columns; complexity is always
    available.  A constant map (e.g. an ablation method that found nothing to ablate) gets NaN in the
    columns that reject it (rank, deletion/insertion, MuFidelity), *that image only*: the other images
    are scored as in a batch without it (each image's metrics and random streams are its own).
    """
    m = _maps(maps)
    b = m.shape[0]
    cols: dict[str, np.ndarray] = {}
    const_rows = _constant(m)
    mq = m  # what rank and faithfulness score: a placeholder ramp for constant maps, blanked afterwards
    if const_rows.any():
        mq = m.copy()
        mq[const_rows] = np.arange(m[0].size, dtype=m.dtype).reshape(m.shape[1:])
    if gt is not None:
        for t in tolerances:
            pg = pointing_game(m, gt, t, mode, classes, n_classes)
            cols[f"pg{t:g}"] = pg.values
            cols[f"pg{t:g}_random"] = pg.accept_fraction
            if diff is not None:
                cols[f"pg{t:g}_diff"] = np.where(_np(diff).astype(bool), pg.values, np.nan)
        cols["energy"] = energy_pointing(m, gt).values
        cols["rank"] = np.where(const_rows, np.nan, rank_accuracy(mq, gt, mode).values)
        cols["auc"] = roc_auc(m, gt, mode).values
    if f is not None and inputs is not None and faithfulness:
        for k, v in faithfulness_summary(f, inputs, mq, **faith_kwargs).items():
            v = np.asarray(v, dtype=np.float64)
            cols[k] = np.where(const_rows, np.nan, v) if v.shape == (b,) else v
    if complexity:
        cols["gini"] = gini_sparseness(m)
        cols["entropy"] = entropy_complexity(m)
        cols["hf"] = high_frequency_fraction(m)
        cols["laplacian"] = laplacian_hf(m)
        cols["zlib"] = compressed_size(m)
    return cols


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
#: columns of the summary table, in order (only those present are printed)
TABLE_COLUMNS = ("pg0", "pg4", "pg4_diff", "energy", "rank", "auc", "deletion_zero", "insertion_zero",
                 "deletion_noise", "insertion_noise", "mufidelity", "global", "gini", "hf", "zlib", "e_grid",
                 "out_of_support", "psf_mass", "enrichment", "r90", "sanity_rho", "seconds_per_image")


def summarise(cols: dict[str, np.ndarray]) -> dict[str, float]:
    """Means (NaNs dropped) of per-image columns; scalars pass through."""
    out = {}
    for k, v in cols.items():
        a = np.asarray(v, dtype=np.float64)
        out[k] = float(np.nanmean(a)) if a.size and np.isfinite(a).any() else math.nan
    return out


def format_table(rows: dict[str, dict[str, float]], columns: Sequence[str] = TABLE_COLUMNS, markdown: bool = False) -> str:
    """Methods × metrics table (reference rows are the ``ref:`` names)."""
    cols = [c for c in columns if any(c in r for r in rows.values())]
    head = ["map"] + cols
    lines = []
    body = [[name] + [("—" if not np.isfinite(r.get(c, math.nan)) else
                       (f"{r[c]:.0f}" if c == "zlib" else f"{r[c]:.3f}")) for c in cols] for name, r in rows.items()]
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        wd = [max(len(str(x)) for x in col) for col in zip(head, *body)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, wd)))
        lines += ["  ".join(x.ljust(w) for x, w in zip(b, wd)) for b in body]
    return "\n".join(lines)
