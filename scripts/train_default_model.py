#!/usr/bin/env python
"""Retrain the shipped general denoisers ``cryoxplain/data/models/default.safetensors`` (cartesian)
and ``default-spiral.safetensors`` (spiral).

Data (both models, identical): :func:`cryoxplain.sim.training.simulate_training_distribution` on
three structures from ``../shared/data`` — the 70S ribosome map (ASPIRE gallery data; its header has
no voxel size: 5 Å/voxel assumed, ≈ 250 Å particle), the T20S proteasome atomic model (3J9I, ≈ 180 Å
cylinder) and the human H-ferritin 24-mer (4Y08 assembly, ≈ 120 Å sphere).  **β-galactosidase
(``real/ngl_betaGal.mrc``) is held out** for the benchmark (benchmarks/real_data.py).  Box 64, pixel
sizes 4.2 … 6.2 Å/px (nominal 5.0 Å/px, the sampling ``cryoxplain denoise`` bins micrographs to),
CTF with defocus 0.5 … 3.5 µm and astigmatism 0 … 1500 Å (RELION convention), both contrast signs,
SNR 1/100 … 1/2 (log-uniform), white noise or (half of the images) Gaussian noise with the radial
spectrum measured on the real EPU micrograph's background (cryoxplain/data/noise/, made by
scripts/measure_noise_spectrum.py).  Target: the CTF-modulated clean projection.

Models: contrast-sign odd (``odd=True``: F(−x) = −F(x) exactly).  ``--arch cartesian``: the dilated
DnCNN (depth 8, width 32, dilations 1,2,3,4,3,2, predicting the signal: the residual net trained the
same way reached −1.33 dB validation SNR_out against +3.28 dB), random 48 px crops; ``--arch spiral``:
the spiral denoiser (box 64, depth 6, width 16, signal-predicting, prefilter 0.7 px), whole boxes.
Sizes (500 / 1000 clean particles × 2 noise draws, 3 epochs each, the smaller spiral) are what fitted the
CPU budget of the session that made the files (2 cores shared by 5 jobs: one cartesian epoch on
1800 images took 10.5 min wall); larger runs are the obvious next step.
Supervised MSE, D4 augmentation, Adam with cosine decay, seeded: the same command reproduces the
same file on the same CPU/torch build.

    OMP_NUM_THREADS=1 nice python scripts/train_default_model.py --arch cartesian --force
    OMP_NUM_THREADS=1 nice python scripts/train_default_model.py --arch spiral --force

``--cache FILE.npz`` keeps the simulated set between the two runs (it is regenerated bit for bit
without it).

Reproducing a shipped file: ``--verify`` retrains into a temporary file with the shipped file's
recorded command (its ``training.command``; the flags given here are ignored) and compares it
with the shipped one — the tensors exactly, then the metadata and bytes.  Exit status 0 when the
tensors are identical and every metadata value of the shipped file is reproduced (the retrain
may add keys: history columns the training loop records now but did not when the file was
written — it says which), 1 with the first difference otherwise:

    OMP_NUM_THREADS=1 nice -n 10 python scripts/train_default_model.py --arch cartesian --verify [--cache sim.npz]

Determinism at a tiny size (two runs, byte-identical files) is a test:
``tests/denoise/test_train_default_script.py`` (``-m slow``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
MODELS = REPO / "cryoxplain" / "data" / "models"
HELD_OUT = "ngl_betaGal.mrc"

ARCHS = {
    "cartesian": {"out": "default.safetensors",
                  "config": {"depth": 8, "width": 32, "kernel_size": 3, "residual": False, "odd": True,
                             "dilations": [1, 2, 3, 4, 3, 2]},
                  "crop": 48, "batch_size": 16, "epochs": 3, "n_clean": 500},
    "spiral": {"out": "default-spiral.safetensors",
               "config": {"box_size": 64, "depth": 6, "width": 16, "kernel_size": 3, "residual": False,
                          "odd": True, "prefilter_sigma": 0.7},
               "crop": None, "batch_size": 16, "epochs": 3, "n_clean": 1000},
}


def training_structures():
    from cryoxplain.sim import Structure

    return [Structure(str(DATA / "aspire_clean70SRibosome_vol_65p.mrc"), 5.0, "70S ribosome (EMD map, 5 Å/voxel assumed)"),
            Structure(str(DATA / "real" / "3j9i_t20s_proteasome.pdb.gz"), None, "T20S proteasome (PDB 3J9I)"),
            Structure(str(DATA / "real" / "4y08_human_h_ferritin_assembly24.cif.gz"), None, "H-ferritin 24-mer (PDB 4Y08)")]


def simulate(n_clean, noise_draws, seed, cache=None):
    import json

    from cryoxplain.sim import simulate_training_distribution

    if cache and Path(cache).exists():
        z = np.load(cache, allow_pickle=False)
        params = json.loads(str(z["params"]))
        if params["n_clean"] >= n_clean and params["seed"] == seed and params["noise_draws"] == noise_draws:
            # groups are seeded one by one: the first n_clean·noise_draws rows of a larger set are
            # exactly the smaller set
            params["n_clean"] = int(math.ceil(n_clean / params["group_size"]) * params["group_size"])
            k = params["n_clean"] * noise_draws
            return z["noisy"][:k], z["clean"][:k], params
    t0 = time.time()
    ts = simulate_training_distribution(training_structures(), n_clean, box=64, seed=seed, noise_draws=noise_draws,
                                        progress=lambda d, n: print(f"  simulated group {d}/{n} "
                                                                    f"({time.time() - t0:.0f} s)", flush=True)
                                        if d % 10 == 0 or d == n else None)
    if cache:
        np.savez(cache, noisy=ts.noisy, clean=ts.clean, params=json.dumps(ts.params))
    return ts.noisy, ts.clean, ts.params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="cartesian")
    ap.add_argument("--n-clean", type=int, default=None,
                    help="clean particles (× --noise-draws noisy images); default: per architecture")
    ap.add_argument("--noise-draws", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="default: per architecture")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="npz file to keep/reuse the simulated set")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default; the shipped files were made on the CPU) or cuda / auto for a longer run on a GPU; "
                         "recorded in the command, since bit-exact reproduction holds per device and torch build")
    ap.add_argument("-o", "--output", default=None)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--verify", action="store_true", help="retrain the shipped file by its recorded command and "
                    "compare (tensors, bytes); exit 1 if it differs")
    args = ap.parse_args(argv)
    if args.verify:
        return verify(args.arch, args.cache)

    from cryoxplain.denoise import train_denoiser

    spec = ARCHS[args.arch]
    out = Path(args.output) if args.output else MODELS / spec["out"]
    epochs = args.epochs or spec["epochs"]
    args.n_clean = args.n_clean or spec["n_clean"]
    t0 = time.time()
    noisy, clean, dist = simulate(args.n_clean, args.noise_draws, args.seed, args.cache)
    n = args.n_clean * args.noise_draws
    noisy, clean = noisy[:n], clean[:n]
    print(f"{len(noisy)} training images ({time.time() - t0:.0f} s)", flush=True)
    meta = {"data": {"distribution": dist, "pixel_size_A": 5.0, "pixel_size_range_A": [min(dist["pixel_sizes_A"]),
                                                                                       max(dist["pixel_sizes_A"])],
                     "held_out_structure": HELD_OUT, "n_images": int(len(noisy))},
            "pixel_size_A": 5.0, "script": "scripts/train_default_model.py",
            "command": f"scripts/train_default_model.py --arch {args.arch} --n-clean {args.n_clean} "
                       f"--noise-draws {args.noise_draws} --epochs {epochs} --lr {args.lr} --seed {args.seed}"
                       + ("" if args.device == "cpu" else f" --device {args.device}")}
    res = train_denoiser(noisy, clean, arch=args.arch, arch_config=dict(spec["config"]), epochs=epochs, seed=args.seed,
                         out=str(out), val_fraction=0.1, batch_size=spec["batch_size"], lr=args.lr, augment="d4",
                         crop=spec["crop"], lr_schedule="cosine", checkpoint_every=1, force=args.force, progress=False,
                         metadata=meta, device=args.device)
    h = res.history
    for i in range(len(h["epoch"])):
        print(f"epoch {int(h['epoch'][i]):3d}  train {h['train_loss'][i]:.4f}  val {h['val_loss'][i]:.4f}  "
              f"SNR_out {h['val_snr_out_db'][i]:6.2f} dB  PSNR {h['val_psnr_db'][i]:6.2f} dB", flush=True)
    # the history and checkpoint are byproducts; keep only the model inside the package
    for p in (res.history_path, res.checkpoint_path):
        if p is not None and Path(p).parent == out.resolve().parent:
            Path(p).unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) in {time.time() - t0:.0f} s")


def recorded_argv(path) -> list[str]:
    """The argument list recorded in a shipped file's ``training.command``."""
    import shlex

    from cryoxplain.models import load_model

    cmd = shlex.split(load_model(path, device="cpu")[1].training["command"])
    if not cmd or not cmd[0].endswith("train_default_model.py"):
        raise SystemExit(f"{path}: training.command is not a train_default_model.py command: {cmd}")
    return cmd[1:]


