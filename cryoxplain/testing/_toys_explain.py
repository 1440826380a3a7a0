"""The two toy models :func:`cryoxplain.testing.check_explainer` explains: a tiny denoiser
(image → image) and a tiny classifier (image → 3 logits), float32, CPU, deterministic weights
(initialised from a fixed seed without touching torch's global generator)."""
from __future__ import annotations

import torch

SIZE = 16


class ToyDenoiser(torch.nn.Module):
    """Conv(1→4, 3×3) → tanh → Conv(4→1, 3×3), zero padding; any image size."""

    cryoxplain_task = "denoise"

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


class ToyClassifier(torch.nn.Module):
    """Conv(1→4, 3×3) → tanh → 4×4 average pooling → linear → 3 logits; fixed input size
    ``input_shape = (16, 16)``."""

    cryoxplain_task = "classify"
    input_shape = (SIZE, SIZE)

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * (SIZE // 4) ** 2, 3)

    def forward(self, x):
        h = torch.nn.functional.avg_pool2d(torch.tanh(self.conv(x)), 4)
        return self.fc(h.flatten(1))


def _init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval().requires_grad_(False)


def toy_denoiser(seed: int = 0) -> ToyDenoiser:
    return _init(ToyDenoiser(), seed)


def toy_classifier(seed: int = 1) -> ToyClassifier:
    return _init(ToyClassifier(), seed)


def toy_images(n: int = 3, size: int = SIZE, seed: int = 2) -> torch.Tensor:
    """``n`` normalised ``(n, 1, size, size)`` images: a Gaussian blob (its position varies) on noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = []
    for i in range(n):
        cy, cx = size / 2 + (i - n / 2), size / 2 - (i % 3 - 1) * 2
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
        img = blob + 0.3 * torch.randn((size, size), generator=g)
        out.append((img - img.mean()) / img.std(unbiased=False))
    return torch.stack(out)[:, None]
