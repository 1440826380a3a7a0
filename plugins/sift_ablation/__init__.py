"""SIFT-based ablation (Sagemüller, thesis Part III ch. 4): ablation paths over reconstructible
multiscale features.  Spec: ``sift_ablation.md``; method page ``docs/sift_ablation.md``.

Modules: :mod:`.scale_space` (σ grid, exact DoG bands), :mod:`.keypoints` (detection),
:mod:`.decomposition` (cells and the decoder), :mod:`.pathspace` (feature paths on the pixel
plugin's optimiser), :mod:`.render` (heatmaps, keypoint overlay), :mod:`.explainer`.
"""
from .explainer import SiftAblation

__all__ = ["SiftAblation"]
