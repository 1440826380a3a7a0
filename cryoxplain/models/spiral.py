"""Spiral CNN: ribbon convolutions on an Archimedean spiral and the spiral denoiser.

Thesis chapter 7.3 (J. Sagemüller, PhD thesis 2023, "Spiral convolutional neural network"): images are represented by
their values on a spiral path through the disc (:mod:`cryoxplain.geometry.spiral`); a
convolution resamples the previous layer's spiral signal onto a *ribbon* of ``k`` rows around
the path with a fixed sparse matrix, then runs an ordinary ``k × k`` ``conv2d`` on the
``k × n_spls`` ribbon – *valid* across the ribbon (``k`` rows → 1) and *same* (zero-padded, not
circular) along the path.  Because the ribbon follows the path's local frame (normal, tangent),
a kernel pattern is rotated with its position on the disc: the network is approximately
rotation-equivariant by construction.

Tensor layouts
--------------
Spiral signals are ``(B, C, n_spls)`` tensors.  Internally they are stored "channels-last"
(physically ``(B, n_spls, C)``) so that the sparse resampling – an ``embedding_bag`` gather over
rows – and ``conv2d`` (channels-last) hand tensors to each other without copies.

What the network predicts (config ``residual``)
-----------------------------------------------
``residual=False`` (default): the body's spiral output is the clean-signal estimate,
``output = S2G(body(G2S(x)))`` on the disc – the thesis' formulation (§7.1).
``residual=True``: DnCNN-style residual learning, ``output = x − S2G(body(G2S(x)))``.  The
residual form works badly on the spiral: the noise estimate has to pass through the grid→spiral
and spiral→grid resampling, which cannot carry pixel-level white noise, so the noise it should
remove stays in the output, and the resampling's dependence on the sample/pixel alignment makes
the output less equivariant.  Measured (``benchmarks/equivariance_experiments.py --quick``, SNR
1/4, matched cartesian net; docs/equivariance.md §4): residual spiral −2.33 dB output SNR and
equivariance error E 0.67 (cartesian 4.67 dB, 0.23); signal-predicting spiral 5.85 dB and E 0.105
(cartesian 5.26 dB, 0.125).  Model files written before the key existed were residual nets and
load as ``residual=True``.

Contrast-sign equivariance (config ``odd``)
-----------------------------------------
``odd=True`` (default for new models): the output is the odd part of the net above,
``F(x) = (G(x) − G(−x))/2`` (:func:`cryoxplain.models.cartesian.odd_part`, one batch of ``2B``),
so ``F(−x) = −F(x)`` exactly; the outside rules (zero, passthrough) are odd too.  Files written
before the key existed load with ``odd=False``.

Rule outside the disc (thesis Remark 31)
----------------------------------------
The spiral denoiser acts only on :attr:`SpiralDenoiser.mask` (the pixels inside the spiral's
disc, see :class:`~cryoxplain.geometry.spiral.SpiralOperators`) and says so:
:attr:`SpiralDenoiser.valid_radius` (the mask radius; metrics window its output inside that disc,
:func:`cryoxplain.models.protocol.model_valid_radius`).  With ``outside="zero"`` (the default when
the net predicts the signal) the output is zero outside the mask (a hard circular mask, as used for
particle averaging; the thesis' setting); with ``outside="passthrough"`` (the default of the
residual net) the output equals the input outside the mask – the model makes no claim there.
Ribbon samples beyond the outermost winding are zero (zero padding, as an ordinary CNN pads the
image border).  Model files written before the default changed record their ``outside``.

Prefilter and oversampling (config keys ``prefilter_sigma``, ``oversample``)
--------------------------------------------------------------------------
Bilinear grid→spiral sampling of pixel noise at ≈ 1 px spacing cannot rotate: the fixed resampling
``S2G(G2S(x))`` alone has E ≈ 0.2 on white noise.  An isotropic Gaussian prefilter of
``prefilter_sigma`` px (:mod:`cryoxplain.imaging.filters`, reflect borders; folded into the
grid→spiral matrix, so it costs nothing at run time) before the spiral removes the pixel-scale
content no rotation can carry; ``oversample = s`` samples the spiral at ≈ 1/s px
(:func:`cryoxplain.geometry.spiral.spiral_geometry`).  Measured resampling floors for each
(:func:`spiral_resampling_floor`): docs/equivariance.md §1.  Files written before these keys
existed load with ``prefilter_sigma=0``, ``oversample=1``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ParameterError, ShapeError
from ..geometry.spiral import SpiralGeometry, SpiralOperators, spiral_geometry, spiral_operators
from .cartesian import odd_part
from .protocol import ModelBase
from .registry import ArchitectureSpec, config_bool

__all__ = ["SparseResampler", "SpiralConv2d", "SpiralDenoiser", "spiral_denoiser", "spiral_param_count",
           "prefiltered_grid_to_spiral", "spiral_resampling_floor", "DEFAULT_PREFILTER_SIGMA"]


class _SparseApply(torch.autograd.Function):
    """``y = A x`` (or ``Aᵀ x``) for ``x`` of shape ``(B·n_in, C)``; backward uses the transpose."""

    @staticmethod
    def forward(ctx, x, op, batch, transpose):
        ctx.op, ctx.batch, ctx.transpose = op, batch, transpose
        return op._gather(x, batch, transpose)

    @staticmethod
    def backward(ctx, grad):
        return _SparseApply.apply(grad.contiguous(), ctx.op, ctx.batch, not ctx.transpose), None, None, None


class SparseResampler(nn.Module):
    """A fixed sparse linear map ``(…, n_in) → (…, n_out)`` applied to batched multi-channel signals.

    Built from a ``scipy.sparse`` matrix ``(n_out, n_in)``.  The product is computed with
    :func:`torch.nn.functional.embedding_bag` (``mode="sum"`` with per-sample weights) over the
    rows of a channels-last view, on whatever device the module lives; the backward pass applies
    the transposed matrix the same way (so it is differentiable to any order).  The matrix is
    held in non-persistent buffers: it never enters a ``state_dict`` or a model file – it is
    rebuilt from the geometry.
    """

    def __init__(self, matrix: sp.spmatrix):
        super().__init__()
        A = sp.csr_matrix(matrix, dtype=np.float32)
        A.sort_indices()
        self.n_out, self.n_in = A.shape
        self.max_nnz = int(np.diff(A.indptr).max(initial=0))
        for prefix, M in (("f", A), ("t", A.T.tocsr())):
            self.register_buffer(f"{prefix}_ind", torch.from_numpy(M.indices.astype(np.int32)), persistent=False)
            self.register_buffer(f"{prefix}_ptr", torch.from_numpy(M.indptr[:-1].astype(np.int32)), persistent=False)
            self.register_buffer(f"{prefix}_w", torch.from_numpy(M.data.astype(np.float32)), persistent=False)
        self._batched: dict = {}

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, nnz={int(self.f_ind.numel())}"

    def _apply(self, fn, recurse=True):  # device/dtype moves invalidate the batched index cache
        self._batched = {}
        return super()._apply(fn, recurse)

    def _batch_arrays(self, batch: int, transpose: bool, dtype: torch.dtype):
        key = (batch, transpose, dtype, self.f_ind.device)
        hit = self._batched.get(key)
        if hit is None:
            p = "t" if transpose else "f"
            ind, ptr, w = getattr(self, f"{p}_ind"), getattr(self, f"{p}_ptr"), getattr(self, f"{p}_w")
            n_cols = self.n_out if transpose else self.n_in
            # int32 indices (half the memory) unless batch × size would overflow them
            it = torch.int32 if batch * max(n_cols, ind.numel()) < 2**31 - 1 else torch.int64
            b = torch.arange(batch, device=ind.device, dtype=it)
            hit = ((ind.to(it)[None] + b[:, None] * n_cols).reshape(-1),
                   (ptr.to(it)[None] + b[:, None] * ind.numel()).reshape(-1),
                   w.to(dtype).repeat(batch))
            if len(self._batched) >= 8:
                self._batched.clear()
            self._batched[key] = hit
        return hit

    def _gather(self, x: torch.Tensor, batch: int, transpose: bool) -> torch.Tensor:
        n_rows = self.n_in if transpose else self.n_out
        if x.shape[1] == 0 or batch == 0:
            return x.new_zeros(batch * n_rows, x.shape[1])
        ind, off, w = self._batch_arrays(batch, transpose, x.dtype)
        # detach: autograd is handled by _SparseApply; this selects the forward-only kernel
        y = F.embedding_bag(ind, x.detach(), off, mode="sum", per_sample_weights=w)
        if y.shape[0] != batch * n_rows:  # trailing empty rows are not emitted by embedding_bag
            y = torch.cat([y, y.new_zeros(batch * n_rows - y.shape[0], y.shape[1])])
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, n_in)`` → ``(B, C, n_out)`` (a channels-last view)."""
        if x.ndim != 3 or x.shape[-1] != self.n_in:
            raise ShapeError(f"sparse resampler expects (B, C, {self.n_in}) signals, got {tuple(x.shape)}")
        B, C, _ = x.shape
        xs = x.transpose(1, 2).reshape(B * self.n_in, C)  # free when x is channels-last already
        y = _SparseApply.apply(xs, self, B, False)
        return y.view(B, self.n_out, C).transpose(1, 2)


