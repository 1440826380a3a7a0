"""Cost model of every installed explainer: passes, the limit n × (forward + backward), time per image.

Every explainer registered under the entry-point group ``cryoxplain.explainers`` is discovered
through the registry (exactly as the CLI finds them) and run with its *default* parameters on two
models, next to the peers Captum ``IntegratedGradients`` (n_steps=50, Gauss–Legendre, the same
internal batch size) and PAIR ``saliency`` ``BlurIG`` (its defaults, ``batch_size=1`` and
``batch_size`` = the internal batch size):

* ``denoiser``: the shipped default denoiser (``load_model("default")``), target ``pixel:c,c``
  (the centre pixel of the output);
* ``classifier``: :class:`cryoxplain.models.classifier.ParticleClassifier` at its default
  configuration (He-initialised, untrained: the cost does not depend on the weights), ``class:0``.

Per method (each in a fresh subprocess, so its peak memory is its own) the table gives

* ``fwd+bwd / image`` and ``fwd / image``: image rows passed through the model with and without a
  backward pass (a wrapper counts rows; a row is "with backward" when its input requires grad);
* ``t_fb``, ``t_f``: the measured time per image of one forward+backward, and of one forward, of
  the model on the batch of explained images (medians of ≥ 5 repetitions and ≥ 0.5 s in each
  process just before its method; the limit uses the median over all processes of a model, which
  is steadier on a shared machine than one process's own measurement, also printed);
* ``limit``: ``fwd+bwd × t_fb + fwd × t_f`` per image — the cost of the model evaluations alone;
* ``s / image`` and ``× limit``: the measured wall time of the whole method per image and its
  ratio to the limit (> 1: path construction, batching or bookkeeping overhead; < 1: the method's
  passes are cheaper per row than the batch the limit was measured on, e.g. larger batches).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/explainers.py [--models denoiser classifier] [--size 48]
        [--images 1] [--param blur_ig:steps=50 ...] [--only NAME ...]

Prints one Markdown table per model and the run configuration.
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
PAIR = "pair_blur_ig (peer)"
#: extra rows: (label, explainer, parameters) — Blur IG with PAIR's discretisation, for the same-maps comparison
EXTRA = (("blur_ig, PAIR's discretisation", "blur_ig", {"rule": "riemann_left", "derivative": "finite_difference"}),)


def make_model(kind: str, size: int):
    """(model, target string) of the benchmark."""
    if kind == "denoiser":
        from cryoxplain.models.registry import load_model

        net, _ = load_model("default")
        return net.eval(), f"pixel:{size // 2},{size // 2}"
    if kind == "classifier":
        from cryoxplain.models.classifier import build_classifier

        torch.manual_seed(0)
        return build_classifier(image_shape=(size, size)).eval(), "class:0"
    raise SystemExit(f"unknown model {kind!r}; use denoiser or classifier")


class Counter(torch.nn.Module):
    """Counts image rows through the model, split into rows with and without a backward pass."""

    def __init__(self, net):
        super().__init__()
        self.net, self.fb, self.f = net, 0, 0
        self.input_shape = getattr(net, "input_shape", None)

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.fb += x.shape[0]
        else:
            self.f += x.shape[0]
        return self.net(x)


def _peak_bytes(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _unit_costs(net, f, x, min_reps=5, min_seconds=0.5):
    """Median time per image of forward+backward and of forward on the batch ``x`` (at least
    ``min_reps`` repetitions and ``min_seconds`` in all)."""
    tfb, tf = [], []
    start = time.perf_counter()
    while len(tfb) < min_reps or (time.perf_counter() - start < min_seconds and len(tfb) < 200):
        z = x.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        torch.autograd.grad(f(z).sum(), z)
        tfb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            f(x)
        tf.append(time.perf_counter() - t0)
    return float(np.median(tfb)) / x.shape[0], float(np.median(tf)) / x.shape[0]


def _run_one(args_json, queue):
    a = json.loads(args_json)
    torch.set_num_threads(a["threads"])
    from cryoxplain.explain import create_explainer
    from cryoxplain.explain.base import bind_target, explained_function
    from cryoxplain.utils import resolve_device

    device = resolve_device(a["device"])
    net, tspec = make_model(a["model"], a["size"])
    net = Counter(net.to(device))
    g = torch.Generator().manual_seed(0)
    n = a["size"]
    yy, xx = np.mgrid[:n, :n]
    blob = torch.as_tensor(np.exp(-((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 6) ** 2)), dtype=torch.float32)
    x = (blob + 0.5 * torch.randn(a["images"], 1, n, n, generator=g)).to(device)
    target = bind_target(tspec, net, x)
    f = explained_function(net, target)
    if a["method"] == CAPTUM:
        from captum.attr import IntegratedGradients  # imported before timing, like our plugins
    elif a["method"] == PAIR:
        from saliency.core import BlurIG
        from saliency.core.base import INPUT_OUTPUT_GRADIENTS
    else:
        from cryoxplain.explain.registry import get_explainer
        get_explainer(a["method"])
    t_fb, t_f = _unit_costs(net, f, x)  # also the warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = _peak_bytes(device) if device.type != "cuda" else torch.cuda.memory_allocated(device)
    net.fb = net.f = 0
    t0 = time.perf_counter()
    if a["method"] == CAPTUM:
        ig = IntegratedGradients(lambda z: f(z, torch.arange(x.shape[0], device=z.device).repeat(z.shape[0] // x.shape[0])))
        out = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=50, method="gausslegendre",
                           internal_batch_size=a["ibs"])
        ok = bool(torch.isfinite(out).all())
    elif a["method"] == PAIR:
        maps = []
        for i in range(x.shape[0]):
            ii = torch.tensor([i], device=device)

            def call_model_function(xb, call_model_args=None, expected_keys=None):
                z = torch.as_tensor(np.asarray(xb), device=device).permute(0, 3, 1, 2).detach().requires_grad_(True)
                (gr,) = torch.autograd.grad(f(z, ii.expand(z.shape[0])).sum(), z)
                return {INPUT_OUTPUT_GRADIENTS: gr.permute(0, 2, 3, 1).cpu().numpy()}

            maps.append(BlurIG().GetMask(x[i].permute(1, 2, 0).cpu().numpy(), call_model_function,
                                         batch_size=int(a["params"].get("batch_size", 1))))
        ok = bool(np.isfinite(np.stack(maps)).all())
    else:
        params = dict(a["params"])
        ex = create_explainer(a["method"], **params)
        out = ex.attribute(net, x, target)
        ok = bool(np.isfinite(out.maps).all())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t0
    peak = _peak_bytes(device) - base
    b = a["images"]
    queue.put({"s_per_image": dt / b, "peak_mib": max(peak, 0) / 2 ** 20, "fb": net.fb / b, "f": net.f / b,
               "t_fb": t_fb, "t_f": t_f, "ok": ok})


def run_model(model, args, names, overrides, ctx):
    jobs = [(m, m, overrides.get(m, {})) for m in names]
    jobs += [(label, m, {**p, **overrides.get(m, {})}) for label, m, p in EXTRA if m in names]
    jobs += [(CAPTUM, CAPTUM, {}), (PAIR + ", batch_size=1", PAIR, {"batch_size": 1}),
             (PAIR + f", batch_size={args.internal_batch_size}", PAIR, {"batch_size": args.internal_batch_size})]
    rows = []
    for label, m, params in jobs:
        q = ctx.Queue()
        job = json.dumps({"method": m, "params": params, "device": args.device, "model": model, "size": args.size,
                          "images": args.images, "ibs": args.internal_batch_size, "threads": args.threads})
        proc = ctx.Process(target=_run_one, args=(job, q))
        proc.start()
        proc.join()
        r = q.get() if proc.exitcode == 0 and not q.empty() else None
        rows.append((label, m, params, r))
    return rows


def print_table(model, args, rows):
    dev = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"\n### {model}: {args.images} image(s) {args.size}x{args.size}, device {dev} "
          f"({torch.cuda.get_device_name(0) if dev == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {args.threads} thread(s), internal batch {args.internal_batch_size}\n")
    ok = [r for *_, r in rows if r is not None]
    t_fb = float(np.median([r["t_fb"] for r in ok])) if ok else float("nan")
    t_f = float(np.median([r["t_f"] for r in ok])) if ok else float("nan")
    print(f"unit costs (median over the {len(ok)} processes): t_fb = {1e3 * t_fb:.1f} ms, t_f = {1e3 * t_f:.1f} ms "
          "per image; limit = fwd+bwd × t_fb + fwd × t_f\n")
    print("| method | parameters | fwd+bwd / image | fwd / image | t_fb in its process (ms) | limit (s / image) | "
          "s / image | × limit | peak memory (MiB) | finite |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, m, params, r in rows:
        ptxt = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        if m == CAPTUM:
            ptxt = f"n_steps=50, gausslegendre, internal_batch_size={args.internal_batch_size}"
        elif m == PAIR:
            ptxt = "defaults (max_sigma=50, steps=100)"
        if r is None:
            print(f"| {label} | {ptxt} | – | – | – | – | failed | – | – | NO |")
            continue
        limit = r["fb"] * t_fb + r["f"] * t_f
        print(f"| {label} | {ptxt} | {r['fb']:.0f} | {r['f']:.0f} | {1e3 * r['t_fb']:.1f} | "
              f"{limit:.3f} | {r['s_per_image']:.3f} | {r['s_per_image'] / limit:.2f} | {r['peak_mib']:.1f} | "
              f"{'yes' if r['ok'] else 'NO'} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["denoiser", "classifier"], choices=("denoiser", "classifier"))
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--device", default="cpu")
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
    if overrides:
        print(f"overrides: {overrides}")
    # fork (Linux): the children start with torch and the plugins imported; each still has its own peak RSS
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    t0 = time.perf_counter()
    for model in args.models:
        print_table(model, args, run_model(model, args, names, overrides, ctx))
        sys.stdout.flush()
    for name, err in broken:
        print(f"\n(not run: {name} failed to load: {err})")
    print(f"\n(whole run {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
