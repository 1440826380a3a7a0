"""Cost model of every installed explainer against n × (forward + backward), and the peers, in ONE process.

Every explainer registered under the entry-point group ``cryoxplain.explainers`` is discovered
through the registry (exactly as the CLI finds them) and run with its *default* parameters on two
models, next to the peers Captum ``IntegratedGradients`` (n_steps=50, Gauss–Legendre, the same
internal batch size) and PAIR ``saliency`` ``BlurIG`` (its defaults, ``batch_size=1`` and
``batch_size`` = the internal batch size), and our ``blur_ig`` with PAIR's discretisation:

* ``denoiser``: the shipped default denoiser (``load_model("default")``), target ``pixel:c,c``
  (the centre pixel of the output);
* ``classifier``: :class:`cryoxplain.models.classifier.ParticleClassifier` at its default
  configuration (He-initialised, untrained: the cost does not depend on the weights), ``class:0``.

Everything of one model runs in this one process, **interleaved**: each method is called once to
warm up (and to count its passes), then in each of ``--reps`` rounds every method is timed once,
each call right after its own measurement of the model's unit costs (the order of the methods is
reversed every other round).  A change of the machine's load therefore hits a method, its limit
and its peer alike.  Per method:

* ``fwd+bwd / image`` and ``fwd / image``: image rows passed through the model with and without a
  backward pass during the warm-up call (a wrapper counts rows; a row is "with backward" when its
  input requires grad);
* ``t_fb``, ``t_f``: time per image of one forward+backward, and of one forward, of the model on
  the batch of explained images (median of ≥ 7 calls and ≥ 0.1 s), measured just before each timed
  call;
* ``limit``: ``fwd+bwd × t_fb + fwd × t_f`` per image — the cost of the model evaluations alone;
* ``× limit``: per round the call's time over the limit measured next to it; the median over the
  rounds and the spread (min–max);
* the peer table: per round ``ours / peer`` of calls made next to each other; median and min–max,
  and the largest absolute difference of the maps.

Methods with more than ``--slow-passes`` (1000) forward+backward passes per image (SpectralLens
and Ablation Paths: ~2,600–2,800, ~100 s per 48×48 denoiser image) are timed on the warm-up call
only (one repetition, its unit costs measured right before it); the table says so.  ``--memory``
also runs every method once in a forked process and reports the growth of its peak RSS.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/explainers.py [--models denoiser classifier] [--size 48]
        [--images 1] [--reps 5] [--slow-passes 1000] [--param blur_ig:steps=50 ...] [--only NAME ...]
        [--skip NAME ...] [--memory]

Prints one Markdown table per model, the peer comparison and the run configuration.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

CAPTUM = "captum_ig (peer)"
PAIR1 = "pair_blur_ig (peer), batch_size=1"
PAIR_DISC = "blur_ig, PAIR's discretisation"
#: extra rows: (label, explainer, parameters) — Blur IG with PAIR's discretisation, for the same-maps comparison
EXTRA = ((PAIR_DISC, "blur_ig", {"max_sigma": 50.0, "rule": "riemann_left", "derivative": "finite_difference"}),)


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


def unit_costs(f, x, calls: int = 7, seconds: float = 0.1):
    """Median time per image of one forward+backward and of one forward of ``f`` on the batch ``x``
    (at least ``calls`` of each and ``seconds`` in all)."""
    tfb, tf = [], []
    start = time.perf_counter()
    while len(tfb) < calls or time.perf_counter() - start < seconds:
        z = x.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        torch.autograd.grad(f(z).sum(), z)
        tfb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            f(x)
        tf.append(time.perf_counter() - t0)
    return float(np.median(tfb)) / x.shape[0], float(np.median(tf)) / x.shape[0]


def make_jobs(names, overrides, net, x, tspec, f, ibs):
    """[(label, parameters text, callable → maps (B, H, W) numpy)] of the run."""
    from cryoxplain.explain import create_explainer

    jobs = []

    def ours(name, params):
        ex = create_explainer(name, **params)
        return lambda: ex.attribute(net, x, tspec).maps

    for m in names:
        p = overrides.get(m, {})
        jobs.append((m, ", ".join(f"{k}={v}" for k, v in p.items()) or "defaults", ours(m, p)))
    for label, m, p in EXTRA:
        if m in names:
            p = {**p, **overrides.get(m, {})}
            jobs.append((label, ", ".join(f"{k}={v}" for k, v in p.items()), ours(m, p)))
    from captum.attr import IntegratedGradients
    from saliency.core import BlurIG
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    b = x.shape[0]

    def captum():
        ig = IntegratedGradients(lambda z: f(z, torch.arange(b, device=z.device).repeat(z.shape[0] // b)))
        return ig.attribute(x, baselines=torch.zeros_like(x), n_steps=50, method="gausslegendre",
                            internal_batch_size=ibs).detach()[:, 0].cpu().numpy()

    def pair(batch_size):
        def run():
            maps = []
            for i in range(b):
                ii = torch.tensor([i], device=x.device)

                def call_model_function(xb, call_model_args=None, expected_keys=None):
                    z = torch.as_tensor(np.asarray(xb), device=x.device).permute(0, 3, 1, 2).detach().requires_grad_(True)
                    (gr,) = torch.autograd.grad(f(z, ii.expand(z.shape[0])).sum(), z)
                    return {INPUT_OUTPUT_GRADIENTS: gr.permute(0, 2, 3, 1).cpu().numpy()}

                maps.append(BlurIG().GetMask(x[i].permute(1, 2, 0).cpu().numpy(), call_model_function,
                                             batch_size=batch_size)[..., 0])
            return np.stack(maps)
        return run

    jobs.append((CAPTUM, f"n_steps=50, gausslegendre, internal_batch_size={ibs}", captum))
    jobs.append((PAIR1, "defaults (max_sigma=50, steps=100)", pair(1)))
    jobs.append((f"pair_blur_ig (peer), batch_size={ibs}", "defaults (max_sigma=50, steps=100)", pair(ibs)))
    return jobs


def _peak_child(fn, queue):
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)  # KiB → MiB


def peak_memory(fn):
    """Growth of the peak RSS (MiB) of one call of ``fn`` in a forked process (Linux)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(fn, q))
    p.start()
    p.join()
    return q.get() if p.exitcode == 0 and not q.empty() else float("nan")


