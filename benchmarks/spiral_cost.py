"""Cost of the spiral CNN vs the cartesian CNN at equal depth/width.

For each box size: operator build time (fresh, no cache) and non-zeros, and for both
architectures the forward time (eval, no grad) and forward+backward time (train mode, MSE loss),
median over ``--reps`` runs, plus peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS
growth of a fresh subprocess over its state after building the model and the batch).  Prints
one markdown table.  Target of issue #4: spiral ≤ 1.5× cartesian time at 128².

    OMP_NUM_THREADS=1 nice python benchmarks/spiral_cost.py                # CPU, 1 thread
    python benchmarks/spiral_cost.py --device cuda --batch 32
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _cartesian(depth, width, k):
    from cryoxplain.models import build_model

    return build_model("cartesian", depth=depth, width=width, kernel_size=k), "cryoxplain.models.cartesian"


def _child(args) -> dict:
    """Measure one (arch, box) in this process; returns a dict."""
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dev = torch.device(args.device)
    res = {"arch": args.arch, "box": args.box}
    if args.arch == "spiral":
        from cryoxplain.geometry.spiral import spiral_geometry, spiral_operators
        from cryoxplain.models.spiral import SpiralDenoiser

        g = spiral_geometry(args.box)
        t0 = time.perf_counter()
        ops = spiral_operators(g, args.kernel, disk_cache=False)
        res["build_s"] = time.perf_counter() - t0
        res["n_spls"] = g.n_spls
        res["nnz"] = ops.nnz()
        model = SpiralDenoiser(box_size=args.box, depth=args.depth, width=args.width,
                               kernel_size=args.kernel, disk_cache=False)
    else:
        model, res["impl"] = _cartesian(args.depth, args.width, args.kernel)
    model = model.to(dev)
    res["params"] = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 1, args.box, args.box, device=dev)
    target = torch.randn_like(x)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def timed(fn):
        fn()
        fn()  # warm-up (allocator, kernels, batched index cache)
        ts = []
        for _ in range(args.reps):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    def fwd():
        with torch.no_grad():
            model(x)

    opt_params = list(model.parameters())

    def fwd_bwd():
        for p in opt_params:
            p.grad = None
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()

    def peak(fn):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            fn()
            sync()
            return (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        fn()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux

    model.eval()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["fwd_mem"] = peak(fwd) - (0 if dev.type == "cuda" else rss0)
    res["fwd_s"] = timed(fwd)
    model.train()
    res["fwdbwd_mem"] = peak(fwd_bwd) - (0 if dev.type == "cuda" else rss0)
    res["fwdbwd_s"] = timed(fwd_bwd)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", default="64,128,256")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--arch", help=argparse.SUPPRESS)
    ap.add_argument("--box", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return
    rows = {}
    for box in [int(b) for b in args.boxes.split(",")]:
        for arch in ("spiral", "cartesian"):
            cmd = [sys.executable, __file__, "--child", "--arch", arch, "--box", str(box),
                   "--depth", str(args.depth), "--width", str(args.width), "--kernel", str(args.kernel),
                   "--batch", str(args.batch), "--reps", str(args.reps), "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"benchmark child failed ({arch}, {box}):\n{out.stderr}")
            rows[(arch, box)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  done {arch} {box}²", file=sys.stderr)
    impl = rows[("cartesian", int(args.boxes.split(",")[0]))].get("impl", "")
    print(f"\nspiral vs cartesian ({impl}), depth={args.depth} width={args.width} kernel={args.kernel}, "
          f"batch={args.batch}, device={args.device}, threads={os.environ.get('OMP_NUM_THREADS', '?')}, "
          f"median of {args.reps}\n")
    print("| box | n_spls | build s | nnz g2s / s2r / s2g | params sp / cart | fwd ms sp / cart (×) "
          "| fwd+bwd ms sp / cart (×) | peak MiB fwd sp / cart | peak MiB fwd+bwd sp / cart |")
    print("|---|---|---|---|---|---|---|---|---|")
    for box in [int(b) for b in args.boxes.split(",")]:
        s, c = rows[("spiral", box)], rows[("cartesian", box)]
        nnz = s["nnz"]
        s2r = nnz[f"spiral_to_ribbon[{args.kernel}]"]
        print(f"| {box}² | {s['n_spls']} | {s['build_s']:.2f} | {nnz['grid_to_spiral']} / {s2r} / "
              f"{nnz['spiral_to_grid']} | {s['params']} / {c['params']} | "
              f"{1e3 * s['fwd_s']:.1f} / {1e3 * c['fwd_s']:.1f} ({s['fwd_s'] / c['fwd_s']:.2f}×) | "
              f"{1e3 * s['fwdbwd_s']:.1f} / {1e3 * c['fwdbwd_s']:.1f} ({s['fwdbwd_s'] / c['fwdbwd_s']:.2f}×) | "
              f"{s['fwd_mem']:.0f} / {c['fwd_mem']:.0f} | {s['fwdbwd_mem']:.0f} / {c['fwdbwd_mem']:.0f} |")


if __name__ == "__main__":
    main()
