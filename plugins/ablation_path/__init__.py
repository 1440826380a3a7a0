"""Ablation Path saliency (Sagemüller & Verdier 2023; Sagemüller thesis Part II ch. 2).

Registered as the explainer ``ablation_path`` (entry point group ``cryoxplain.explainers``).
Modules: :mod:`.projection` (path axioms: Algorithm 1 monotonisation, re-parametrisation,
saturation, pinching), :mod:`.optimize` (Algorithm 2), :mod:`.baselines`, :mod:`.heatmaps`,
:mod:`.viewer` (the self-contained HTML path viewer), :mod:`.explainer` (the plugin class).
"""
from .explainer import AblationPath

__all__ = ["AblationPath"]
