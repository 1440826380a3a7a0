"""Small toy models for tests of plugins, metrics and tools built on cryoxplain.

Each follows the model protocol (:class:`cryoxplain.models.protocol.CryoxplainModel`), is
deterministic given ``torch.manual_seed`` and builds in milliseconds on a CPU:

* :class:`TinyDenoiser` – a two-layer residual CNN, any image size (``task = "denoise"``);
* :class:`TinyClassifier` – conv + pooling + linear head, fixed image size (``task = "classify"``);
* :class:`IsotropicBlur` – a Gaussian blur with a kernel symmetric under 90° rotations and
  mirrors: exactly C4-equivariant about the box centre on square images (up to float rounding),
  the reference an equivariance metric must score as (near) zero error.

Each comes with an :class:`~cryoxplain.models.ArchitectureSpec` (:data:`TOY_DENOISER`,
:data:`TOY_CLASSIFIER`, :data:`TOY_BLUR`) that is *not* registered: a test that needs a model file
calls ``register_architecture(TOY_DENOISER)`` first (or passes the spec to
:func:`cryoxplain.testing.check_architecture`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models.protocol import ModelBase
from ..models.registry import ArchitectureSpec

__all__ = ["TinyDenoiser", "TinyClassifier", "IsotropicBlur", "TOY_DENOISER", "TOY_CLASSIFIER", "TOY_BLUR",
           "TOY_SPECS", "fit_toy_classifier", "toy_denoiser", "toy_classifier", "toy_images",
           "TOY_SIZE"]


def _check_images(x: torch.Tensor, shape=None) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(x.shape)}")
    if shape is not None and tuple(x.shape[-2:]) != tuple(shape):
        raise ValueError(f"expected (B, 1, {shape[0]}, {shape[1]}) images, got {tuple(x.shape)}")


class TinyDenoiser(ModelBase):
    """``x − conv(softplus(conv(x)))``: 3×3 convolutions, ``width`` hidden channels, any image size.

    Smooth (softplus), so its gradients are non-trivial everywhere; ``receptive_radius`` is 2 px.
    """

    task = "denoise"
    input_shape = None
    receptive_radius = 2

    def __init__(self, width: int = 4):
        super().__init__()
        self.width = int(width)
        self.conv1 = nn.Conv2d(1, self.width, 3, padding=1)
        self.conv2 = nn.Conv2d(self.width, 1, 3, padding=1)

    def config(self) -> dict:
        return {"width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        return x - self.conv2(F.softplus(self.conv1(x)))


class TinyClassifier(ModelBase):
    """``(B, 1, H, W)`` → ``(B, n_classes)`` logits: conv 3×3 + ReLU + 2×2 average pooling + linear.

    ``image_shape`` (even sides) is fixed and is the model's ``input_shape``.
    """

    task = "classify"

    def __init__(self, n_classes: int = 2, width: int = 4, image_shape=(16, 16)):
        super().__init__()
        h, w = (int(v) for v in image_shape)
        if h % 2 or w % 2 or h < 2 or w < 2:
            raise ValueError(f"image_shape must have even sides ≥ 2, got {image_shape}")
        self.n_classes, self.width = int(n_classes), int(width)
        self.input_shape = (h, w)
        self.conv = nn.Conv2d(1, self.width, 3, padding=1)
        self.head = nn.Linear(self.width * (h // 2) * (w // 2), self.n_classes)

    def config(self) -> dict:
        return {"n_classes": self.n_classes, "width": self.width, "image_shape": list(self.input_shape)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.input_shape)
        return self.head(F.avg_pool2d(F.relu(self.conv(x)), 2).flatten(1))


class IsotropicBlur(ModelBase):
    """Gaussian blur of standard deviation ``sigma`` px (kernel radius ``ceil(3σ)``, zero padding).

    The kernel depends on ``i² + j²`` only, so it equals its own 90° rotations and mirrors bit for
    bit, and the blur commutes with ``torch.rot90`` of square images (up to the float rounding of
    the summation order).  The kernel is a persistent buffer (it is saved in model files).
    """

    task = "denoise"
    input_shape = None

    def __init__(self, sigma: float = 1.0):
        super().__init__()
        self.sigma = float(sigma)
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        r = int(math.ceil(3 * self.sigma))
        d = torch.arange(-r, r + 1, dtype=torch.float64)
        k = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * self.sigma ** 2))
        self.register_buffer("kernel", (k / k.sum()).float()[None, None])
        self.receptive_radius = r

    def config(self) -> dict:
        return {"sigma": self.sigma}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x)
        return F.conv2d(x, self.kernel.to(x.dtype), padding=self.receptive_radius)


TOY_DENOISER = ArchitectureSpec("toy_denoiser", "denoise", TinyDenoiser, small_config={"width": 3},
                                description="cryoxplain.testing toy: two-layer residual CNN")
TOY_CLASSIFIER = ArchitectureSpec("toy_classifier", "classify", TinyClassifier,
                                  small_config={"n_classes": 3, "width": 2, "image_shape": [12, 16]},
                                  description="cryoxplain.testing toy: conv + pooling + linear classifier")
TOY_BLUR = ArchitectureSpec("toy_blur", "denoise", IsotropicBlur, small_config={"sigma": 1.0},
                            description="cryoxplain.testing toy: exactly C4-equivariant Gaussian blur")
#: all toy specs
TOY_SPECS = (TOY_DENOISER, TOY_CLASSIFIER, TOY_BLUR)


def fit_toy_classifier(model: nn.Module, images, labels, *, steps: int = 150, batch_size: int = 64,
                       lr: float = 3e-3, seed: int | None = 0) -> nn.Module:
    """Train a toy classifier for a few Adam steps on in-memory ``images`` ``(N, H, W)`` and integer
    ``labels`` ``(N,)`` (cross-entropy, minibatches drawn with ``seed``).  Returns the model in eval
    mode with frozen parameters — what tests and benchmarks of explainers need.  Not a training
    pipeline: real models are trained with :mod:`cryoxplain.training`.

    ``seed=None`` leaves torch's global generator as the caller left it: the minibatch draws then
    continue the stream that initialised ``model`` (``torch.manual_seed(s)``, build the model,
    train), which is the recipe of the ablation toy and of the ``sift_ablation`` spec §11.5.3.
    An integer re-seeds after the model was built, so it trains on different minibatches.
    """
    import numpy as np

    if seed is not None:
        torch.manual_seed(int(seed))
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(int(steps)):
        idx = torch.randint(0, len(x), (min(int(batch_size), len(x)),))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


#: image size of :func:`toy_images` and :func:`toy_classifier`
TOY_SIZE = 16


def _init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights from a fixed seed (without touching torch's global generator); eval mode, frozen."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval().requires_grad_(False)


def toy_denoiser(seed: int = 0) -> TinyDenoiser:
    """A :class:`TinyDenoiser` (width 4) with fixed random weights, eval mode, frozen."""
    return _init(TinyDenoiser(width=4), seed)


def toy_classifier(seed: int = 1) -> TinyClassifier:
    """A 3-class :class:`TinyClassifier` on 16×16 images with fixed random weights, eval mode, frozen."""
    return _init(TinyClassifier(n_classes=3, width=4, image_shape=(TOY_SIZE, TOY_SIZE)), seed)


def toy_images(n: int = 3, size: int = TOY_SIZE, seed: int = 2) -> torch.Tensor:
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