def run_model(model, args, names, overrides):
    from cryoxplain.explain.base import bind_target, explained_function
    from cryoxplain.utils import resolve_device

    device = resolve_device(args.device)
    net, tspec = make_model(model, args.size)
    net = Counter(net.to(device))
    g = torch.Generator().manual_seed(0)
    n = args.size
    yy, xx = np.mgrid[:n, :n]
    blob = torch.as_tensor(np.exp(-((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / (2 * (n / 6) ** 2)), dtype=torch.float32)
    x = (blob + 0.5 * torch.randn(args.images, 1, n, n, generator=g)).to(device)
    f = explained_function(net, bind_target(tspec, net, x))
    jobs = make_jobs(names, overrides, net, x, tspec, f, args.internal_batch_size)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    unit_costs(f, x)  # warm-up of the model
    res = {}
    for label, _, fn in jobs:  # warm-up call: counts the passes; slow methods are timed on it
        tfb, tf = unit_costs(f, x)
        net.fb = net.f = 0
        t0 = time.perf_counter()
        maps = fn()
        sync()
        dt = time.perf_counter() - t0
        r = res[label] = {"fb": net.fb / args.images, "f": net.f / args.images, "maps": np.asarray(maps),
                          "ok": bool(np.isfinite(maps).all()), "t": [], "tfb": [], "tf": [],
                          "slow": net.fb / args.images > args.slow_passes}
        if r["slow"]:
            r["t"].append(dt / args.images), r["tfb"].append(tfb), r["tf"].append(tf)
        if args.memory:
            r["peak"] = peak_memory(fn)
    for rep in range(args.reps):
        for label, _, fn in (jobs if rep % 2 == 0 else jobs[::-1]):
            r = res[label]
            if r["slow"]:
                continue
            tfb, tf = unit_costs(f, x)
            t0 = time.perf_counter()
            fn()
            sync()
            r["t"].append((time.perf_counter() - t0) / args.images)
            r["tfb"].append(tfb), r["tf"].append(tf)
    return jobs, res


def _spread(v):
    v = np.asarray(v)
    return f"{np.median(v):.2f} ({v.min():.2f}–{v.max():.2f})" if v.size > 1 else f"{v[0]:.2f} (1 run)"


def print_tables(model, args, jobs, res):
    dev = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"\n### {model}: {args.images} image(s) {args.size}x{args.size}, device {dev} "
          f"({torch.cuda.get_device_name(0) if dev == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {args.threads} thread(s), internal batch {args.internal_batch_size}, "
          f"{args.reps} interleaved rounds\n")
    mem = " peak memory (MiB) |" if args.memory else ""
    print("| method | parameters | fwd+bwd / image | fwd / image | t_fb (ms) | limit (s / image) | s / image | "
          f"× limit, median (min–max) |{mem} finite |")
    print("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if args.memory else "") + "---|")
    for label, ptxt, _ in jobs:
        r = res[label]
        tfb, tf, t = (np.asarray(r[k]) for k in ("tfb", "tf", "t"))
        limits = r["fb"] * tfb + r["f"] * tf
        m = f" {r['peak']:.1f} |" if args.memory else ""
        print(f"| {label} | {ptxt} | {r['fb']:.0f} | {r['f']:.0f} | {1e3 * np.median(tfb):.2f} | "
              f"{np.median(limits):.3f} | {np.median(t):.3f} | {_spread(t / limits)} |{m} {'yes' if r['ok'] else 'NO'} |")
    ibs = args.internal_batch_size
    pairs = [("integrated_gradients", CAPTUM), ("blur_ig", PAIR1), ("blur_ig", f"pair_blur_ig (peer), batch_size={ibs}"),
             (PAIR_DISC, PAIR1), (PAIR_DISC, f"pair_blur_ig (peer), batch_size={ibs}")]
    pairs = [(a, b) for a, b in pairs if a in res and b in res and not (res[a]["slow"] or res[b]["slow"])]
    if pairs:
        print(f"\n{model}: ours / peer, calls of the same round side by side ({args.reps} rounds)\n")
        print("| ours | peer | ours s / image | peer s / image | ours / peer, median (min–max) | max abs diff of the maps |")
        print("|---|---|---:|---:|---:|---:|")
        for a, b in pairs:
            ta, tb = np.asarray(res[a]["t"]), np.asarray(res[b]["t"])
            same = a == "integrated_gradients" or a == PAIR_DISC
            d = f"{np.abs(res[a]['maps'] - res[b]['maps']).max():.1e}" if same else "– (other rule)"
            print(f"| {a} | {b} | {np.median(ta):.3f} | {np.median(tb):.3f} | {_spread(ta / tb)} | {d} |")
    slow = [label for label, *_ in jobs if res[label]["slow"]]
    if slow:
        print(f"\n(timed on the warm-up call only, > {args.slow_passes} fwd+bwd / image: {', '.join(slow)})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["denoiser", "classifier"], choices=("denoiser", "classifier"))
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--slow-passes", type=int, default=1000,
                    help="methods with more fwd+bwd passes per image are timed on the warm-up call only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--internal-batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
    ap.add_argument("--param", action="append", default=[], help="NAME:key=value, overrides a default")
    ap.add_argument("--only", action="append", default=[], help="benchmark only these explainers")
    ap.add_argument("--skip", action="append", default=[], help="do not benchmark these explainers")
    ap.add_argument("--memory", action="store_true", help="also peak RSS of one call per method (forked)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from cryoxplain.explain import list_plugins

    recs = list_plugins()
    names = [r.name for r in recs if r.ok and (not args.only or r.name in args.only) and r.name not in args.skip]
    broken = [(r.name, r.error) for r in recs if not r.ok]
    overrides: dict[str, dict] = {}
    for p in args.param:
        name, kv = p.split(":", 1)
        k, v = kv.split("=", 1)
        overrides.setdefault(name, {})[k] = v
    if overrides:
        print(f"overrides: {overrides}")
    t0 = time.perf_counter()
    for model in args.models:
        print_tables(model, args, *run_model(model, args, names, overrides))
        sys.stdout.flush()
    for name, err in broken:
        print(f"\n(not run: {name} failed to load: {err})")
    print(f"\n(whole run {time.perf_counter() - t0:.0f} s; load average at the end "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
