"""A small CNN particle classifier: ``(B, 1, H, W)`` particles → ``(B, K)`` class logits.

Architecture::

    depth × [conv 3×3 (→ width·2^i) + ReLU + 2×2 average pooling]
    flatten + linear (→ n_classes)                                    → logits

Particles are centred, so *where* a feature sits relative to the box centre is informative; a
flattening linear head keeps that (a global-average-pooling head, tried first, throws it away
and reached only ~0.65 validation accuracy where this head reaches ~0.95 on two simulated
phantoms).  The price is a fixed particle size: ``image_shape`` is part of the config and the
model sets ``input_shape`` so callers reject other sizes with a clear message.

The logits are *pre-softmax*, which is what the ``class:K`` / ``predicted`` explanation targets
use.  Like the denoisers, the network works on particles normalised per image,
``x̃ = (x − μ)/σ``; the callers (training, :func:`cryoxplain.classify.classify_stack`,
``cryoxplain explain``) normalise.  The normalisation is deliberately not inside the network, and
there are no normalisation layers: BatchNorm makes the explained function depend on batch
statistics, and per-image normalisation inside the network makes it (nearly) invariant to the
intensity scale, ``f(αx) ≈ f(x)``, which bends the path of Integrated Gradients sharply near a
zero baseline.  He initialisation keeps the plain network trainable.  Average pooling and ReLU
keep gradients dense (less checkerboarding in saliency maps than max pooling).
Trained by :func:`cryoxplain.classify.train_classifier`.

``symmetry="c4"`` makes the classifier *exactly* invariant to quarter turns by group averaging:
the logits are the mean of the plain network's logits over the four turns
:func:`cryoxplain.geometry.rotate.rot90` of the input (``f(x) = ¼ Σ_k g(R^k x)``).  ``rot90`` is the
package's quarter turn (a periodic pixel permutation about ``N // 2``, the same one the
equivariance metrics use), so ``f(R x) = f(x)`` holds to rounding for every weight setting, trained
or not.  Group averaging was chosen over a C4-symmetrised backbone (rotated-filter convolutions)
because it keeps the architecture, its parameters and its training unchanged, works with any
pooling/flattening head, and is exact by construction; the price is 4× the compute per image.
Square particles only.  Off the grid (θ not a multiple of 90°) the model is only as invariant as
it has learnt to be.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from .protocol import ModelBase
from .registry import ArchitectureSpec

DEFAULT_CONFIG = {"n_classes": 2, "width": 16, "depth": 3, "image_shape": [64, 64], "symmetry": "none"}
#: ``symmetry`` values: no constraint, or exact invariance to the four quarter turns (group averaging)
SYMMETRIES = ("none", "c4")


class ParticleClassifier(ModelBase):
    """See the module docstring.  ``config()`` returns the keyword arguments that rebuild it."""

    task = "classify"

    def __init__(self, n_classes: int = 2, width: int = 16, depth: int = 3, image_shape=(64, 64),
                 symmetry: str = "none"):
        super().__init__()
        n_classes, width, depth = int(n_classes), int(width), int(depth)
        h, w = (int(v) for v in image_shape)
        if n_classes < 2:
            raise ParameterError(f"classifier: n_classes must be ≥ 2, got {n_classes}")
        if width < 1 or depth < 1:
            raise ParameterError(f"classifier: width and depth must be ≥ 1, got width={width}, depth={depth}")
        if min(h, w) < 2 ** depth:
            raise ParameterError(f"classifier: {w}×{h} particles are too small for depth {depth} "
                                 f"(need at least {2 ** depth} px); use a smaller depth")
        if symmetry not in SYMMETRIES:
            raise ParameterError(f"classifier: symmetry must be one of {', '.join(SYMMETRIES)}, got {symmetry!r}")
        if symmetry == "c4" and h != w:
            raise ParameterError(f"classifier: symmetry='c4' needs square particles, got {w}×{h}")
        self.n_classes, self.width, self.depth, self.symmetry = n_classes, width, depth, symmetry
        #: the particle size the classifier accepts (callers check it)
        self.input_shape = (h, w)
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(depth):
            c_out = width * 2 ** i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * (h // 2 ** depth) * (w // 2 ** depth), n_classes)
        for mod in self.features:
            if isinstance(mod, nn.Conv2d):  # He initialisation keeps activations from vanishing with depth
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                nn.init.zeros_(mod.bias)

    def config(self) -> dict:
        return {"n_classes": self.n_classes, "width": self.width, "depth": self.depth,
                "image_shape": list(self.input_shape), "symmetry": self.symmetry}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.input_shape:
            raise ValueError(f"expected a (B, 1, {self.input_shape[0]}, {self.input_shape[1]}) tensor, got {tuple(x.shape)}")
        if self.symmetry == "c4":  # group averaging over the four quarter turns (see the module docstring)
            from ..geometry.rotate import rot90

            b = x.shape[0]
            z = torch.cat([x] + [rot90(x, k) for k in (1, 2, 3)])
            return self.head(self.features(z).flatten(1)).view(4, b, -1).mean(0)
        return self.head(self.features(x).flatten(1))


def build_classifier(n_classes: int = DEFAULT_CONFIG["n_classes"], width: int = DEFAULT_CONFIG["width"],
                     depth: int = DEFAULT_CONFIG["depth"], image_shape=tuple(DEFAULT_CONFIG["image_shape"]),
                     symmetry: str = DEFAULT_CONFIG["symmetry"]) -> ParticleClassifier:
    """Factory used by :func:`cryoxplain.models.build_model` (``arch="classifier"``)."""
    return ParticleClassifier(n_classes=n_classes, width=width, depth=depth, image_shape=image_shape,
                              symmetry=symmetry)


#: the ``classifier`` architecture (entry point ``cryoxplain.architectures``)
ARCHITECTURE = ArchitectureSpec("classifier", "classify", build_classifier,
                                small_config={"n_classes": 3, "width": 4, "depth": 2, "image_shape": [16, 20]},
                                description="small CNN particle classifier (fixed particle size)")
