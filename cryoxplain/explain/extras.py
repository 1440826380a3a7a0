"""The ``extras`` keys explainers share (one name, one meaning, one shape; docs/plugins.md).

Arrays whose first axis is the batch are stored per image in ``/attribution/extras/NAME``.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["STANDARD_EXTRAS", "spectrum_extras"]

#: key → (shape, meaning); B = images, S = path nodes / scales, F = frequency bins
STANDARD_EXTRAS = {
    "target_value": ("(B,)", "f(x), the explained value of each input"),
    "baseline_value": ("(B,)", "f(baseline), path methods"),
    "completeness_gap": ("(B,)", "Σ maps − (f(x) − f(baseline)), methods that declare completeness"),
    "path_values": ("(B, S)", "f along the path (path methods)"),
    "noise_std": ("(B,)", "std of the added noise in input units (noise methods)"),
    "baseline": ("(B, H, W)", "the baseline image (methods whose baseline is searched per image)"),
    "spectrum": ("(B, F)", "radially averaged power spectrum of the map"),
    "spectrum_frequencies": ("(B, F)", "its frequencies, cycles per pixel"),
}


def spectrum_extras(maps) -> dict:
    """``spectrum`` and ``spectrum_frequencies`` of the maps ``(B, H, W)``
    (:func:`cryoxplain.explain.spectrum.attribution_spectrum`, per image)."""
    from .spectrum import attribution_spectrum

    m = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    spec = attribution_spectrum(m, average=False)
    n = m.shape[0]
    return {"spectrum": spec.power.astype(np.float32),
            "spectrum_frequencies": np.broadcast_to(spec.frequencies, (n, spec.frequencies.size)).astype(np.float32)}
