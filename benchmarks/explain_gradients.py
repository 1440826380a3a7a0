"""Ours vs Captum: Integrated Gradients and SmoothGrad on a cartesian-like denoiser.

Prints one table from one run: wall time per method (same model, inputs, baseline, steps and
noise draws) and the max abs difference of the maps.  Run:

    OMP_NUM_THREADS=1 python benchmarks/explain_gradients.py [--size 64] [--batch 8] [--steps 50] [--device cpu]
"""
import argparse
import time

import numpy as np
import torch

from cryoxplain.explain import create_explainer
from cryoxplain.explain.base import image_seed
from cryoxplain.explain.targets import DiscEnergy


def dncnn(depth=8, width=32):
    layers = [torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth - 2):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU()]
    layers.append(torch.nn.Conv2d(width, 1, 3, padding=1))
    return torch.nn.Sequential(*layers)


def timed(fn, repeat=2):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    torch.manual_seed(0)
    dev = torch.device(a.device)
    model = dncnn().to(dev).eval()
    x = torch.randn(a.batch, 1, a.size, a.size, device=dev)
    tgt = DiscEnergy()
    fwd = lambda inp: tgt(model(inp))  # noqa: E731
    rows = []

    ig = create_explainer("integrated_gradients", steps=a.steps, internal_batch_size=a.batch * a.steps)
    t_ours, ours = timed(lambda: ig.attribute(model, x, tgt).maps)
    t_ref, ref = timed(lambda: IntegratedGradients(fwd).attribute(x, baselines=torch.zeros_like(x), n_steps=a.steps,
                                                                   method="gausslegendre")[:, 0].detach().cpu().numpy())
    rows.append(("integrated_gradients", t_ours, t_ref, np.abs(ours - ref).max(), np.abs(ref).max()))

    xi = x[:1]
    sigma = float(0.15 * (xi.max() - xi.min()))
    sg = create_explainer("smoothgrad", n_samples=a.samples, internal_batch_size=a.samples)
    t_ours, ours = timed(lambda: sg.attribute(model, xi, tgt).maps)

    def captum_sg():
        torch.manual_seed(image_seed(0, 0))
        return NoiseTunnel(Saliency(fwd)).attribute(xi, nt_type="smoothgrad", nt_samples=a.samples, stdevs=sigma,
                                                    abs=False)[:, 0].detach().cpu().numpy()
    t_ref, ref = timed(captum_sg)
    rows.append(("smoothgrad (1 image)", t_ours, t_ref, np.abs(ours - ref).max(), np.abs(ref).max()))

    print(f"DnCNN depth 8 width 32, {a.size}×{a.size}, batch {a.batch}, steps {a.steps}, samples {a.samples}, "
          f"device {a.device}, torch threads {torch.get_num_threads()}")
    print(f"{'method':<24}{'ours [s]':>10}{'captum [s]':>12}{'max |diff|':>12}{'max |A|':>10}")
    for name, t1, t2, d, m in rows:
        print(f"{name:<24}{t1:>10.3f}{t2:>12.3f}{d:>12.2e}{m:>10.3g}")


if __name__ == "__main__":
    main()
