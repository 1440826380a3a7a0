"""Time per image and peak memory of every installed explainer vs Captum's IntegratedGradients.

Every explainer registered under the entry-point group ``cryoxplain.explainers`` is discovered
through the registry (exactly as the CLI finds them) and run with its *default* parameters (the
paper defaults) on the same model, images and target as Captum IG (n_steps=50, Gauss-Legendre,
the same internal batch size).  Each method runs in a fresh subprocess so its peak memory is its
own: on CPU the growth of the process's peak RSS over the warmed-up baseline, on CUDA
``torch.cuda.max_memory_allocated`` above the baseline.  Model evaluations per image are counted
by a wrapper around the model (one count per image row in a forward pass).

Usage::

    python benchmarks/explainers.py [--model cnn-denoiser|cnn-classifier|FILE|default] [--size 64]
        [--images 8] [--device auto] [--param blur_ig:steps=50 ...] [--only NAME ...]

Prints one Markdown table (ours vs Captum) and the run configuration.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

CAPTUM = "captum_ig (peer)"


def make_model(kind: str, size: int):
    """(model, target) for the benchmark; small CNNs typical of particle-sized inputs."""
    if kind == "cnn-classifier":
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(64, 3))
        return net.eval(), _target("class:0", lambda o: o[:, 0], "class:0")
    if kind == "cnn-denoiser":
        torch.manual_seed(0)
        layers = [torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU()]
        for _ in range(4):
            layers += [torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU()]
        layers += [torch.nn.Conv2d(32, 1, 3, padding=1)]
        net = torch.nn.Sequential(*layers)
        yy, xx = np.mgrid[:size, :size]
        disc = torch.as_tensor(((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= (size / 2) ** 2, dtype=torch.float32)
        return net.eval(), _target("disc-energy", lambda o: (o[:, 0] ** 2 * disc.to(o.device)).sum((1, 2)),
                                   "disc-energy")
    from cryoxplain.models.registry import load_model  # a model file or "default"

    net = load_model(kind)
    net = getattr(net, "model", net)
    return net.eval(), _target("disc-energy", lambda o: (o[:, 0] ** 2).sum((1, 2)), "output-energy")


def _target(spec, fallback, description):
    from cryoxplain.explain.base import Target

    try:
        from cryoxplain.explain.targets import parse_target
        return parse_target(spec)
    except Exception:  # explainer core's targets not installed: an equivalent callable
        return Target.from_callable(fallback, description)


class Counter(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.net(x)


def _peak_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _run_one(args_json, queue):
    a = json.loads(args_json)
    torch.set_num_threads(a["threads"])
    from cryoxplain.explain import create_explainer
    from cryoxplain.utils import resolve_device

    device = resolve_device(a["device"])
    net, target = make_model(a["model"], a["size"])
    net = Counter(net.to(device))
    g = torch.Generator().manual_seed(0)
    yy, xx = np.mgrid[:a["size"], :a["size"]]
    blob = torch.as_tensor(np.exp(-((yy - a["size"] / 2) ** 2 + (xx - a["size"] / 2) ** 2) / (2 * (a["size"] / 6) ** 2)),
                           dtype=torch.float32)
    x = (blob + 0.5 * torch.randn(a["images"], 1, a["size"], a["size"], generator=g)).to(device)
    from captum.attr import IntegratedGradients  # imported before timing, like our plugins
    if a["method"] != CAPTUM:
        from cryoxplain.explain.registry import get_explainer
        get_explainer(a["method"])
    # warm-up: one forward/backward so allocator/threads are up before the baseline is taken
    xw = x[:1].clone().requires_grad_(True)
    torch.autograd.grad(target(net(xw)).sum(), xw)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = _peak_bytes(device) if device.type != "cuda" else torch.cuda.memory_allocated(device)
    net.rows = 0
    t0 = time.perf_counter()
    if a["method"] == CAPTUM:
        if hasattr(target, "bind"):
            target = target.bind(net, x)
        ig = IntegratedGradients(lambda z: _expand_target(target, net, z, x.shape[0]))
        out = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=50, method="gausslegendre",
                           internal_batch_size=a["ibs"])
        ok = bool(torch.isfinite(out).all())
    else:
        params = dict(a["params"])
        ex = create_explainer(a["method"], **params)
        if "internal_batch_size" in ex.config and "internal_batch_size" not in params:
            ex.config["internal_batch_size"] = a["ibs"]
        out = ex.attribute(net, x, target)
        ok = bool(np.isfinite(out.maps).all())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    peak = _peak_bytes(device) - base
    queue.put({"method": a["method"], "s_per_image": dt / a["images"], "peak_mib": max(peak, 0) / 2 ** 20,
               "evals_per_image": net.rows / a["images"], "ok": ok})


def _expand_target(target, net, z, b):
    """Captum evaluates (steps·B) rows ordered step-major; per-image targets need the image index."""
    idx = torch.arange(b, device=z.device).repeat(z.shape[0] // b)
    t = target.select(idx) if hasattr(target, "select") else target
    return t(net(z))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="cnn-denoiser")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--internal-batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    ap.add_argument("--param", action="append", default=[], help="NAME:key=value, overrides a default")
    ap.add_argument("--only", action="append", default=[], help="benchmark only these explainers")
    args = ap.parse_args(argv)

    from cryoxplain.explain import list_plugins

    recs = list_plugins()
    names = [r.name for r in recs if r.ok and (not args.only or r.name in args.only)]
    broken = [(r.name, r.error) for r in recs if not r.ok]
    overrides: dict[str, dict] = {}
    for p in args.param:
        name, kv = p.split(":", 1)
        k, v = kv.split("=", 1)
        overrides.setdefault(name, {})[k] = v
    ctx = mp.get_context("spawn")
    rows = []
    for m in names + [CAPTUM]:
        q = ctx.Queue()
        job = json.dumps({"method": m, "params": overrides.get(m, {}), "device": args.device, "model": args.model,
                          "size": args.size, "images": args.images, "ibs": args.internal_batch_size,
                          "threads": args.threads})
        proc = ctx.Process(target=_run_one, args=(job, q))
        proc.start()
        proc.join()
        rows.append(q.get() if proc.exitcode == 0 and not q.empty() else
                    {"method": m, "s_per_image": float("nan"), "peak_mib": float("nan"), "evals_per_image": float("nan"),
                     "ok": False})
    dev = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"model {args.model}, {args.images} images {args.size}x{args.size}, device {dev} "
          f"({torch.cuda.get_device_name(0) if dev == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {args.threads} thread(s), internal batch {args.internal_batch_size}")
    if overrides:
        print(f"overrides: {overrides}")
    cap = next(r for r in rows if r["method"] == CAPTUM)
    print()
    print("| explainer | parameters | s / image | × Captum IG | model evals / image | ms / model eval | "
          "peak memory (MiB) | finite |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in overrides.get(r["method"], {}).items()) or "defaults"
        if r["method"] == CAPTUM:
            params = "n_steps=50, gausslegendre"
        per_eval = 1e3 * r["s_per_image"] / r["evals_per_image"] if r["evals_per_image"] else float("nan")
        print(f"| {r['method']} | {params} | {r['s_per_image']:.4f} | {r['s_per_image'] / cap['s_per_image']:.2f} | "
              f"{r['evals_per_image']:.0f} | {per_eval:.2f} | {r['peak_mib']:.1f} | {'yes' if r['ok'] else 'NO'} |")
    for name, err in broken:
        print(f"\n(not run: {name} failed to load: {err})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
