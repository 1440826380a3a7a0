"""A small CNN particle classifier: ``(B, 1, H, W)`` particles → ``(B, K)`` class logits.

Architecture::

    depth × [conv 3×3 (→ width·2^i) + ReLU + 2×2 average pooling]
    conv 1×1 (→ n_classes) + global average pooling over the image  → logits

Like the denoisers, the network works on particles normalised per image, ``x̃ = (x − μ)/σ``; the
callers (training, :func:`cryoxplain.classify.classify_stack`, ``cryoxplain explain``) normalise.
The normalisation is deliberately *not* inside the network: it would make ``f`` invariant to the
intensity scale, ``f(αx) = f(x)``, and path attributions from a zero baseline meaningless.

Global average pooling makes the network accept any particle size (``input_shape = None``); the
logits are *pre-softmax*, which is what the ``class:K`` / ``predicted`` explanation targets use.
No normalisation layers: BatchNorm would make the explained function depend on batch statistics
and Group/LayerNorm makes it nearly invariant to the intensity scale, which bends the path of
Integrated Gradients sharply near a zero baseline.  He initialisation keeps it trainable.  Average pooling and ReLU keep gradients dense, which makes saliency maps less checkerboarded than
with max pooling.  Trained by :func:`cryoxplain.train.classify.train_classifier`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from .registry import register_architecture

DEFAULT_CONFIG = {"n_classes": 2, "width": 16, "depth": 3}


class ParticleClassifier(nn.Module):
    """See the module docstring.  ``config()`` returns the keyword arguments that rebuild it."""

    input_shape = None

    def __init__(self, n_classes: int = 2, width: int = 16, depth: int = 3):
        super().__init__()
        n_classes, width, depth = int(n_classes), int(width), int(depth)
        if n_classes < 2:
            raise ParameterError(f"classifier: n_classes must be ≥ 2, got {n_classes}")
        if width < 1 or depth < 1:
            raise ParameterError(f"classifier: width and depth must be ≥ 1, got width={width}, depth={depth}")
        self.n_classes, self.width, self.depth = n_classes, width, depth
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(depth):
            c_out = width * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, n_classes, 1)
        for mod in self.features:
            if isinstance(mod, nn.Conv2d):  # He initialisation keeps activations from vanishing with depth
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                nn.init.zeros_(mod.bias)

    def config(self) -> dict:
        return {"n_classes": self.n_classes, "width": self.width, "depth": self.depth}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 2 ** self.depth:
            raise ValueError(f"images of {x.shape[-1]}×{x.shape[-2]} are too small for depth {self.depth}")
        return self.head(self.features(x)).mean(dim=(-2, -1))


@register_architecture("classifier", task="classify")
def build_classifier(n_classes: int = DEFAULT_CONFIG["n_classes"], width: int = DEFAULT_CONFIG["width"],
                     depth: int = DEFAULT_CONFIG["depth"]) -> ParticleClassifier:
    """Factory used by :func:`cryoxplain.models.build_model` (``arch="classifier"``)."""
    return ParticleClassifier(n_classes=n_classes, width=width, depth=depth)
