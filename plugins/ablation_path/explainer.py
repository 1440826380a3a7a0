"""The ``ablation_path`` explainer plugin (Sagemüller & Verdier, "Ablation Path Saliency").

See ``docs/ablation_paths.md`` for the method, the objectives, every default and the errata of
the thesis we fixed.
"""
from __future__ import annotations

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.base import Attribution, Explainer, Param, Target

from cryoxplain.imaging.normalize import looks_normalized

from .baselines import BASELINES, make_baselines, to_tensor
from .heatmaps import REDUCERS, apply_window, reduce_path, transition_index, with_end_points
from .optimize import OBJECTIVES, PathConfig, optimise_paths, path_values_and_grads, upsample
from .projection import t_grid


def _class_indices(target: Target, output: torch.Tensor, values: torch.Tensor) -> torch.Tensor | None:
    """Per-image class index of a logit target, or None when the target is not one logit.

    An explicit integer ``class_index`` attribute of the target wins; otherwise, for a
    ``(B, K)`` model output, the column whose entry equals the target value exactly.
    """
    if output.ndim != 2:
        return None
    B, K = output.shape
    ci = None
    for attr in ("class_index", "k", "classes", "label"):
        ci = getattr(target, attr, None)
        if ci is not None:
            break
    if isinstance(ci, (int, np.integer)) and 0 <= int(ci) < K:
        return torch.full((B,), int(ci), dtype=torch.long, device=output.device)
    if isinstance(ci, (list, tuple, np.ndarray, torch.Tensor)) and len(ci) == B:
        return torch.as_tensor(np.asarray(ci), dtype=torch.long, device=output.device)
    eq = output == values.view(-1, 1)
    if bool((eq.sum(1) == 1).all()):
        return eq.to(torch.int64).argmax(1)
    return None


