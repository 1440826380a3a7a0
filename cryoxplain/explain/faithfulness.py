"""Deletion and Insertion faithfulness curves (Petsiuk, Das, Saenko, "RISE", BMVC 2018).

Used by the ``lowpass_gradient`` plugin to choose the FORGrad cutoff as in Muzellec et al.
("Gradient strikes back", seed 002, §3.4): σ* maximises the mean of Insertion − Deletion.

For an attribution map φ of image x and the explained function f (a :class:`Target` of the
model's output, so this works for denoisers as well as classifiers):

* pixels are ordered by decreasing φ (most relevant first; ties keep raster order);
* step k = 0 … K replaces the first ⌊k·N/K⌋ pixels by the baseline (Deletion) or, starting from the
  baseline image, inserts them from x (Insertion), and records f;
* the score is the trapezoid area under the curve over the fraction of pixels changed, i.e.
  ``mean_k (s_k + s_{k+1}) / 2`` (Xplique's normalisation; K = 10 and baseline 0 by default).

Lower Deletion and higher Insertion are better.  The values are in the units of f (the paper uses
class probabilities; with a logit or a denoiser target they are logits or intensities).

The baseline ``b`` is a number, a ``(B, 1, H, W)`` tensor, or a name (:func:`make_baseline`:
``zero``, ``noise`` — seeded Gaussian noise with the mean/std of each image's corners —, ``blur``
(σ = 4 px, :func:`cryoxplain.imaging.filters.gaussian_blur`) or ``mean`` (the stack mean)); flat
baselines are off-manifold for cryo-EM, so reports give ``zero`` and ``noise``
(spec saliency_evaluation.md §5.1).  ``normalise=True`` adds D̃ = (D − f(b))/(f(x) − f(b)) (NaN and
flagged when f(x) ≈ f(b)).

Also here (spec §5.3, and the two metrics Captum ships, for cross-checks):

* :func:`mu_fidelity` — MuFidelity (Bhatt et al. 2020): correlation over random grid-cell subsets S
  of ``Σ_{i∈S} φ_i`` and ``f(x) − f(x_{S←b})``;
* :func:`infidelity` — Yeh et al. 2019: ``E_I[(Iᵀφ − (f(x) − f(x − I)))²]`` (Captum ``infidelity``);
* :func:`sensitivity_max` — ``max_δ ‖φ(x+δ) − φ(x)‖ / ‖φ(x)‖`` over uniform δ in an L∞ ball
  (Captum ``sensitivity_max``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

BASELINES = ("zero", "noise", "blur", "mean")


@dataclass
class FaithfulnessCurves:
    fractions: np.ndarray  # (K+1,)
    deletion_curve: np.ndarray  # (B, K+1)
    insertion_curve: np.ndarray  # (B, K+1)
    baseline: str = "0"  # how the baseline image was made (provenance)
    f_input: np.ndarray | None = None  # (B,) f(x)
    f_baseline: np.ndarray | None = None  # (B,) f(b)

    def _normalised(self, v: np.ndarray) -> np.ndarray:
        fx, fb = self.f_input, self.f_baseline
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (v - fb) / (fx - fb)
        return np.where(self.degenerate, np.nan, out)

    @property
    def degenerate(self) -> np.ndarray:
        """(B,) True where |f(x) − f(b)| < 1e-6·(|f(x)| + |f(b)|): the normalised scores are NaN."""
        fx, fb = self.f_input, self.f_baseline
        return np.abs(fx - fb) < 1e-6 * (np.abs(fx) + np.abs(fb))

    @property
    def deletion_normalised(self) -> np.ndarray:
        return self._normalised(self.deletion)

    @property
    def insertion_normalised(self) -> np.ndarray:
        return self._normalised(self.insertion)

    @property
    def deletion(self) -> np.ndarray:
        c = self.deletion_curve
        return ((c[:, 1:] + c[:, :-1]) / 2).mean(1)

    @property
    def insertion(self) -> np.ndarray:
        c = self.insertion_curve
        return ((c[:, 1:] + c[:, :-1]) / 2).mean(1)


def make_baseline(inputs: torch.Tensor, baseline="zero", *, seed: int = 0, index_offset: int = 0) -> torch.Tensor:
    """The baseline image ``(B, 1, H, W)`` for ``inputs``: a number, a tensor/array of that shape,
    or one of ``zero``, ``noise`` (Gaussian noise with the mean/std of each image's four
    ``H/8``-px corner squares, seeded per image with ``image_seed(seed, index_offset + i)``),
    ``blur`` (σ = 4 px) and ``mean`` (the mean image of the batch)."""
    x = inputs.detach()
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, str):
        if baseline == "zero":
            return torch.zeros_like(x)
        if baseline == "blur":
            from ..imaging.filters import gaussian_blur

            return gaussian_blur(x, 4.0)
        if baseline == "mean":
            return x.mean(0, keepdim=True).expand_as(x).clone()
        if baseline == "noise":
            from .base import image_seed

            b, _, h, w = x.shape
            c = max(1, min(h, w) // 8)
            corners = torch.cat([x[..., :c, :c], x[..., :c, -c:], x[..., -c:, :c], x[..., -c:, -c:]], -1)
            mu = corners.reshape(b, -1).double().mean(1)
            sd = corners.reshape(b, -1).double().std(1, unbiased=False)
            out = torch.empty_like(x)
            for i in range(b):
                g = torch.Generator().manual_seed(image_seed(seed, index_offset + i))
                z = torch.randn((1, h, w), generator=g, dtype=torch.float64)
                out[i] = (mu[i].cpu() + sd[i].cpu() * z).to(out)
            return out
        raise ParameterError(f"baseline={baseline!r} is not one of {', '.join(BASELINES)}, a number or an image batch")
    t = torch.as_tensor(np.asarray(baseline) if not isinstance(baseline, torch.Tensor) else baseline)
    t = t.to(device=x.device, dtype=x.dtype)
    if t.ndim == 3:
        t = t[:, None]
    if t.shape != x.shape:
        raise ShapeError(f"baseline must be {tuple(x.shape)} like the inputs, got {tuple(t.shape)}")
    return t


def _describe_baseline(baseline) -> str:
    if isinstance(baseline, str):
        return baseline
    if isinstance(baseline, (int, float)):
        return f"{float(baseline):g}"
    return "image"


def _check_orderable(m: torch.Tensor, what: str) -> None:
    flat = m.reshape(m.shape[0], -1)
    const = (flat == flat[:, :1]).all(1)
    if bool(const.any()):
        i = int(torch.nonzero(const)[0, 0])
        raise ParameterError(f"{what}: map {i} is constant, so the pixel ordering is undefined")


@torch.no_grad()
def deletion_insertion(f, inputs: torch.Tensor, maps, steps: int = 10, baseline=0.0,
                       batch: int = 64, normalise: bool = False, *, seed: int = 0,
                       reject_constant: bool = False) -> FaithfulnessCurves:
    """Deletion and Insertion curves of ``maps`` (B, H, W) for images ``inputs`` (B, 1, H, W).

    ``f`` is called as ``f(points, idx)`` with ``idx`` the image each row belongs to (see
    :func:`cryoxplain.explain.base.explained_function`).  ``baseline``: see :func:`make_baseline`
    (``seed`` seeds the ``noise`` baseline).  ``f(x)`` and ``f(b)`` are always recorded
    (``f_input``, ``f_baseline``) so that ``deletion_normalised`` / ``insertion_normalised`` are
    available; ``normalise`` is accepted for the spec's signature and changes nothing else.
    ``reject_constant=True`` raises :class:`ParameterError` for a constant map (the evaluation does;
    the FORGrad σ search keeps the old tie rule).
    """
    x = inputs.detach()
    m = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).to(x.device)
    b, _, h, w = x.shape
    if m.shape != (b, h, w):
        raise ShapeError(f"maps must be {(b, h, w)}, got {tuple(m.shape)}")
    if reject_constant:
        _check_orderable(m, "deletion_insertion")
    n = h * w
    order = torch.argsort(-m.reshape(b, n).double(), dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=x.device).expand(b, n))
    counts = [(k * n) // steps for k in range(steps + 1)]
    flat = x.reshape(b, n)
    base = make_baseline(x, baseline, seed=seed).reshape(b, n)
    dele, ins = [], []
    for c in counts:
        top = rank < c  # (B, N) the first c pixels of each image's order
        dele.append(torch.where(top, base, flat))
        ins.append(torch.where(top, flat, base))
    pts = torch.stack(dele + ins, 1).reshape(-1, 1, h, w)  # (B * 2(K+1), 1, H, W)
    idx = torch.arange(b, device=x.device).repeat_interleave(2 * (steps + 1))
    vals = torch.cat([f(pts[i:i + batch], idx[i:i + batch]) for i in range(0, pts.shape[0], batch)])
    vals = vals.double().reshape(b, 2, steps + 1).cpu().numpy()
    # deletion step 0 is x itself, insertion step 0 the baseline
    return FaithfulnessCurves(np.asarray(counts) / n, vals[:, 0], vals[:, 1], _describe_baseline(baseline),
                              vals[:, 0, 0].copy(), vals[:, 1, 0].copy())


def _round_sig(v: np.ndarray, digits: int = 12) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    out = np.zeros_like(v)
    nz = v != 0
    mag = np.floor(np.log10(np.abs(v[nz])))
    scale = 10.0 ** (digits - 1 - mag)
    out[nz] = np.round(v[nz] * scale) / scale
    return out


def _corr(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    from scipy.stats import rankdata

    if kind == "spearman":
        a, b = rankdata(_round_sig(a)), rankdata(_round_sig(b))
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return 0.0 if den == 0 else float((a * b).sum() / den)


@torch.no_grad()
def mu_fidelity(f, inputs: torch.Tensor, maps, grid: int = 8, p: float = 0.2, n_subsets: int = 200,
                baseline="zero", corr: str = "spearman", seed: int = 0, batch: int = 64,
                index_offset: int = 0, round_digits: int | None = 12) -> np.ndarray:
    """MuFidelity per image (B,) (spec §5.3): the correlation over ``n_subsets`` random subsets S —
    cells of a ``grid``×``grid`` partition, each removed with probability ``p`` — of
    ``Σ_{i∈S} φ_i`` and ``f(x) − f(x_{S←b})``.

    Subsets are drawn per image from ``image_seed(seed, index_offset + i)`` (independent of batching);
    ``corr``: ``spearman`` (Xplique; both vectors rounded to ``round_digits`` significant digits first,
    so exact ties stay ties) or ``pearson`` (Quantus); a constant vector gives 0 (Xplique).
    """
    from .base import image_seed

    if corr not in ("spearman", "pearson"):
        raise ParameterError(f"corr={corr!r} must be 'spearman' or 'pearson'")
    if not 0 < p < 1:
        raise ParameterError(f"p={p} must be in (0, 1)")
    x = inputs.detach()
    bsz, _, h, w = x.shape
    m = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).to(x.device).double()
    if m.shape != (bsz, h, w):
        raise ShapeError(f"maps must be {(bsz, h, w)}, got {tuple(m.shape)}")
    _check_orderable(m, "mu_fidelity")
    if grid < 1 or grid > min(h, w):
        raise ParameterError(f"grid={grid} must be in 1…{min(h, w)}")
    base = make_baseline(x, baseline, seed=seed, index_offset=index_offset)
    cy = (np.arange(h) * grid) // h  # cell row of each pixel
    cx = (np.arange(w) * grid) // w
    cell = torch.as_tensor(cy[:, None] * grid + cx[None, :], device=x.device)
    fx = torch.cat([f(x[i:i + batch], torch.arange(i, min(i + batch, bsz), device=x.device))
                    for i in range(0, bsz, batch)]).double()
    out = np.zeros(bsz)
    for i in range(bsz):
        rng = np.random.default_rng(image_seed(seed, index_offset + i))
        sel = torch.as_tensor(rng.random((n_subsets, grid * grid)) < p, device=x.device)  # (S, g²)
        masks = sel[:, cell]  # (S, H, W)
        attr = (masks.double() * m[i]).sum((1, 2)).cpu().numpy()
        pts = torch.where(masks[:, None], base[i:i + 1], x[i:i + 1])
        idx = torch.full((n_subsets,), i, device=x.device, dtype=torch.long)
        vals = torch.cat([f(pts[j:j + batch], idx[j:j + batch]) for j in range(0, n_subsets, batch)]).double()
        drop = (fx[i] - vals).cpu().numpy()
        if corr == "spearman" and round_digits is None:
            from scipy.stats import rankdata

            a, b_ = rankdata(attr), rankdata(drop)
            out[i] = _corr(a, b_, "pearson")
        else:
            out[i] = _corr(attr, drop, corr)
    return out


def _perturbations(x: torch.Tensor, n: int, scale: float, seed: int, index_offset: int) -> torch.Tensor:
    from .base import image_seed

    b = x.shape[0]
    out = torch.empty((b, n) + tuple(x.shape[1:]), dtype=x.dtype)
    for i in range(b):
        g = torch.Generator().manual_seed(image_seed(seed, index_offset + i))
        out[i] = scale * torch.randn((n,) + tuple(x.shape[1:]), generator=g, dtype=torch.float64).to(x.dtype)
    return out.to(x.device)


@torch.no_grad()
def infidelity(f, inputs: torch.Tensor, maps, *, perturbations: torch.Tensor | None = None, n_perturb: int = 10,
               scale: float = 0.1, seed: int = 0, index_offset: int = 0, batch: int = 64) -> np.ndarray:
    """Infidelity (Yeh et al. 2019) per image: ``mean_j (Σ I_j⊙φ − (f(x) − f(x − I_j)))²``.

    ``perturbations``: ``(B, n, 1, H, W)`` noise I (default: ``n_perturb`` Gaussian draws of std
    ``scale``, seeded per image).  This is Captum's ``infidelity`` with ``normalize=False``; the
    test suite cross-checks the two on the same perturbations.
    """
    x = inputs.detach()
    b = x.shape[0]
    m = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).to(x.device).to(x.dtype)
    if m.shape != (b,) + tuple(x.shape[2:]):
        raise ShapeError(f"maps must be {(b,) + tuple(x.shape[2:])}, got {tuple(m.shape)}")
    pert = _perturbations(x, n_perturb, scale, seed, index_offset) if perturbations is None else perturbations.to(x)
    n = pert.shape[1]
    pts = (x[:, None] - pert).reshape((-1,) + tuple(x.shape[1:]))
    idx = torch.arange(b, device=x.device).repeat_interleave(n)
    fp = torch.cat([f(pts[i:i + batch], idx[i:i + batch]) for i in range(0, pts.shape[0], batch)]).double().reshape(b, n)
    fx = torch.cat([f(x[i:i + batch], torch.arange(i, min(i + batch, b), device=x.device))
                    for i in range(0, b, batch)]).double()
    dot = (pert[:, :, 0].double() * m[:, None].double()).sum((-2, -1))
    return ((dot - (fx[:, None] - fp)) ** 2).mean(1).cpu().numpy()


def sensitivity_max(explain, inputs: torch.Tensor, *, radius: float = 0.02, n_perturb: int = 10,
                    perturbations: torch.Tensor | None = None, seed: int = 0, index_offset: int = 0) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019) per image: ``max_j ‖φ(x + δ_j) − φ(x)‖_F / ‖φ(x)‖_F``.

    ``explain(images (B,1,H,W)) -> maps (B,H,W)``; ``δ_j`` uniform in ``[−radius, radius]`` per pixel
    (seeded per image), or the given ``perturbations`` ``(B, n, 1, H, W)``.  Captum's
    ``sensitivity_max`` with its default perturbation and Frobenius norm (a zero ‖φ(x)‖ counts as 1).
    """
    from .base import image_seed

    x = inputs.detach()
    b = x.shape[0]
    if perturbations is None:
        pert = torch.empty((b, n_perturb) + tuple(x.shape[1:]), dtype=torch.float64)
        for i in range(b):
            g = torch.Generator().manual_seed(image_seed(seed, index_offset + i))
            pert[i] = (torch.rand((n_perturb,) + tuple(x.shape[1:]), generator=g, dtype=torch.float64) * 2 - 1) * radius
        pert = pert.to(device=x.device, dtype=x.dtype)
    else:
        pert = perturbations.to(x)
    n = pert.shape[1]
    a0 = torch.as_tensor(np.asarray(explain(x))).double().reshape(b, -1)
    n0 = a0.norm(dim=1)
    n0 = torch.where(n0 == 0, torch.ones_like(n0), n0)
    out = torch.zeros(b, dtype=torch.float64)
    for j in range(n):
        aj = torch.as_tensor(np.asarray(explain(x + pert[:, j]))).double().reshape(b, -1)
        out = torch.maximum(out, (aj - a0).norm(dim=1) / n0)
    return out.numpy()
