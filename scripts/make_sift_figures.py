"""Worked example of ``sift_ablation`` on a trained D1 particle classifier (docs/sift_ablation.md).

    OMP_NUM_THREADS=1 python scripts/make_sift_figures.py [--model d1_classifier.safetensors]

Without ``--model`` the D1 classifier is trained here exactly as ``benchmarks/explanation_evaluation.py
--d1`` trains it (``--n-train``/``--epochs``, seed 0, augment d4).  The script explains one D1 test
particle (class B, target ``class:1``, normalised per image as for explaining) with ``sift_ablation``
at its defaults and with the pixel ``ablation_path`` at its defaults, and writes to ``docs/figures/sift/``:

* ``keypoints.png`` — the plugin's keypoint overlay (``render_png``): circles of radius √2σ coloured by
  the feature attribution, the magnitude heatmap, the top features;
* ``heatmaps.png`` — the particle with the D1 ground-truth domain outline, the magnitude, Voronoi and
  contrast renderings, and the pixel ablation path map of the same particle;
* ``path.png`` — path images x(t) = D(1 − φ(t)) at a few t, with the score curve;
* ``numbers.json`` — K, iterations, converged, scores, pointing game and energy vs the GT domain.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def train_d1(n_train: int, epochs: int, seed: int = 0):
    from cryoxplain.classify.train import train_classifier
    from cryoxplain.sim.groundtruth import conformation_pair

    d = conformation_pair(n_test=1, n_train=n_train)
    r = train_classifier([d.train["A"], d.train["B"]], class_names=["A", "B"], epochs=epochs, seed=seed, augment="d4")
    print(f"trained D1 classifier: val accuracy {r.val_accuracy:.3f}", flush=True)
    return r.model, r.val_accuracy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="a trained D1 classifier file (default: train one here)")
    ap.add_argument("--n-train", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--n-test", type=int, default=8, help="D1 test particles simulated; the example is --index")
    ap.add_argument("--index", type=int, default=-1, help="test particle (-1: the most confidently B one)")
    ap.add_argument("--out", default="docs/figures/sift")
    ap.add_argument("--max-iters", type=int, default=100, help="sift_ablation and ablation_path iteration cap")
    a = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cryoxplain.explain.evaluation import energy_pointing, pointing_game
    from cryoxplain.explain.registry import create_explainer
    from cryoxplain.explain.render import CMAP, symmetric_limit
    from cryoxplain.imaging.normalize import normalize
    from cryoxplain.sim.groundtruth import conformation_pair

    torch.manual_seed(0)
    val_acc = None
    if a.model:
        from cryoxplain.models.registry import load_model

        model = load_model(a.model)
        model = model[0] if isinstance(model, tuple) else model
    else:
        model, val_acc = train_d1(a.n_train, a.epochs)
    model.eval()
    d = conformation_pair(n_test=a.n_test)
    x = normalize(torch.as_tensor(d.inputs, dtype=torch.float32)[:, None])[0]
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[:, 1].numpy()
    i = int(np.argmax(p)) if a.index < 0 else a.index
    xi = x[i:i + 1]
    gt = d.gt[i:i + 1]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    res, maps = {}, {}
    for hm in ("magnitude", "voronoi", "contrast"):
        ex = create_explainer("sift_ablation", heatmap=hm, max_iters=a.max_iters)
        r = ex.attribute(model, xi, "class:1")
        maps[hm] = r.maps[0]
        res[hm] = r
        print(f"sift_ablation heatmap={hm}: K={int(r.extras['n_features'][0])} iterations="
              f"{int(r.extras['iterations'][0])}", flush=True)
    sift, ex_sift = res["magnitude"], create_explainer("sift_ablation", max_iters=a.max_iters)
    ex_sift.render_png(sift, xi, out / "keypoints.png", force=True)
    pix = create_explainer("ablation_path", max_iters=a.max_iters).attribute(model, xi, "class:1")
    maps["pixel ablation_path"] = pix.maps[0]

    # numbers
    e = sift.extras
    K = int(e["n_features"][0])
    nums = {"particle_index": i, "p_B": float(p[i]), "val_accuracy": val_acc, "K": K,
            "n_keypoints": int(e["n_keypoints"][0]), "iterations": int(e["iterations"][0]),
            "converged": bool(e["converged"][0]), "saturation": float(e["saturation"][0]),
            "target_saturation_effective": float(np.asarray(e["target_saturation_effective"]).ravel()[0]),
            "score_at_input": float(e["score_at_input"][0]), "score_at_baseline": float(e["score_at_baseline"][0]),
            "reconstruction_error": float(e["reconstruction_error"][0]),
            "feature_attribution": [float(v) for v in e["feature_attribution"][0][:K]],
            "keypoints_xy_sigma": [[float(v) for v in kp[:3]] for kp in e["keypoints"][0][:K]],
            "pixel_iterations": int(pix.extras["iterations"][0]) if "iterations" in pix.extras else None,
            "pixel_converged": bool(pix.extras["converged"][0]) if "converged" in pix.extras else None,
            "gt_area_px": int(gt.sum()), "maps": {}}
    for name, m in maps.items():
        nums["maps"][name] = {f"pg{t}": bool(pointing_game(m[None], gt, t).hits[0]) for t in (0, 4)}
        nums["maps"][name]["energy"] = float(energy_pointing(m[None], gt).values[0])
    (out / "numbers.json").write_text(json.dumps(nums, indent=1) + "\n")
    print(json.dumps({k: v for k, v in nums.items() if k not in ("feature_attribution", "keypoints_xy_sigma")}),
          flush=True)

    # heatmaps beside the pixel map, with the GT domain outline
    img = xi[0, 0].numpy()
    fig, ax = plt.subplots(1, 5, figsize=(16, 3.6))
    lo, hi = np.percentile(img, [0.5, 99.5])
    ax[0].imshow(img, cmap="gray", vmin=lo, vmax=hi)
    ax[0].set_title(f"D1 test particle #{i} (p_B = {p[i]:.2f})", fontsize=9)
    for k, (name, m) in enumerate(maps.items(), start=1):
        v = symmetric_limit(m)
        ax[k].imshow(m, cmap=CMAP, vmin=-v, vmax=v)
        s = nums["maps"][name]
        ax[k].set_title(f"{name}\nPG τ=0/4: {int(s['pg0'])}/{int(s['pg4'])}, energy {s['energy']:.2f}", fontsize=9)
    for axx in ax:
        axx.contour(gt[0].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        axx.set_xticks([])
        axx.set_yticks([])
    fig.suptitle(f"sift_ablation heatmaps (K = {K} features) and the pixel ablation path; green: D1 GT domain",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    fig.savefig(out / "heatmaps.png", dpi=100)
    plt.close(fig)

    # path slices x(t) = D(1 − φ(t))
    dec = ex_sift.decoders(xi)[0]
    Z, c = dec.Z.double().numpy(), dec.c.double().numpy()
    phi = np.asarray(e["path"][0])[:, :K]
    t = np.asarray(e["t"]).ravel()
    curve = np.asarray(e["score_curve"][0]).ravel()
    picks = [0, len(t) // 4, len(t) // 2, (3 * len(t)) // 4, len(t) - 1]
    fig, ax = plt.subplots(1, len(picks) + 1, figsize=(3.0 * (len(picks) + 1), 3.4))
    frames = [c + np.tensordot(1 - phi[j], Z, axes=1) for j in picks]
    lo, hi = np.percentile(np.stack(frames), [0.5, 99.5])
    for k, (j, f) in enumerate(zip(picks, frames)):
        ax[k].imshow(f, cmap="gray", vmin=lo, vmax=hi)
        ax[k].contour(gt[0].astype(float), levels=[0.5], colors="lime", linewidths=0.6)
        ax[k].set_title(f"t = {t[j]:.2f}, P(B) = {curve[j]:.2f}", fontsize=9)
        ax[k].set_xticks([])
        ax[k].set_yticks([])
    ax[-1].plot(t, curve, "o-", ms=3)
    ax[-1].set_xlabel("t (ablated mass)")
    ax[-1].set_ylabel("score on x(t)")
    ax[-1].set_title("score along the path", fontsize=9)
    fig.suptitle("sift_ablation path images x(t) = D(1 − φ(t)): t = 0 is the particle, t = 1 the implicit "
                 "baseline c (fixed fine bands)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(out / "path.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out}/keypoints.png, heatmaps.png, path.png, numbers.json")


if __name__ == "__main__":
    main()
