"""The ablation-path viewer page for SIFT feature paths (spec §8.6).

Reuses the page, payload and image helpers of :mod:`cryoxplain_plugins.ablation_path.viewer`;
only the per-sample frames differ: x(t) = D(1 − φ(t)) decoded from the rebuilt feature basis
(deterministic, so nothing but the keypoint-free inputs and parameters is needed), and as the
"mask" the ablated amount rendered through the footprints, Σ_i φ_i(t) F_i ∈ [0, 1].
"""
from __future__ import annotations

import html
import json
from dataclasses import replace

import numpy as np

from cryoxplain.io.atomic import atomic_path
from cryoxplain_plugins.ablation_path import viewer as pixel_viewer

__all__ = ["feature_frames", "render_html", "write_viewer"]


def feature_frames(dec, phi: np.ndarray, lo: float, hi: float) -> dict:
    """PNG data URIs of x(t), the ablated-amount map and the overlay for a feature path ``phi (T, K)``."""
    K = dec.n_features
    x = (dec.Z.sum(0) + dec.c).numpy()
    g_tg = pixel_viewer._grey(x, lo, hi)
    Zf = dec.Z.reshape(K, -1).numpy()
    Ff = dec.footprints.reshape(K, -1).numpy()
    xs, ms, ov = [], [], []
    for p in np.asarray(phi, np.float64)[:, :K]:
        img = (dec.c.numpy().ravel() + (1 - p) @ Zf).reshape(x.shape)
        m = np.clip((p @ Ff).reshape(x.shape), 0, 1)
        xs.append(pixel_viewer.data_uri(pixel_viewer._grey(img, lo, hi)))
        ms.append(pixel_viewer.data_uri(pixel_viewer._cmap(m, "hot", 0.0, 1.0)))
        ov.append(pixel_viewer.data_uri(pixel_viewer._overlay(g_tg, m)))
    return {"x": xs, "mask": ms, "overlay": ov}


def render_html(attribution, inputs, decoders, max_images: int = 32) -> str:
    ex = attribution.extras
    B = attribution.maps.shape[0]
    stub = replace(attribution, extras={**ex, "path": np.zeros((B, ex["path"].shape[1], 1, 1), np.float32)})
    stub.extras.pop("path_down", None)
    payload = pixel_viewer.build_payload(stub, inputs, max_images)
    for b, img in enumerate(payload["images"]):
        dec = decoders[b]
        x = (dec.Z.sum(0) + dec.c).numpy()
        lo, hi = np.percentile(np.concatenate([x.ravel(), dec.c.numpy().ravel()]), [0.5, 99.5])
        main = ex["path"][b]
        comp = ex["path_down"][b] if "path_down" in ex else 1.0 - main[::-1]
        img["main"] = feature_frames(dec, main, lo, hi)
        img["comp"] = feature_frames(dec, comp, lo, hi)
        img["info"]["n_features"] = int(ex["n_features"][b])
        img["info"]["too_few_keypoints"] = bool(ex["too_few_keypoints"][b])
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=pixel_viewer._num)
    text = text.replace("</", "<\\/")
    page = pixel_viewer._PAGE
    for old, new in _CAPTIONS:
        page = page.replace(old, new)
    return page.replace("__PAYLOAD__", text).replace(
        "<title>Ablation path viewer</title>", f"<title>SIFT ablation path viewer – {html.escape(attribution.target)}</title>")


_CAPTIONS = (
    ("x(t) = x + φ(t)(x<sub>BL</sub> − x), fed to the model", "x(t) = D(1 − φ(t)), fed to the model"),
    ("mask φ(t) (white = ablated)", "ablated amount Σ<sub>i</sub> φ<sub>i</sub>(t) F<sub>i</sub> (white = ablated)"),
    ("baseline x<sub>BL</sub> (t = 1)", "implicit baseline D(0) = c (t = 1)"),
)


def write_viewer(attribution, inputs, decoders, path, max_images: int = 32, force: bool = True) -> None:
    text = render_html(attribution, inputs, decoders, max_images)
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
