"""A tiny two-class image classifier trained on synthetic 'particles' (shared by the ablation tests).

Class 1 images hold a bright Gaussian blob inside a known disc (centre DISC_CENTRE, radius
DISC_RADIUS) on Gaussian noise; class 0 images are noise only.  The evidence for class 1
therefore sits in a known region, and blurring a class-1 image enough flips it to class 0.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

SIZE = 32
DISC_CENTRE = (10.0, 12.0)
DISC_RADIUS = 5.0


def make_images(n: int, label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    imgs = rng.standard_normal((n, size, size)).astype(np.float32) * 0.5
    for i in range(n):
        if label == 1:
            cy, cx = np.array(DISC_CENTRE) + rng.uniform(-1.5, 1.5, 2)
            imgs[i] += 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0 ** 2))
    return imgs


class TinyCNN(nn.Module):
    input_shape = None

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2), nn.Softplus(), nn.AvgPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.Softplus(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(16 * (SIZE // 4) ** 2, 2))

    def forward(self, x):
        return self.net(x)


def train_toy(seed: int = 0, steps: int = 150) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """Train TinyCNN; returns (model in eval mode, test images of class 1, test images of class 0)."""
    x, y, rng = training_set(seed)
    return fit_toy(x, y, seed, steps), make_images(8, 1, rng), make_images(8, 0, rng)


def training_set(seed: int = 0, transform=None):
    """The toy's 256 + 256 training images (class 1 first) and labels, and the numpy generator
    the test images are drawn from next; ``transform`` is applied to the images (e.g. a distractor)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([make_images(256, 1, rng), make_images(256, 0, rng)])
    if transform is not None:
        x = transform(x)
    return x, np.concatenate([np.ones(256, np.int64), np.zeros(256, np.int64)]), rng


def fit_toy(x, y, seed: int = 0, steps: int = 150) -> nn.Module:
    """The toy's recipe (150 Adam steps, lr 3·10⁻³, batch 64): seed torch, build TinyCNN, then draw
    the minibatches from the *same* torch stream (``fit_toy_classifier(seed=None)``).  Re-seeding
    between the initialisation and the draws trains a different model; spec ``sift_ablation.md``
    §11.5.3 was measured with this recipe."""
    from cryoxplain.testing import fit_toy_classifier

    torch.manual_seed(seed)
    model = TinyCNN()
    return fit_toy_classifier(model, x, y, steps=steps, batch_size=64, lr=3e-3, seed=None)