class SpiralConv2d(nn.Module):
    """Spiral convolution: resample to a ``k``-row ribbon, then ``conv2d`` with a ``k × k`` kernel.

    Input and output are spiral signals ``(B, C, n_spls)``.  The weight has the ordinary
    ``conv2d`` shape ``(out, in, k, k)``: kernel rows run across the ribbon (inner → outer,
    along the path's normal), kernel columns along the path (towards larger radius/angle).

    Parameters
    ----------
    in_channels, out_channels, kernel_size : as for :class:`torch.nn.Conv2d` (odd ``kernel_size``).
    geometry : a :class:`SpiralGeometry` (or ``ribbon``, a prebuilt :class:`SparseResampler` of a
        ``kernel_size``-row ribbon to share between layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 geometry: SpiralGeometry | None = None, bias: bool = True,
                 ribbon: SparseResampler | None = None, disk_cache: bool = True):
        super().__init__()
        k = int(kernel_size)
        if k < 1 or k % 2 == 0:
            raise ParameterError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if ribbon is None:
            if geometry is None:
                raise ParameterError("SpiralConv2d needs a geometry or a ribbon resampler")
            ribbon = SparseResampler(spiral_operators(geometry, k, disk_cache=disk_cache).ribbon(k))
        if ribbon.n_out % k or ribbon.n_out // k != ribbon.n_in:
            raise ParameterError(f"ribbon resampler of shape ({ribbon.n_out}, {ribbon.n_in}) is not a {k}-row ribbon")
        self.kernel_size = k
        self.n_spls = ribbon.n_in
        self.ribbon = ribbon
        conv = nn.Conv2d(in_channels, out_channels, k, bias=bias)  # for PyTorch's default init
        self.weight = conv.weight
        self.bias = conv.bias

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def ribbon_values(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, n_spls)`` → ribbon ``(B, C, k, n_spls)`` (channels-last)."""
        B, C, n = x.shape
        r = self.ribbon(x)                                   # (B, C, k·n), physically (B, k·n, C)
        return r.transpose(1, 2).reshape(B, self.kernel_size, n, C).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.in_channels or x.shape[2] != self.n_spls:
            raise ShapeError(f"SpiralConv2d expects (B, {self.in_channels}, {self.n_spls}) spiral signals, "
                             f"got {tuple(x.shape)}")
        r = self.ribbon_values(x)
        y = F.conv2d(r, self.weight, self.bias, padding=(0, self.kernel_size // 2))
        # squeeze, not y[:, :, 0]: its backward is a view, so gradients stay channels-last
        return y.squeeze(2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"n_spls={self.n_spls}, bias={self.bias is not None}")


class _SpiralBN(nn.BatchNorm1d):
    """BatchNorm over a spiral signal ``(B, C, n)`` (statistics over batch and path).

    Runs on the ``(B·n, C)`` channels-last view, so that forward and backward stay in that
    layout (no copies); same parameters and buffers as ``BatchNorm1d/2d(C)``.
    """

    def forward(self, x):
        B, C, n = x.shape
        y = super().forward(x.transpose(1, 2).reshape(B * n, C))
        return y.view(B, n, C).transpose(1, 2)


OUTSIDE_RULES = ("passthrough", "zero")
#: σ (px) of the isotropic prefilter before grid→spiral sampling (docs/equivariance.md §1)
DEFAULT_PREFILTER_SIGMA = 0.7


def prefiltered_grid_to_spiral(g2s: sp.spmatrix, box_size: int, sigma: float) -> sp.csr_matrix:
    """``G2S · K_σ``: the grid→spiral matrix after an isotropic Gaussian blur of ``sigma`` px.

    ``K_σ`` is the 2-D blur of :func:`cryoxplain.imaging.filters.gaussian_blur` (reflect borders)
    as a matrix on row-major images, the Kronecker product of its 1-D operators
    (:func:`~cryoxplain.imaging.filters.gaussian_blur_matrices`); ``sigma = 0``: ``g2s`` unchanged.
    """
    if sigma == 0:
        return sp.csr_matrix(g2s)
    from ..imaging.filters import gaussian_blur_matrices

    G, _ = gaussian_blur_matrices(int(box_size), [float(sigma)], border="reflect", dtype=torch.float64)
    g = sp.csr_matrix(G[0].cpu().numpy())
    g.eliminate_zeros()
    out = (sp.csr_matrix(g2s, dtype=np.float64) @ sp.kron(g, g, format="csr")).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


class SpiralDenoiser(ModelBase):
    """DnCNN-style denoiser on the spiral (same layer family as the cartesian denoiser).

    ``conv(1→width)+ReLU, (depth−2)×[conv(width→width)+BN+ReLU], conv(width→1)``, all spiral
    convolutions with ``kernel_size × kernel_size`` kernels on the ribbon.  The body's output on
    the spiral is resampled to the pixel grid (S2G); on :attr:`mask`

    * ``residual=False`` (default): ``output = S2G(body)`` – the body predicts the clean signal;
    * ``residual=True``: ``output = input − S2G(body)`` – the body predicts the noise.

    The default is ``False`` because residual learning fails on the spiral: at SNR 1/4 the
    residual spiral reaches −2.33 dB output SNR against +4.67 dB for the matched cartesian net,
    and is less equivariant (E 0.67 vs 0.23), since the noise estimate must pass through the
    spiral resampling, which cannot carry pixel-level noise; predicting the signal, the same
    layers reach 5.85 dB vs 5.26 dB and E 0.105 vs 0.125 (``benchmarks/equivariance_experiments.py
    --quick``, docs/equivariance.md §4; superseded numbers).  Outside the mask the output follows
    ``outside`` (default: ``"zero"`` for the signal net, ``"passthrough"`` for the residual net; see
    the module docstring).  ``prefilter_sigma``/``oversample``: module docstring.  Input:
    ``(B, 1, box_size, box_size)``.
    """

    task = "denoise"

    def __init__(self, box_size: int = 64, depth: int = 8, width: int = 32, kernel_size: int = 3,
                 n_wind: int | None = None, n_spls: int | None = None, outside: str | None = None,
                 residual: bool = False, disk_cache: bool = True, prefilter_sigma: float = DEFAULT_PREFILTER_SIGMA,
                 oversample: int = 1, odd: bool = True):
        super().__init__()
        self.residual = config_bool(residual, "residual")
        self.odd = config_bool(odd, "odd")
        if int(depth) < 2:
            raise ParameterError(f"depth must be ≥ 2 (first and last convolution), got {depth}")
        if int(width) < 1:
            raise ParameterError(f"width must be ≥ 1, got {width}")
        if outside is None:
            outside = "passthrough" if self.residual else "zero"
        if outside not in OUTSIDE_RULES:
            raise ParameterError(f"outside must be one of {OUTSIDE_RULES}, got {outside!r}")
        try:
            self.prefilter_sigma = float(prefilter_sigma)
        except (TypeError, ValueError):
            raise ParameterError(f"prefilter_sigma must be a number of pixels >= 0, got {prefilter_sigma!r}") from None
        if not self.prefilter_sigma >= 0:
            raise ParameterError(f"prefilter_sigma must be >= 0 pixels, got prefilter_sigma={prefilter_sigma}")
        self.geometry = spiral_geometry(box_size, n_wind, n_spls, oversample=oversample)
        self.oversample = int(oversample)
        self.ops: SpiralOperators = spiral_operators(self.geometry, int(kernel_size), disk_cache=disk_cache)
        self.input_shape = (self.geometry.box_size, self.geometry.box_size)
        self.outside = outside
        self.depth, self.width, self.kernel_size = int(depth), int(width), int(kernel_size)
        self.to_spiral = SparseResampler(prefiltered_grid_to_spiral(self.ops.grid_to_spiral, self.geometry.box_size,
                                                                    self.prefilter_sigma))
        self.to_grid = SparseResampler(self.ops.spiral_to_grid)
        ribbon = SparseResampler(self.ops.ribbon(self.kernel_size))
        self.register_buffer("mask", torch.from_numpy(self.ops.mask.copy()), persistent=False)

        def conv(cin, cout, bias):
            return SpiralConv2d(cin, cout, self.kernel_size, ribbon=ribbon, bias=bias)

        layers: list[nn.Module] = [conv(1, self.width, True), nn.ReLU()]
        for _ in range(self.depth - 2):
            layers += [conv(self.width, self.width, False), _SpiralBN(self.width), nn.ReLU()]
        layers.append(conv(self.width, 1, not self.odd))  # an odd net would cancel the output bias
        self.body = nn.Sequential(*layers)

    def config(self) -> dict:
        """The complete config (defaults resolved): ``build_model("spiral", **config)`` rebuilds this net."""
        g = self.geometry
        return {"box_size": g.box_size, "depth": self.depth, "width": self.width,
                "kernel_size": self.kernel_size, "n_wind": g.n_wind, "n_spls": g.n_spls,
                "outside": self.outside, "residual": self.residual, "prefilter_sigma": self.prefilter_sigma,
                "oversample": self.oversample, "odd": self.odd}

    @property
    def valid_radius(self) -> float:
        """Radius (px) of the disc about the box centre where the output is a prediction: the
        spiral's mask radius (:class:`~cryoxplain.models.protocol.HasValidDisc`)."""
        return float(self.geometry.mask_radius)

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed resampling path alone, ``S2G(G2S(x))`` with the prefilter (what the net computes
        with an identity body), zero outside :attr:`mask`: its equivariance error is the net's
        resampling floor (:func:`spiral_resampling_floor`)."""
        self.check_input(x)
        B = x.shape[0]
        s = self.to_spiral(x.reshape(B, 1, -1).to(self.mask.device))
        return self.to_grid(s).reshape(B, 1, *self.input_shape)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ShapeError(f"spiral denoiser expects (B, 1, H, W) image batches, got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.input_shape:
            b = self.input_shape[0]
            raise ShapeError(
                f"this spiral model works on {b}×{b} px particle boxes, got {x.shape[-2]}×{x.shape[-1]}; "
                f"re-box/resample the particles to {b} px, or train a spiral model for this box size "
                f"(spiral models cannot denoise micrographs or non-square images)")

    def spiral_body(self, x: torch.Tensor) -> torch.Tensor:
        """The body's output on the spiral, ``(B, 1, n_spls)``: the noise estimate when
        :attr:`residual`, else the clean-signal estimate."""
        self.check_input(x)
        B = x.shape[0]
        s = self.to_spiral(x.reshape(B, 1, -1))
        return self.body(s)

    #: old name of :meth:`spiral_body` (from when the body always predicted the noise)
    spiral_noise = spiral_body

    def _grid_body(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_grid(self.spiral_body(x)).reshape(x.shape[0], 1, *self.input_shape)  # 0 outside the mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = odd_part(self._grid_body, x) if self.odd else self._grid_body(x)
        if self.residual:
            out = x - body                            # = x outside the mask
        elif self.outside == "passthrough":
            out = torch.where(self.mask, body, x)
        else:
            out = body
        if self.outside == "zero":
            out = out * self.mask.to(out.dtype)
        return out

    def for_inference(self) -> "SpiralDenoiser":
        """A frozen copy for applying the trained net: every batch norm folded into the preceding
        spiral convolution (same eval-mode function up to float rounding).  Not for training.
        Used automatically by :mod:`cryoxplain.denoise` when present."""
        import copy

        net = copy.deepcopy(self, memo={id(self.ops): self.ops}).eval()
        mods, out, i = list(net.body), [], 0
        while i < len(mods):
            m = mods[i]
            if isinstance(m, SpiralConv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], _SpiralBN):
                bn = mods[i + 1]
                folded = SpiralConv2d(m.in_channels, m.out_channels, m.kernel_size, ribbon=m.ribbon, bias=True)
                with torch.no_grad():
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    folded.weight.copy_(m.weight * scale[:, None, None, None])
                    b = m.bias if m.bias is not None else torch.zeros_like(bn.running_mean)
                    folded.bias.copy_((b - bn.running_mean) * scale + bn.bias)
                out.append(folded.to(m.weight.device))
                i += 2
            else:
                out.append(m)
                i += 1
        net.body = nn.Sequential(*out)
        for p in net.parameters():
            p.requires_grad_(False)
        return net.eval()

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"box_size={g.box_size}, n_wind={g.n_wind}, n_spls={g.n_spls}, outside={self.outside!r}, "
                f"residual={self.residual}, prefilter_sigma={self.prefilter_sigma:g}, oversample={self.oversample}, "
                f"odd={self.odd}")


def spiral_param_count(depth: int, width: int, kernel_size: int = 3, odd: bool = True) -> int:
    """Number of trainable parameters of :class:`SpiralDenoiser` (independent of the geometry).

    Equal to that of a cartesian DnCNN with the same depth/width/kernel, ``odd`` and bias
    convention (an odd net has no output bias).
    """
    k2 = kernel_size * kernel_size
    first = k2 * width + width
    middle = (depth - 2) * (k2 * width * width + 2 * width)
    last = k2 * width + (0 if odd else 1)
    return first + middle + last


def spiral_denoiser(box_size: int = 64, depth: int = 8, width: int = 32, kernel_size: int = 3,
                    n_wind: int | None = None, n_spls: int | None = None,
                    outside: str | None = None, residual: bool = False,
                    prefilter_sigma: float = DEFAULT_PREFILTER_SIGMA, oversample: int = 1,
                    odd: bool = True) -> SpiralDenoiser:
    """Factory registered as architecture ``spiral`` (task ``denoise``); see :class:`SpiralDenoiser`."""
    return SpiralDenoiser(box_size=box_size, depth=depth, width=width, kernel_size=kernel_size,
                          n_wind=n_wind, n_spls=n_spls, outside=outside, residual=residual,
                          prefilter_sigma=prefilter_sigma, oversample=oversample, odd=odd)


def spiral_resampling_floor(model: SpiralDenoiser, images, angles_deg=None, window=None) -> dict:
    """Equivariance error of the spiral's fixed resampling path (:meth:`SpiralDenoiser.resample`) on
    ``images`` (e.g. white noise): ``{"per_angle": {θ: E}, "mean": …, "std": …}`` with the windowed
    metric (default: the model's window, 12 stratified off-grid angles).  No trained body can be
    more equivariant than this on those images."""
    from ..metrics.equivariance import common_window, equivariance_error, offgrid_angles

    box = model.geometry.box_size
    e = equivariance_error(model.resample, images, offgrid_angles() if angles_deg is None else angles_deg,
                           window=common_window(box, model) if window is None else window)
    v = np.array(list(e.values()))
    return {"per_angle": e, "mean": float(v.mean()), "std": float(v.std())}


#: the ``spiral`` architecture (entry point ``cryoxplain.architectures``); files written before
#: ``residual`` existed are residual nets (the default then), files written before the prefilter and
#: oversampling keys existed had neither, files written before ``odd`` existed are not odd
ARCHITECTURE = ArchitectureSpec("spiral", "denoise", spiral_denoiser,
                                legacy_defaults={"residual": True, "prefilter_sigma": 0.0, "oversample": 1,
                                                 "odd": False},
                                small_config={"box_size": 24, "depth": 3, "width": 4},
                                description="spiral CNN denoiser (approximately rotation-equivariant, fixed box)")
