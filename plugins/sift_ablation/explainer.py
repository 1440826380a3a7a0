"""The ``sift_ablation`` explainer plugin (Sagemüller thesis Part III ch. 4; spec ``sift_ablation.md``).

Ablation paths whose masks act on a per-particle basis of multiscale SIFT features: each image is
split exactly into DoG bands, keypoints are detected in the band stack, scale-space Voronoi cells
(smoothed, soft-truncated, renormalised) assign the band content to keypoints, and the decoder
``D(g) = c + Z̄·g`` turns feature gains into images (``D(1) = x``; ``D(0) = c``, the implicit
baseline).  The path φ(t) ∈ [0,1]^K is optimised with the pixel plugin's machinery on
``x(t) = D(1 − φ(t))``.  See ``docs/sift_ablation.md``.
"""
from __future__ import annotations

import numpy as np
import torch

from cryoxplain.errors import ParameterError
from cryoxplain.explain.base import Attribution, Explainer, Param
from cryoxplain.explain.paths import quadrature
from cryoxplain_plugins.ablation_path.explainer import AblationPath
from cryoxplain_plugins.ablation_path.heatmaps import REDUCERS, reduce_path, transition_index, with_end_points
from cryoxplain_plugins.ablation_path.optimize import OBJECTIVES, PathConfig
from cryoxplain_plugins.ablation_path.projection import t_grid

from .decomposition import BasisConfig, build_decoder, decode_batch, pad_decoders
from .pathspace import feature_values_and_grads, mass_weights, optimise_feature_paths, sat_max
from .render import HEATMAPS, contrast_map, magnitude_map, voronoi_map

__all__ = ["SiftAblation"]

INTERVENTIONS = ("path", "occlusion")


def _pad(a: np.ndarray, size: int, axis: int = 1, fill=np.nan) -> np.ndarray:
    a = np.asarray(a, np.float64)
    shape = list(a.shape)
    shape[axis] = size - shape[axis]
    return np.concatenate([a, np.full(shape, fill)], axis=axis) if shape[axis] > 0 else a


