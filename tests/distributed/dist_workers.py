"""Functions run in each rank of the 2-process gloo worlds of tests/distributed (importable by
``torch.multiprocessing`` spawn; this folder is on ``sys.path`` under pytest)."""
from __future__ import annotations

import numpy as np


def toy_pairs(n=24, box=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    clean = np.stack([np.exp(-((xx - rng.uniform(-3, 3)) ** 2 + (yy - rng.uniform(-3, 3)) ** 2) / 8.0)
                      for _ in range(n)]).astype(np.float32)
    noisy = (clean + rng.normal(0, 0.5, clean.shape)).astype(np.float32)
    return noisy, clean


def train_denoise(rank, out, kwargs):
    """Train a denoiser; return its parameters (numpy) and the history."""
    from cryoxplain.denoise import train_denoiser

    noisy, clean = toy_pairs()
    res = train_denoiser(noisy, clean, out=out, progress=False, device="cpu", **kwargs)
    return {k: v.detach().cpu().numpy().copy() for k, v in res.model.state_dict().items()}, res.history


def train_classify(rank, out, kwargs):
    from cryoxplain.classify.train import DEFAULT_CONFIG, train_classifier

    noisy, _ = toy_pairs(24, 16, 0)
    other, _ = toy_pairs(24, 16, 1)
    other = np.ascontiguousarray(other[:, ::-1])
    res = train_classifier([noisy, other], config=DEFAULT_CONFIG.replace(progress=False, device="cpu", **kwargs),
                           out=out)
    return {k: v.detach().cpu().numpy().copy() for k, v in res.model.state_dict().items()}, res.history


# ---------------------------------------------------------------- sharded denoising

def tiny_net(seed=0):
    """A fixed 3×3 convolution: a deterministic stand-in denoiser (no batch statistics)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    return net.eval()


class KillOnCall(__import__("torch").nn.Module):
    """Calls ``net``; SIGKILLs its own process at forward call ``at`` on rank ``rank`` (a crashed node)."""

    def __init__(self, net, rank: int, at: int):
        super().__init__()
        self.net, self.kill_rank, self.at, self.calls = net, rank, at, 0

    def forward(self, x):
        import os
        import signal

        self.calls += 1
        if int(os.environ.get("RANK", -1)) == self.kill_rank and self.calls == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)


def make_star_project(root, sizes=(5, 3, 6), box=16, seed=0):
    """A RELION 3.1 STAR in ``root`` listing particles of ``len(sizes)`` stacks, interleaved."""
    from pathlib import Path

    from cryoxplain.io.mrc import write_mrc

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for j, n in enumerate(sizes):
        write_mrc(root / f"mic{j}.mrcs", rng.normal(size=(n, box, box)).astype(np.float32), 2.0, kind="stack")
        rows += [(k, f"{k + 1:06d}@mic{j}.mrcs") for k in range(n)]
    rows.sort(key=lambda r: (r[0], r[1]))  # interleave the stacks
    text = ["", "data_optics", "", "loop_", "_rlnOpticsGroup #1", "_rlnImagePixelSize #2", "_rlnImageSize #3",
            "_rlnImageDimensionality #4", f"1 2.000000 {box} 2", "", "", "data_particles", "", "loop_",
            "_rlnImageName #1", "_rlnOpticsGroup #2", "_rlnAngleRot #3"]
    text += [f"{name} 1 {10.0 * i:.6f}" for i, (_, name) in enumerate(rows)]
    (root / "particles.star").write_text("\n".join(text) + "\n")
    return root / "particles.star", [root / f"mic{j}.mrcs" for j in range(len(sizes))]


def denoise_run(rank, inputs, out, kwargs):
    """``denoise_files(inputs, out, **kwargs)`` on the CPU."""
    from cryoxplain.denoise import denoise_files

    return [str(p) for p in denoise_files(inputs, out, device="cpu", progress=False, **kwargs)]


def explain_run(rank, model, stack, out, kwargs):
    """``explain_stack(model, stack, out, **kwargs)`` on the CPU; returns ``n_images``."""
    from cryoxplain.explain.stack import explain_stack

    return explain_stack(model, stack, out, device="cpu", **kwargs).n_images
