"""Cartesian CNN denoiser: a DnCNN-style (residual) network on the pixel grid.

Architecture (Zhang et al., "Beyond a Gaussian denoiser: residual learning of deep CNN for image
denoising", IEEE TIP 26:3142, 2017; the thesis' cartesian baseline, §7.2)::

    conv k×k (1 → width) + ReLU
    (depth − 2) × [conv k×k (width → width, no bias) + BatchNorm + ReLU]
    conv k×k (width → 1)                      → body(input)
    output = input − body(input)              (residual=True, default: body predicts the noise)
    output = body(input)                      (residual=False: body predicts the clean image)

Residual learning (config ``residual``, default True) is DnCNN's choice and the shipped default
model's.  On the pixel grid both formulations work (SNR 1/4, ``benchmarks/equivariance_experiments.py
--quick``: output SNR 4.67 dB residual vs 5.26 dB predicting the signal, docs/equivariance.md §4);
the spiral denoiser defaults to ``residual=False`` because there residual learning fails.  Model
files written before the key existed load as residual nets.

Contrast-sign equivariance (config ``odd``, default True for new models): the network is made odd
by construction, ``F(x) = (G(x) − G(−x))/2`` with ``G`` the plain (residual or signal) network
above, so ``F(−x) = −F(x)`` holds exactly (to float rounding) for every weight, in training and at
inference: a denoiser then treats protein-dark and protein-bright particles alike, and cannot add a
sign-independent offset or texture.  Both halves run as one batch of ``2B`` images, so it costs two
forward passes.  Chosen over a bias-free odd network by measurement (docs/denoise.md, "Contrast
sign").  The last convolution of an odd net has no bias (it would cancel).  Model files written before the key existed load with ``odd=False`` (unchanged).

Optionally the hidden convolutions are dilated (``dilations``, one factor per hidden layer, e.g.
``[1, 2, 3, 4, 3, 2]`` for depth 8 — the dilated DnCNN variant of Zhang et al., "Learning deep CNN
denoiser prior for image restoration", CVPR 2017): same parameters and cost, a receptive field
about twice as wide, which helps at low SNR.

All convolutions use zero "same" padding, so the network is fully convolutional
(``input_shape = None``) and an output pixel depends only on the input pixels within
:attr:`CartesianDenoiser.receptive_radius` = ``(k−1)/2 · (2 + Σ dilations)`` (``depth·(k−1)/2``
without dilation) of it — the fact that tiled micrograph denoising relies on.  The network works on *normalised* images (zero mean, unit
standard deviation per image); the normalisation is applied by the callers
(:mod:`cryoxplain.denoise.train` and :mod:`cryoxplain.denoise.apply`), not stored in the weights.

The spiral denoiser (:mod:`cryoxplain.models.spiral`) uses the same family and the same config
keys (``depth``, ``width``, ``kernel_size``) so that the two can be compared at equal size.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from .protocol import ModelBase
from .registry import ArchitectureSpec, config_bool

#: default configuration of the cartesian denoiser (also the shipped default model's)
DEFAULT_CONFIG = {"depth": 8, "width": 32, "kernel_size": 3, "residual": True, "odd": True}


def odd_part(fn, x: torch.Tensor) -> torch.Tensor:
    """``(fn(x) − fn(−x))/2``, evaluated as one batch ``[x; −x]``: the odd part of ``fn``, exactly
    antisymmetric in ``x`` (``odd_part(fn, −x) == −odd_part(fn, x)``).  Used by the ``odd=True``
    denoisers (cartesian and spiral)."""
    b = x.shape[0]
    y = fn(torch.cat([x, -x], dim=0))
    return 0.5 * (y[:b] - y[b:])


class CartesianDenoiser(ModelBase):
    """DnCNN-style denoiser; see the module docstring.

    Parameters
    ----------
    depth : int
        Number of convolution layers (≥ 2).
    width : int
        Feature channels of the hidden layers.
    kernel_size : int
        Odd kernel size k of every convolution.
    dilations : list of int or None
        Dilation of each of the ``depth − 2`` hidden convolutions (None: all 1).
    residual : bool
        True: ``output = input − body(input)`` (the body estimates the noise); False:
        ``output = body(input)`` (the body estimates the clean image).
    odd : bool
        True: the output is the odd part of the above, ``(G(x) − G(−x))/2``, so ``F(−x) = −F(x)``
        exactly (module docstring).

    Input and output are ``(B, 1, H, W)`` float tensors of any H, W.
    """

    task = "denoise"
    #: fully convolutional: any image size is accepted
    input_shape = None
    #: explainers' CPU passes hold at most this many pixels (cryoxplain.explain.paths.pass_size): full-
    #: resolution activations of every layer (twice with ``odd``) leave the cache early; the shipped
    #: 64×64 model costs 42.2 ms per image forward+backward in passes of 1 image, 46.7 ms in passes of 8
    #: and 92-94 ms in passes of 50-64 (1 thread; docs/benchmarks-explainers.md)
    cpu_pass_pixels = 2 ** 12

    def __init__(self, depth: int = 8, width: int = 32, kernel_size: int = 3, dilations=None,
                 residual: bool = True, odd: bool = True):
        super().__init__()
        self.residual = config_bool(residual, "residual")
        self.odd = config_bool(odd, "odd")
        depth, width, kernel_size = int(depth), int(width), int(kernel_size)
        if depth < 2:
            raise ParameterError(f"cartesian denoiser: depth must be ≥ 2, got {depth}")
        if width < 1:
            raise ParameterError(f"cartesian denoiser: width must be ≥ 1, got {width}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ParameterError(f"cartesian denoiser: kernel_size must be odd and ≥ 1, got {kernel_size}")
        if dilations is not None:
            dilations = [int(d) for d in dilations]
            if len(dilations) != depth - 2 or min(dilations, default=1) < 1:
                raise ParameterError(f"cartesian denoiser: dilations must be {depth - 2} integers ≥ 1 "
                                     f"(one per hidden layer), got {dilations}")
        self.depth, self.width, self.kernel_size = depth, width, kernel_size
        self.dilations = dilations
        pad = kernel_size // 2
        layers: list[nn.Module] = [nn.Conv2d(1, width, kernel_size, padding=pad), nn.ReLU(inplace=True)]
        for d in (dilations or [1] * (depth - 2)):
            layers += [nn.Conv2d(width, width, kernel_size, padding=pad * d, dilation=d, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        # an odd net cancels a constant output bias: the last convolution has none
        layers.append(nn.Conv2d(width, 1, kernel_size, padding=pad, bias=not self.odd))
        self.body = nn.Sequential(*layers)

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that influence one output pixel."""
        hidden = sum(self.dilations) if self.dilations is not None else self.depth - 2
        return (2 + hidden) * (self.kernel_size // 2)

    def config(self) -> dict:
        cfg = {"depth": self.depth, "width": self.width, "kernel_size": self.kernel_size,
               "residual": self.residual, "odd": self.odd}
        if self.dilations is not None:
            cfg["dilations"] = list(self.dilations)
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(x.shape)}")
        body = odd_part(self.body, x) if self.odd else self.body(x)
        return x - body if self.residual else body

    def for_inference(self) -> "nn.Module":
        """A frozen copy for applying the trained net: every batch norm is folded into the preceding
        convolution (the eval-mode function is unchanged up to float rounding) and the weights are
        stored channels-last, which is markedly faster on CPUs (oneDNN).  Not for training."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        mods, out, i = list(self.body), [], 0
        while i < len(mods):
            if isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
                out.append(fuse_conv_bn_eval(mods[i].eval(), mods[i + 1].eval()))
                i += 2
            else:
                out.append(mods[i])
                i += 1
        return _InferenceCartesian(nn.Sequential(*out), self.receptive_radius, self.residual, self.odd).eval()


class _InferenceCartesian(nn.Module):
    """The folded, channels-last form made by :meth:`CartesianDenoiser.for_inference`."""

    task = "denoise"
    input_shape = None
    cpu_pass_pixels = CartesianDenoiser.cpu_pass_pixels

    def __init__(self, body: nn.Sequential, receptive_radius: int, residual: bool = True, odd: bool = False):
        super().__init__()
        self.odd = odd
        self.body = body.to(memory_format=torch.channels_last)
        self.receptive_radius = receptive_radius
        self.residual = residual
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def body(t):
            return self.body(t.contiguous(memory_format=torch.channels_last)).contiguous()

        b = odd_part(body, x) if self.odd else body(x)
        return x - b if self.residual else b


def build_cartesian(depth: int = DEFAULT_CONFIG["depth"], width: int = DEFAULT_CONFIG["width"],
                    kernel_size: int = DEFAULT_CONFIG["kernel_size"], dilations=None,
                    residual: bool = DEFAULT_CONFIG["residual"], odd: bool = DEFAULT_CONFIG["odd"]) -> CartesianDenoiser:
    """Factory used by :func:`cryoxplain.models.build_model` (``arch="cartesian"``)."""
    return CartesianDenoiser(depth=depth, width=width, kernel_size=kernel_size, dilations=dilations,
                             residual=residual, odd=odd)


#: the ``cartesian`` architecture (entry point ``cryoxplain.architectures``); files written before
#: ``residual`` existed are residual nets, files written before ``odd`` existed are not odd
ARCHITECTURE = ArchitectureSpec("cartesian", "denoise", build_cartesian, legacy_defaults={"residual": True, "odd": False},
                                small_config={"depth": 3, "width": 4},
                                description="DnCNN-style CNN denoiser on the pixel grid")