class SiftAblation(Explainer):
    """Ablation paths over SIFT feature masks, with per-feature attributions and heatmaps.

    For every image: exact DoG bands, keypoints (noise-relative contrast, edge test), the feature
    decoder D(g) = c + Z̄·g, then an ablation path φ(t) over the K features (same objectives,
    saturation, pinching and stopping rule as ``ablation_path``, no spatial blur) on the images
    x(t) = D(1 − φ(t)).  The map renders the reduced feature attribution (``heatmap``); the
    feature attributions, keypoints, path and the feature-space IG by-product are in ``extras``.
    """

    name = "sift_ablation"
    reference = ("J. Sagemüller, PhD thesis (2024), Part III ch. 4 (SIFT-based ablation); "
                 "D. Lowe, IJCV 2004; M. Brown, D. Lowe, BMVC 2002")
    params = (
        Param("sigma_min", float, 1.125, "first σ-grid edge e_1, pixels", min=1e-6),
        Param("octave_steps", int, 4, "bands per octave ρ", min=1),
        Param("sigma_max", float, 0.0, "lower edge R of the last band, pixels (0 = min(H, W)/4)", min=0.0),
        Param("keep_below", float, 1.6, "bands with upper edge ≤ this (pixels) are fixed: noise baseline (0 = thesis)", min=0.0),
        Param("keep_above", float, 0.0, "bands with lower edge ≥ this (pixels) are fixed: blur baseline (0 = off)", min=0.0),
        Param("noise_std", str, "auto", "pixel noise std for the keypoint contrast: auto (box corners) or a number"),
        Param("contrast", float, 4.0, "keypoint contrast threshold, multiples of the band's noise std", min=0.0),
        Param("contrast_floor", float, 0.03, "relative contrast floor (fraction of the largest band response)", min=0.0, max=1.0),
        Param("edge_ratio", float, 10.0, "edge test principal-curvature ratio r", min=1.0 + 1e-9),
        Param("max_keypoints", int, 256, "keypoint cap (the largest |D̂| are kept)", min=1),
        Param("eta", float, 4.0, "η: weight of σ in the scale-space Voronoi distance", min=1e-9),
        Param("cells", str, "smooth", "feature cells: smooth (thesis Eq. 4.27) or hard (figures/tests)",
              choices=("smooth", "hard")),
        Param("sparsity", float, 0.05, "soft truncation threshold s of the smoothed cells (< 0.5; ≤ 0.1 safe)", min=0.0),
        Param("mass_guard", float, 1e-3, "guard of the mass renormalisation", min=1e-12),
        Param("border", str, "reflect", "Gaussian boundary: reflect (Neumann, spec) or periodic (commutes with "
              "rot90/mirror about N//2 on every box)", choices=("reflect", "periodic")),
        Param("pyramid", str, "none", "resolution of the feature cells: none (one exact level) or thesis "
              "(Table 4.1: σ ≥ 4.5 px at 1/2, ≥ 9 px at 1/4 resolution)", choices=("none", "thesis")),
        Param("pyramid_fix", bool, True, "pyramid=thesis: put the resampling loss x − D(1) back into the "
              "full-resolution level (exact D(1) = x; the thesis does not)"),
        Param("intervention", str, "path", "path (ablation path) or occlusion (single-feature deletion)",
              choices=INTERVENTIONS),
        Param("objective", str, "straddle", "path score: retain, dissipate, contrastive or straddle (thesis Table 4.2)",
              choices=OBJECTIVES),
        Param("n_t", int, 14, "interior time samples of the path", min=2),
        Param("saturation", float, 0.8, "ζ_sat of the tanh saturation after each step (0 = off)", min=0.0),
        Param("pinch", float, 0.1, "ζ_pinch of the boundary pinching (straddle only)", min=0.0, max=1.0),
        Param("step_sup", float, 0.5, "L∞ norm of each mass-neutral gradient step", min=0.0),
        Param("target_saturation", float, 0.8, "stop when the path saturation exceeds min(this, sat_max(K) − 0.02)",
              min=0.0, max=1.0),
        Param("min_iters", int, 6, "minimum number of steps", min=0),
        Param("max_iters", int, 100, "iteration cap (a path stopped here is flagged not converged)", min=0),
        Param("monotonise", str, "exact", "monotonisation: exact (Algorithm 1) or fast", choices=("exact", "fast")),
        Param("metric", str, "euclidean", "mass metric of the feature path: euclidean (ω = 1/K) or l2 "
              "(ω ∝ ‖Z̄_i‖₂, thesis Eq. 4.45)", choices=("euclidean", "l2")),
        Param("score", str, "auto", "F: probability (softmax of a logit target), raw or auto",
              choices=("auto", "probability", "raw")),
        Param("reducer", str, "auto", "feature reduction of the path: clt, avg, iwa, cav; auto = cav for straddle "
              "else clt", choices=REDUCERS),
        Param("heatmap", str, "magnitude", "map rendering: magnitude (Σ a_i|Z̄_i|), voronoi (cells) or contrast",
              choices=HEATMAPS),
        Param("voronoi_cells", str, "smooth", "cells of the voronoi rendering: smooth or hard", choices=("smooth", "hard")),
        Param("contrast_sigma_hp", float, 0.0, "σ_HP of the contrast rendering, pixels (0 = N/50)", min=0.0),
        Param("contrast_sigma_lp", float, 0.0, "σ_LP of the contrast rendering, pixels (0 = 1.6·σ_HP)", min=0.0),
        Param("feature_ig_rule", str, "path", "feature IG: path (the n_t affine-start gradients), gauss_legendre, off",
              choices=("path", "gauss_legendre", "off")),
        Param("feature_ig_steps", int, 32, "nodes of feature_ig_rule=gauss_legendre", min=1),
        Param("occlusion_extra", bool, False, "also store single-feature deletion/insertion in extras"),
        Param("eval_batch", int, 64, "images per forward/backward pass", min=1),
    )

    def validate(self) -> None:
        if self.reducer == "cav" and self.objective != "straddle":
            raise ParameterError("reducer=cav needs objective=straddle (it contrasts the twin paths)")
        if self.heatmap == "contrast" and self.reducer == "iwa":
            raise ParameterError("heatmap=contrast has no image form for reducer=iwa; use clt, avg or cav")
        if self.heatmap == "contrast" and self.intervention != "path":
            raise ParameterError("heatmap=contrast renders path images; it needs intervention=path")
        if 0 < self.keep_above <= self.keep_below:
            raise ParameterError(f"keep_above ({self.keep_above}) must be 0 (off) or > keep_below ({self.keep_below})")
        if self.sparsity >= 0.5:
            raise ParameterError(f"sparsity must be < 0.5, got {self.sparsity}")
        if self.noise_std != "auto":
            try:
                v = float(self.noise_std)
            except ValueError:
                raise ParameterError(f"noise_std must be 'auto' or a number ≥ 0, got {self.noise_std!r}") from None
            if not v >= 0:
                raise ParameterError(f"noise_std must be ≥ 0, got {v}")

    # ------------------------------------------------------------------------------------------
    def basis_config(self) -> BasisConfig:
        c = self.config
        return BasisConfig(sigma_min=c["sigma_min"], octave_steps=c["octave_steps"], sigma_max=c["sigma_max"],
                           keep_below=c["keep_below"], keep_above=c["keep_above"],
                           noise_std=None if c["noise_std"] == "auto" else float(c["noise_std"]),
                           contrast=c["contrast"], contrast_floor=c["contrast_floor"], edge_ratio=c["edge_ratio"],
                           max_keypoints=c["max_keypoints"], eta=c["eta"], cells=c["cells"],
                           sparsity=c["sparsity"], mass_guard=c["mass_guard"], border=c["border"],
                           pyramid=c["pyramid"], pyramid_fix=c["pyramid_fix"])

    def path_config(self) -> PathConfig:
        c = self.config
        return PathConfig(objective=c["objective"], n_t=c["n_t"], blur_sigma=0.0, saturation=c["saturation"],
                          pinch=c["pinch"], step_sup=c["step_sup"], target_saturation=c["target_saturation"],
                          min_iters=c["min_iters"], max_iters=c["max_iters"], monotonise=c["monotonise"],
                          eval_batch=c["eval_batch"])

    def decoders(self, inputs: torch.Tensor) -> list:
        """The feature basis of every image of ``inputs (B, 1, H, W)`` (float64 builds)."""
        cfg = self.basis_config()
        return [build_decoder(inputs[b, 0], cfg) for b in range(inputs.shape[0])]

    # ------------------------------------------------------------------------------------------
    def _by_k(self, nf: np.ndarray):
        for K in sorted(set(int(k) for k in nf)):
            yield K, np.nonzero(nf == K)[0]

    def _values(self, score, Z, c, nf, phi: np.ndarray, need_grad=False):
        """F(D(1 − φ)) (and ∂F/∂φ) for per-image feature masks ``phi (B, m, K_max, 1)``."""
        B, m = phi.shape[:2]
        vals = np.zeros((B, m))
        grads = np.zeros(phi.shape) if need_grad else None
        for K, rows in self._by_k(nf):
            ph = torch.as_tensor(np.ascontiguousarray(phi[rows][:, :, :K]), dtype=torch.float64, device=Z.device)
            v, g = feature_values_and_grads(score, Z, c, torch.as_tensor(rows, device=Z.device), K, ph,
                                            self.eval_batch, need_grad)
            vals[rows] = v.cpu().numpy()
            if need_grad:
                grads[rows, :, :K] = g.cpu().numpy()
        return vals, grads

    def _on_top(self, model, Z, c, nf, phi: np.ndarray, classes):
        B, m = phi.shape[:2]
        top = np.zeros((B, m), bool)
        with torch.no_grad():
            for K, rows in self._by_k(nf):
                g = torch.as_tensor(1 - phi[rows][:, :, :K, 0].reshape(-1, K), dtype=Z.dtype, device=Z.device)
                idx = torch.as_tensor(np.repeat(rows, m), device=Z.device)
                res = []
                for s in range(0, g.shape[0], self.eval_batch):
                    X = decode_batch(Z[:, :K], c, g[s:s + self.eval_batch], idx[s:s + self.eval_batch])
                    res.append((model(X).argmax(1) == classes[idx[s:s + self.eval_batch]]).cpu().numpy())
                top[rows] = np.concatenate(res).reshape(rows.size, m)
        return top

    if "_attribute" not in vars(Explainer):          # pragma: no cover - until the template lands
        def attribute(self, model, inputs, target):
            """Pre-template base class: the shared checks and target binding, then the hook."""
            from types import SimpleNamespace

            from cryoxplain.explain.base import check_inputs

            inputs = inputs.detach()
            check_inputs(model, inputs)
            target = target.bind(model, inputs) if hasattr(target, "bind") else target
            return self._attribute(None, inputs, SimpleNamespace(model=model, target=target))

    def _attribute(self, f, inputs: torch.Tensor, ctx) -> Attribution:
        """The template hook (:meth:`cryoxplain.explain.base.Explainer.attribute` has checked the
        inputs ``(B, 1, H, W)`` and bound the target ``ctx.target``)."""
        model, target = ctx.model, ctx.target
        score, classes, _ = AblationPath.make_score(self, model, target, inputs)
        B, _, H, W = inputs.shape
        decs = self.decoders(inputs)
        nf = np.array([d.n_features for d in decs])
        Z, c, _ = pad_decoders(decs, dtype=inputs.dtype, device=inputs.device)
        kmax = int(nf.max())
        P = max(int(self.max_keypoints), kmax)
        n = self.n_t
        extras: dict = {}
        omega = mass_weights(Z, nf, self.metric)                               # (B, K_max)
        ends = np.stack([np.zeros((B, kmax, 1)), np.ones((B, kmax, 1))], 1)
        f_end, _ = self._values(score, Z, c, nf, ends)                       # F(x), F(c)
        occ = None
        if self.intervention == "occlusion" or self.occlusion_extra:
            eye = np.broadcast_to(np.eye(kmax)[None, :, :, None], (B, kmax, kmax, 1)).copy()
            f_del, _ = self._values(score, Z, c, nf, eye)                    # F(D(1 − e_i))
            f_ins, _ = self._values(score, Z, c, nf, 1 - eye)                # F(D(e_i))
            valid = np.arange(kmax)[None] < nf[:, None]
            occ = (np.where(valid, f_end[:, :1] - f_del, np.nan), np.where(valid, f_ins - f_end[:, 1:], np.nan))
            extras["feature_occlusion"] = _pad(occ[0], P)
            extras["feature_insertion"] = _pad(occ[1], P)
        # feature IG (§7.4)
        if self.feature_ig_rule != "off":
            if self.feature_ig_rule == "path":
                nodes, weights = t_grid(n), np.full(n, 1.0 / n)
            else:
                nodes, weights = quadrature(self.feature_ig_steps, "gauss_legendre")
            lin = np.broadcast_to(nodes.reshape(1, -1, 1, 1), (B, nodes.size, kmax, 1)).copy()
            _, g = self._values(score, Z, c, nf, lin, need_grad=True)
            A = -np.tensordot(g[..., 0], weights, axes=([1], [0]))          # (B, K_max)
            A = np.where(np.arange(kmax)[None] < nf[:, None], A, np.nan)
            extras["feature_ig"] = _pad(A, P)
            extras["feature_ig_completeness_gap"] = np.nansum(A, 1) - (f_end[:, 0] - f_end[:, 1])
        reducer = self.reducer if self.reducer != "auto" else ("cav" if self.objective == "straddle" else "clt")
        feat = np.full((B, kmax), np.nan)
        maps = np.zeros((B, H, W))
        if self.intervention == "path":
            cfg = self.path_config()
            res, targets = optimise_feature_paths(score, Z, c, nf, cfg,
                                                  weights=None if self.metric == "euclidean" else omega)
            full = np.stack([with_end_points(p) for p in res.phi])          # (B, T, K_max, 1)
            curve, _ = self._values(score, Z, c, nf, full)
            top = self._on_top(model, Z, c, nf, full, classes) if classes is not None else None
            if res.phi_down is not None:
                full_d = np.stack([with_end_points(p) for p in res.phi_down])
                curve_c, _ = self._values(score, Z, c, nf, full_d)
            else:
                full_d = None
                comp = np.stack([with_end_points(p) for p in 1.0 - res.phi[:, ::-1]])
                curve_c, _ = self._values(score, Z, c, nf, comp)
            k_clt, crossing = np.zeros(B, np.int64), np.zeros(B, bool)
            for b in range(B):
                K = int(nf[b])
                k_clt[b], crossing[b] = transition_index(curve[b], None if top is None else top[b])
                pd = None if res.phi_down is None else res.phi_down[b, :, :K]
                feat[b, :K] = reduce_path(reducer, res.phi[b, :, :K], curve[b], int(k_clt[b]), pd)[:, 0]
            tg = np.tile(np.concatenate([[0.0], t_grid(n), [1.0]]), (B, 1))
            extras.update({
                "path": _pad(full[..., 0], P, axis=2).astype(np.float32),     # (B, T, P)
                "t": tg, "score_curve": curve, "score_curve_complement": curve_c,
                "objective_trace": res.objective_trace, "objective_initial": res.objective_trace[:, 0],
                "objective_final": res.objective_trace[np.arange(B), res.iterations],
                "saturation": res.saturation, "iterations": res.iterations, "converged": res.converged,
                "t_transition": tg[np.arange(B), k_clt], "has_transition": crossing,
                "target_saturation_effective": targets,
                "sat_max": np.array([sat_max(int(k), n) for k in nf]),
            })
            if full_d is not None:
                extras["path_down"] = _pad(full_d[..., 0], P, axis=2).astype(np.float32)
            if top is not None:
                extras["class_on_top"] = top
        else:
            feat = occ[0]
            res = None
        for b in range(B):
            K = int(nf[b])
            a = feat[b, :K]
            if self.heatmap == "magnitude":
                maps[b] = magnitude_map(a, decs[b].Z)
            elif self.heatmap == "voronoi":
                fp = decs[b].footprints
                if self.voronoi_cells == "hard" and not decs[b].too_few_keypoints:
                    fp = build_decoder(inputs[b, 0], self._hard_cfg()).footprints
                maps[b] = voronoi_map(a, fp)
            else:
                hp = self.contrast_sigma_hp or min(H, W) / 50.0
                lp = self.contrast_sigma_lp or 1.6 * hp
                pd = None if res.phi_down is None else res.phi_down[b, :, :K, 0]
                maps[b] = contrast_map(reducer, decs[b].Z, res.phi[b, :, :K, 0], int(k_clt[b]), pd, hp, lp)
        kp = np.full((B, P, 6), np.nan)
        for b, d in enumerate(decs):
            kk = d.keypoints[:P]
            kp[b, :kk.shape[0]] = kk[:, :6]
        energy = np.full((B, kmax), np.nan)
        for b, d in enumerate(decs):
            energy[b, :d.n_features] = d.energy.numpy()
        extras.update({
            "keypoints": kp,
            "n_keypoints": np.array([d.keypoints.shape[0] for d in decs]),
            "n_features": nf,
            "feature_attribution": _pad(feat, P),
            "feature_energy": _pad(energy, P),
            "mass_weights": _pad(omega, P),
            "baseline": np.stack([d.c.numpy() for d in decs]).astype(np.float32),
            "reconstruction_error": np.array([float((d.Z.sum(0) + d.c - inputs[b, 0].cpu().double()).abs().max()
                                                    / max(float(inputs[b, 0].abs().max()), 1e-30))
                                              for b, d in enumerate(decs)]),
            "reconstruction_error_float32": np.array([self._err32(d, inputs[b, 0]) for b, d in enumerate(decs)]),
            "min_cell_mass": np.array([d.min_mass for d in decs]),
            "noise_std": np.array([d.noise_std for d in decs]),
            "sigma_edges": np.tile(decs[0].edges, (B, 1)),            # (B, M+1): the same grid per image
            "too_few_keypoints": np.array([d.too_few_keypoints for d in decs]),
            "score_is_probability": np.full(B, classes is not None),
            "score_at_input": f_end[:, 0], "score_at_baseline": f_end[:, 1],
        })
        return self.make_attribution(maps.astype(np.float32), target, model, **extras)

    def _hard_cfg(self) -> BasisConfig:
        from dataclasses import replace

        return replace(self.basis_config(), cells="hard")

    @staticmethod
    def _err32(d, x) -> float:
        d32 = d.to(torch.float32)
        x32 = x.detach().cpu().float()
        return float((d32.Z.sum(0) + d32.c - x32).abs().max() / x32.abs().max().clamp_min(1e-30))

    # ------------------------------------------------------------------------------------------
    def write_html(self, attribution: Attribution, inputs, path) -> None:
        """Write the interactive path viewer; the feature bases are rebuilt from ``inputs``
        (deterministic) rather than stored."""
        from .viewer import write_viewer

        x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if x.ndim == 3:
            x = x[:, None]
        write_viewer(attribution, x, self.decoders(x[:32]), path)

    def render_png(self, attribution: Attribution, inputs, path, index: int = 0, force: bool = False):
        """Keypoint overlay figure (§8.5) of image ``index`` of a result."""
        from .render import render_keypoints

        x = inputs[index, 0].detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)[index]
        ex = attribution.extras
        return render_keypoints(np.asarray(x).squeeze(), ex["keypoints"][index], ex["feature_attribution"][index],
                                attribution.maps[index], path, title=f"sift_ablation ({attribution.target})",
                                force=force)