class AblationPath(Explainer):
    """Optimised ablation paths and their heatmaps.

    For each image an *ablation path* – a family of masks φ(t), t ∈ [0, 1], monotone per pixel,
    from all-zeros (the particle) to all-ones (the baseline) with mean(φ(t)) = t – is optimised by
    projected gradient ascent so that the explained score F along the interpolated images
    x(t) = x + φ(t)(x_BL − x) is retained (``retain``), dissipated (``dissipate``), both at once
    (``contrastive``) or, with a twin path, straddles the decision boundary (``straddle``).
    The map is a reduction of the path (``reducer``, higher = more salient); the path itself, the
    score curve and the t grid are in ``extras`` and :meth:`write_html` renders the interactive
    viewer.  For a classifier logit target F is the class's softmax probability (``score=auto``).
    """

    name = "ablation_path"
    reference = ("J. Sagemüller, O. Verdier: Ablation Path Saliency, xAI 2023, arXiv:2209.12459; "
                 "J. Sagemüller, PhD thesis (2024), Part II ch. 2")
    params = (
        Param("objective", str, "contrastive", "path score to maximise: retain (P↑, insertion AUC), "
              "dissipate (P↓, deletion AUC), contrastive (P↕) or straddle (P↑↓, twin paths + pinching)",
              choices=OBJECTIVES),
        Param("n_t", int, 14, "interior time samples of the path (thesis: ≥10, 14 used)", min=2),
        Param("mask_size", int, 64, "mask grid along the longer image side (capped at the image size)", min=2),
        Param("blur_sigma", float, 6.0, "σ of the Gaussian regularisation, image pixels (thesis: >4, best 6–7)", min=0.0),
        Param("regularise", str, "state", "blur the path after each step (state, thesis) or only the step (update)",
              choices=("state", "update")),
        Param("saturation", float, -1.0, "ζ_sat of the tanh saturation after each step (0 = off); -1 = auto: "
              "0 for contrastive (the thesis' best contrastive setting; Table 2.5: 0.8 lowers its scores), "
              "0.8 otherwise", min=-1.0),
        Param("pinch", float, 0.1, "ζ_pinch of the boundary pinching (straddle only)", min=0.0, max=1.0),
        Param("step_sup", float, 0.5, "L∞ norm of each (mass-neutral) gradient step", min=0.0),
        Param("target_saturation", float, 0.8, "stop when the path saturation (Eq. 2.31) exceeds this", min=0.0, max=1.0),
        Param("min_iters", int, 6, "minimum number of steps", min=0),
        Param("max_iters", int, 100, "iteration cap (a path stopped here is flagged not converged)", min=0),
        Param("monotonise", str, "exact", "per-pixel L∞ monotonisation: exact (thesis Algorithm 1, numba) or "
              "fast (cummax/cummin, also L∞-optimal, less local)", choices=("exact", "fast")),
        Param("baseline", str, "blur", "x_BL: blur (smallest σ changing the class), noise (noise-only image with "
              "the particle background's statistics), mean (flat at the particle's mean), mean_image (mean "
              "image of baseline_path), zero, file", choices=BASELINES),
        Param("baseline_sigma", float, 0.0, "fixed blur σ in pixels (0 = search the smallest flipping σ)", min=0.0),
        Param("baseline_sigma_min", float, 4.0, "smallest blur σ searched", min=0.0),
        Param("baseline_sigma_max", float, 100.0, "largest blur σ searched", min=0.0),
        Param("baseline_path", str, "", "MRC image/stack for baseline=file or mean_image"),
        Param("baseline_normalize", str, "auto", "normalise the baseline_path images per image, (x−μ)/σ, like "
              "the inputs; auto = when every input is normalised", choices=("auto", "on", "off")),
        Param("score", str, "auto", "F: probability (softmax of a logit target), raw (the target value) or auto",
              choices=("auto", "probability", "raw")),
        Param("reducer", str, "auto", "heatmap: clt (class transition), avg, iwa (influence-weighted), cav "
              "(straddle); auto = cav for straddle else clt", choices=REDUCERS),
        Param("window", str, "auto", "sin-window post-processing (Eq. 2.37); auto = on for single-path clt",
              choices=("auto", "on", "off")),
        Param("internal_batch_size", int, 64, "images per forward/backward pass", min=1),
        Param("seed", int, 0, "seed of the noise baseline (per image: image_seed(seed, index))"),
        Param("border", str, "reflect", "boundary of the blurred baseline and of the mask regulariser: reflect "
              "(the thesis's; symmetric about the pixel-edge centre (N−1)/2) or periodic (with the sin window centred on "
              "N//2; commutes with the "
              "package's quarter turn about N//2: exact explanation equivariance on the grid of a C4 model; "
              "needs mask_size ≥ the image size)", choices=("reflect", "periodic")),
    )
    renamed = {"eval_batch": "internal_batch_size"}

    def validate(self) -> None:
        if self.reducer == "cav" and self.objective != "straddle":
            raise ParameterError("reducer=cav needs objective=straddle (it contrasts the twin paths)")
        if self.baseline_sigma_max < self.baseline_sigma_min:
            raise ParameterError("baseline_sigma_max must be ≥ baseline_sigma_min")
        if self.baseline in ("file", "mean_image") and not self.baseline_path:
            raise ParameterError(f"baseline={self.baseline} needs baseline_path=FILE.mrc")

    def resolved_saturation(self) -> float:
        """``saturation``, with -1 (auto) resolved: 0 for the contrastive objective, else 0.8."""
        s = float(self.config["saturation"])
        if s >= 0:
            return s
        return 0.0 if self.config["objective"] == "contrastive" else 0.8

    def path_config(self) -> PathConfig:
        c = self.config
        return PathConfig(objective=c["objective"], n_t=c["n_t"], mask_size=c["mask_size"],
                          blur_sigma=c["blur_sigma"], regularise=c["regularise"], saturation=self.resolved_saturation(),
                          pinch=c["pinch"], step_sup=c["step_sup"], target_saturation=c["target_saturation"],
                          min_iters=c["min_iters"], max_iters=c["max_iters"], monotonise=c["monotonise"],
                          eval_batch=c["internal_batch_size"],
                          border="mirror" if c["border"] == "reflect" else "periodic")

    # ------------------------------------------------------------------------------------------
    def make_score(self, model, target: Target, inputs: torch.Tensor):
        """``(score(X, idx), classes or None, predict or None)`` for this model and target (inputs
        checked by the template, :func:`cryoxplain.explain.base.check_inputs`)."""
        from cryoxplain.explain.base import check_inputs

        inputs = check_inputs(model, inputs)
        with torch.no_grad():
            out0 = model(inputs)
            target.check(tuple(out0.shape))
            t0 = target(out0)
        if t0.ndim != 1 or t0.shape[0] != inputs.shape[0]:
            raise ParameterError(f"target {target.describe()} returned shape {tuple(t0.shape)}, expected ({inputs.shape[0]},)")
        classes = _class_indices(target, out0, t0) if self.score != "raw" else None
        if self.score == "probability" and classes is None:
            raise ParameterError("score=probability needs a classifier whose target is one class logit")
        predict = None
        if out0.ndim == 2 and out0.shape[1] > 1:
            def predict(imgs: np.ndarray) -> np.ndarray:
                x = torch.as_tensor(np.asarray(imgs, np.float32), device=inputs.device).unsqueeze(1)
                with torch.no_grad():
                    res = [model(x[s:s + self.internal_batch_size]).argmax(1) for s in range(0, len(x), self.internal_batch_size)]
                return torch.cat(res).cpu().numpy()

        if classes is not None:
            def score(X, idx):
                return torch.softmax(model(X), dim=1).gather(1, classes[idx].view(-1, 1)).squeeze(1)
        else:
            def score(X, idx):
                t = target.select(idx) if hasattr(target, "select") else target
                return t(model(X))
        return score, classes, predict

    def _attribute(self, f, inputs: torch.Tensor, ctx) -> Attribution:
        model, target = ctx.model, ctx.target      # target bound by the template ("predicted" fixed)
        score, classes, predict = self.make_score(model, target, inputs)
        B, _, H, W = inputs.shape
        if self.border == "periodic" and self.mask_size < max(H, W):
            raise ParameterError(f"ablation_path: border=periodic needs mask_size ≥ the image size ({max(H, W)}), "
                                 f"got {self.mask_size}: the bilinear mask resize is symmetric about (N−1)/2, not N//2")
        x_np = inputs[:, 0].cpu().numpy().astype(np.float32)
        x_bl_np, bl_sigma, flipped = make_baselines(
            self.baseline, x_np, predict=predict, sigma=self.baseline_sigma, sigma_min=self.baseline_sigma_min,
            sigma_max=self.baseline_sigma_max, path=self.baseline_path, generators=ctx.generators(inputs),
            normalize_file=self.baseline_normalize == "on" or (self.baseline_normalize == "auto"
                                                               and looks_normalized(x_np)),
            border=self.border)
        x_bl = to_tensor(x_bl_np, inputs).unsqueeze(1)
        cfg = self.path_config()
        res = optimise_paths(score, inputs, x_bl, cfg)
        return self.finish(model, target, inputs, x_bl, res, score, classes, bl_sigma, flipped)

    # ------------------------------------------------------------------------------------------
    def curves(self, score, inputs, x_bl, phi: np.ndarray, classes, model):
        """F along the full path (n+2 samples incl. end points) and, for classifiers, 'class on top'."""
        B = phi.shape[0]
        full = np.stack([with_end_points(p) for p in phi])                   # (B, T, h, w)
        ph = torch.as_tensor(full, dtype=torch.float64, device=inputs.device)
        vals, _ = path_values_and_grads(score, inputs, x_bl, ph, self.internal_batch_size, need_grad=False)
        top = None
        if classes is not None:
            T = full.shape[1]
            idx = torch.arange(B, device=inputs.device).repeat_interleave(T)
            flat = ph.reshape(B * T, *ph.shape[2:])
            tops = []
            with torch.no_grad():
                for s in range(0, B * T, self.internal_batch_size):
                    ii = idx[s:s + self.internal_batch_size]
                    m = upsample(flat[s:s + self.internal_batch_size].to(inputs.dtype), tuple(inputs.shape[-2:])).unsqueeze(1)
                    x = inputs[ii] + m * (x_bl[ii] - inputs[ii])
                    tops.append(model(x).argmax(1) == classes[ii])
            top = torch.cat(tops).reshape(B, T).cpu().numpy()
        return full, vals.cpu().numpy(), top

    def finish(self, model, target, inputs, x_bl, res, score, classes, bl_sigma, flipped) -> Attribution:
        B, _, H, W = inputs.shape
        n = self.n_t
        full, curve, top = self.curves(score, inputs, x_bl, res.phi, classes, model)
        curve_c = None
        full_d = None
        if self.objective == "straddle":
            full_d, curve_c, _ = self.curves(score, inputs, x_bl, res.phi_down, classes, model)
        else:
            comp = 1.0 - res.phi[:, ::-1]            # t ↦ 1 − φ(1 − t): the complementary path
            _, curve_c, _ = self.curves(score, inputs, x_bl, np.ascontiguousarray(comp), classes, model)
        reducer = self.reducer if self.reducer != "auto" else ("cav" if self.objective == "straddle" else "clt")
        use_window = self.window == "on" or (self.window == "auto" and reducer == "clt" and self.objective != "straddle")
        maps, k_clt, crossing = [], np.zeros(B, np.int64), np.zeros(B, bool)
        for b in range(B):
            k_clt[b], crossing[b] = transition_index(curve[b], None if top is None else top[b])
            theta = reduce_path(reducer, res.phi[b], curve[b], int(k_clt[b]),
                                None if res.phi_down is None else res.phi_down[b])
            theta = upsample(torch.as_tensor(theta[None], dtype=torch.float64), (H, W))[0].numpy()
            maps.append(apply_window(theta, "box" if self.border == "periodic" else "pixel-edge") if use_window else theta)
        tg = np.tile(np.concatenate([[0.0], t_grid(n), [1.0]]), (B, 1))
        extras = {
            "path": full.astype(np.float32),                    # (B, T, h_m, w_m), T = n_t + 2
            "t": tg,                                             # (B, T)
            "score_curve": curve,                                # (B, T): F(x(t))
            "score_curve_complement": curve_c,                   # (B, T): F along 1−φ(1−t) / φ↓
            "baseline": x_bl[:, 0].cpu().numpy(),                # (B, H, W)
            "objective_trace": res.objective_trace,              # (B, max_iters+1), NaN-padded
            "objective_initial": res.objective_trace[:, 0],
            "objective_final": res.objective_trace[np.arange(B), res.iterations],
            "saturation": res.saturation,
            "iterations": res.iterations,
            "converged": res.converged,
            "t_transition": tg[np.arange(B), k_clt],
            "has_transition": crossing,
            "baseline_sigma": bl_sigma,
            "baseline_changes_class": flipped,
            "score_is_probability": np.full(B, classes is not None),
        }
        if full_d is not None:
            extras["path_down"] = full_d.astype(np.float32)
        if top is not None:
            extras["class_on_top"] = top
        return self.make_attribution(np.stack(maps).astype(np.float32), target, model, **extras)

    # ------------------------------------------------------------------------------------------
    def write_html(self, attribution: Attribution, inputs, path) -> None:
        """Write the interactive path viewer (one self-contained HTML file) to ``path``."""
        from .viewer import write_viewer

        write_viewer(attribution, inputs, path)