def _added_keys(old, new, prefix=""):
    """Keys of ``new`` missing from ``old`` (dotted), or None when some value of ``old`` differs in ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        added = []
        for k, v in old.items():
            if k not in new:
                return None
            sub = _added_keys(v, new[k], f"{prefix}{k}.")
            if sub is None:
                return None
            added += sub
        return added + [f"{prefix}{k}" for k in new if k not in old]
    return [] if old == new else None


def compare_models(a, b, *, allow_added_metadata: bool = False) -> str | None:
    """None when the model files ``a`` and ``b`` hold exactly the same tensors and bytes, else the
    first difference found (tensor names, values, metadata, bytes).  With
    ``allow_added_metadata``: also None when the tensors are equal and ``b``'s metadata only adds
    keys to ``a``'s (every value of ``a`` equal in ``b``) — a history column the loop records now
    that it did not when ``a`` was written."""
    import json

    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        ka, kb = sorted(fa.keys()), sorted(fb.keys())
        if ka != kb:
            return f"tensor names differ: {sorted(set(ka) ^ set(kb))}"
        for k in ka:
            ta, tb = fa.get_tensor(k), fb.get_tensor(k)
            if ta.dtype != tb.dtype or ta.shape != tb.shape or not bool((ta == tb).all()):
                d = (ta.double() - tb.double()).abs().max().item() if ta.shape == tb.shape else None
                return f"tensor {k} differs (max |Δ| {d})"
        ma, mb = json.loads(fa.metadata()["cryoxplain"]), json.loads(fb.metadata()["cryoxplain"])
    if ma != mb and allow_added_metadata and _added_keys(ma, mb):
        return None
    if ma != mb:
        keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        sub = [f"{k}.{j}" for k in keys if isinstance(ma.get(k), dict) and isinstance(mb.get(k), dict)
               for j in sorted(set(ma[k]) | set(mb[k])) if ma[k].get(j) != mb[k].get(j)]
        return f"metadata differs: {sub or keys}"
    if Path(a).read_bytes() != Path(b).read_bytes():
        return "same tensors and metadata, different bytes (serialisation order)"
    return None


def verify(arch: str, cache=None) -> int:
    import tempfile

    shipped = MODELS / ARCHS[arch]["out"]
    argv = recorded_argv(shipped)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / shipped.name
        main(argv + ["-o", str(out)] + (["--cache", str(cache)] if cache else []))
        diff = compare_models(shipped, out)
        if diff is None:
            print(f"{shipped.name}: reproduced exactly (tensors and bytes)")
            return 0
        if compare_models(shipped, out, allow_added_metadata=True) is None:
            from safetensors import safe_open
            import json

            with safe_open(str(shipped), "pt") as fa, safe_open(str(out), "pt") as fb:
                added = _added_keys(json.loads(fa.metadata()["cryoxplain"]), json.loads(fb.metadata()["cryoxplain"]))
            print(f"{shipped.name}: tensors reproduced exactly; every metadata value of the shipped file is equal, the "
                  f"retrain adds {added} (columns the training loop records now); bytes differ only by these")
            return 0
    print(f"{shipped.name}: NOT reproduced: {diff}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
