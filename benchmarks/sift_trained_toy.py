"""The trained toy of spec ``sift_ablation.md`` §11.5.3 over several training seeds.

TinyCNN on the ablation toy (``tests/plugins/ablation_toy.py``) with the spec's fixed distractor
blob; for each seed: train (``--recipe spec``: the toy's recipe, minibatches from the torch stream
that initialised the model; ``--recipe reseed``: ``fit_toy_classifier(seed=s)``, which re-seeds
after the initialisation), explain the 8 class-1 test images with the contrastive SIFT path
(c = 4, η = 4, s = 0.05, ``keep_below = 0``) and the pixel ``ablation_path`` at its defaults, and
print how many heatmap arg-maxima / top-attributed keypoints lie in the evidence disc dilated by
2 px, for Θ_clt and Θ_avg.  About 40 s per seed on 2 shared cores.

    OMP_NUM_THREADS=1 python benchmarks/sift_trained_toy.py --seeds 0,1,2,3,4,5 [--recipe spec|reseed]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "plugins"))

from ablation_toy import (
    DISC_CENTRE,
    DISC_RADIUS,
    TinyCNN,
    fit_toy,
    make_images,
    training_set,
)
from cryoxplain_plugins.ablation_path import AblationPath
from cryoxplain_plugins.sift_ablation import SiftAblation

from cryoxplain.explain.targets import ClassLogit
from cryoxplain.testing import fit_toy_classifier


def with_distractor(imgs: np.ndarray) -> np.ndarray:
    """The spec's distractor 2·exp(−‖r − (22, 22)‖²/(2·3²)), added to every image."""
    yy, xx = np.mgrid[:imgs.shape[-2], :imgs.shape[-1]]
    return imgs + (2.0 * np.exp(-((yy - 22.0) ** 2 + (xx - 22.0) ** 2) / 18.0)).astype(np.float32)


def in_disc(r, c, dilate: float = 2.0) -> bool:
    return bool(np.hypot(r - DISC_CENTRE[0], c - DISC_CENTRE[1]) <= DISC_RADIUS + dilate)


def hits(a) -> tuple[int, int]:
    """(heatmap arg-max hits, top-keypoint hits) of a SIFT attribution of 8 images."""
    hm = hk = 0
    for b in range(a.maps.shape[0]):
        hm += in_disc(*np.unravel_index(np.argmax(a.maps[b]), a.maps[b].shape))
        if not a.extras["too_few_keypoints"][b]:
            K = a.extras["n_features"][b]
            k = a.extras["keypoints"][b, int(np.nanargmax(a.extras["feature_attribution"][b, :K]))]
            hk += in_disc(k[1], k[0])
    return hm, hk


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4,5")
    ap.add_argument("--recipe", choices=("spec", "reseed"), default="spec")
    args = ap.parse_args(argv)
    for seed in (int(s) for s in args.seeds.split(",")):
        x, y, rng = training_set(seed, with_distractor)
        if args.recipe == "spec":
            model = fit_toy(x, y, seed)
        else:
            torch.manual_seed(seed)
            model = fit_toy_classifier(TinyCNN(), x, y, steps=150, batch_size=64, seed=seed)
        pos = torch.as_tensor(with_distractor(make_images(8, 1, rng)))[:, None]
        acc = float((model(pos).argmax(1) == 1).float().mean())
        row = [f"{args.recipe} seed {seed}: accuracy {acc:.2f}"]
        for red in ("clt", "avg"):
            a = SiftAblation(objective="contrastive", keep_below=0.0, reducer=red).attribute(model, pos, ClassLogit(1))
            hm, hk = hits(a)
            row.append(f"Θ_{red} heatmap {hm}/8 top keypoint {hk}/8")
        p = AblationPath().attribute(model, pos, ClassLogit(1))
        row.append(f"pixel {sum(in_disc(*np.unravel_index(np.argmax(m), m.shape)) for m in p.maps)}/8")
        print("; ".join(row), flush=True)


if __name__ == "__main__":
    main()
