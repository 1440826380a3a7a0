"""Targets: the scalar that an explanation explains, one value per image.

An attribution method explains a *scalar* function ``f(x) = target(model(x))``.  A classifier
gives a vector of logits, a denoiser a whole image, so a target picks the scalar:

=========================  ======================  =================================================
CLI spec                   class                   value for output ``y``
=========================  ======================  =================================================
``class:K``                :class:`ClassLogit`     logit ``y[K]`` (classifier)
``predicted``              :class:`PredictedClass` logit of the class predicted for the *input*
``pixel:X,Y``              :class:`PixelOutput`    ``y[Y, X]`` (X = column, Y = row, 0-based)
``roi:MASK.mrc``           :class:`ROISum`         ``Σ m·y`` with the mask's values as weights
``roi:X0,Y0,X1,Y1``        :class:`ROISum`         ``Σ y`` over the box ``[X0, X1) × [Y0, Y1)``
``roi:X,Y,R``              :class:`ROISum`         ``Σ y`` over the disc of radius R at (X, Y)
``disc-energy[:R]``        :class:`DiscEnergy`     ``Σ_{|r|≤R} y²`` (default R: inscribed disc)
``reference:REF.mrc``      :class:`ReferenceProjection`  ``⟨y, r⟩ / ‖r‖``
=========================  ======================  =================================================

See ``docs/targets.md`` for why each one is a meaningful question to ask of an image-to-image
model.  Pixel coordinates follow the image convention of the MRC files (X = column, Y = row,
origin at the first pixel); the particle centre of an ``N × N`` box is at ``(N // 2, N // 2)``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError
from .base import Target

__all__ = ["ClassLogit", "PredictedClass", "PixelOutput", "ROISum", "DiscEnergy", "ReferenceProjection",
           "parse_target", "default_target", "TARGET_SPECS", "disc_mask"]

#: one-line help for every CLI form (shown by ``cryoxplain explain --help`` and in errors)
TARGET_SPECS = ("class:K", "predicted", "pixel:X,Y", "roi:MASK.mrc", "roi:X0,Y0,X1,Y1", "roi:X,Y,R",
                "disc-energy[:R]", "reference:REF.mrc")


def _require_image_output(target: Target, output_shape: tuple) -> tuple[int, int]:
    if len(output_shape) != 4:
        raise ParameterError(f"target {target.describe()} needs an image-to-image model (output (B, C, H, W)), "
                             f"but the model outputs shape {tuple(output_shape)}; for a classifier use class:K or predicted")
    return int(output_shape[-2]), int(output_shape[-1])


def _require_logits(target: Target, output_shape: tuple) -> int:
    if len(output_shape) != 2:
        raise ParameterError(f"target {target.describe()} needs a classifier (output (B, classes)), but the model outputs "
                             f"shape {tuple(output_shape)}; for a denoiser use pixel:, roi:, disc-energy or reference:")
    return int(output_shape[1])


def disc_mask(shape: tuple[int, int], radius: float | None = None, center: tuple[float, float] | None = None) -> np.ndarray:
    """Boolean ``(H, W)`` disc; default centre the box centre ``(W // 2, H // 2)``, given here as
    ``(x, y)``; default radius: inscribed.  Deprecated location: use
    :func:`cryoxplain.imaging.masks.disc_mask` (which takes the centre as ``(y, x)``)."""
    from ..imaging.masks import disc_mask as _disc

    return _disc(shape, radius, center=None if center is None else (center[1], center[0])) > 0


class ClassLogit(Target):
    """Logit of class ``k`` (pre-softmax, so attributions do not depend on the other classes' scores)."""

    def __init__(self, k: int):
        self.k = int(k)

    def __call__(self, output):
        return output[:, self.k]

    def describe(self):
        return f"class:{self.k}"

    def check(self, output_shape):
        n = _require_logits(self, output_shape)
        if not 0 <= self.k < n:
            raise ParameterError(f"target class {self.k} is out of range: the model has {n} classes (0…{n - 1})")


class _PerImageLogit(Target):
    def __init__(self, classes: torch.Tensor, description: str):
        self.classes, self.description = classes, description

    def __call__(self, output):
        return output.gather(1, self.classes.to(output.device)[:, None])[:, 0]

    def select(self, idx):
        return _PerImageLogit(self.classes[idx.to(self.classes.device)], self.description)

    def describe(self):
        return self.description


class PredictedClass(Target):
    """Logit of the class the model predicts for each *input* (fixed before any perturbation)."""

    def __call__(self, output):  # unbound use: the argmax of this very output
        return output.gather(1, output.argmax(1, keepdim=True))[:, 0]

    def bind(self, model, inputs):
        with torch.no_grad():
            classes = model(inputs).argmax(1)
        return _PerImageLogit(classes, self.describe())

    def describe(self):
        return "predicted"

    def check(self, output_shape):
        _require_logits(self, output_shape)


class PixelOutput(Target):
    """Output intensity at pixel ``(x, y)`` (channel 0): which input pixels make this output pixel."""

    def __init__(self, x: int, y: int):
        self.x, self.y = int(x), int(y)

    def __call__(self, output):
        return output[:, 0, self.y, self.x]

    def describe(self):
        return f"pixel:{self.x},{self.y}"

    def check(self, output_shape):
        h, w = _require_image_output(self, output_shape)
        if not (0 <= self.x < w and 0 <= self.y < h):
            raise ParameterError(f"target pixel (x={self.x}, y={self.y}) is outside the {w}×{h} image "
                                 f"(x must be in 0…{w - 1}, y in 0…{h - 1})")


class ROISum(Target):
    """Weighted sum ``Σ m·y`` of the output over a region (a 0/1 mask sums the region)."""

    def __init__(self, mask: np.ndarray | torch.Tensor, description: str = "roi"):
        m = np.array(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=np.float32)
        if m.ndim != 2:
            raise ParameterError(f"ROI mask must be a 2-D image, got shape {m.shape}")
        if not np.isfinite(m).all():
            raise ParameterError("ROI mask contains NaN or infinite values")
        if not m.any():
            raise ParameterError(f"ROI {description} is empty (all mask weights are 0)")
        self.mask = torch.from_numpy(m)
        self.description = description

    @classmethod
    def box(cls, x0: int, y0: int, x1: int, y1: int, shape: tuple[int, int] | None = None) -> "ROISum":
        """The box ``[x0, x1) × [y0, y1)``; ``shape`` (H, W) is needed to build the mask."""
        if x1 <= x0 or y1 <= y0:
            raise ParameterError(f"ROI box {x0},{y0},{x1},{y1} is empty: need X0 < X1 and Y0 < Y1")
        return _LazyROI("box", (x0, y0, x1, y1), shape)

    @classmethod
    def disc(cls, x: float, y: float, r: float, shape: tuple[int, int] | None = None) -> "ROISum":
        if r <= 0:
            raise ParameterError(f"ROI disc radius must be positive, got {r}")
        return _LazyROI("disc", (x, y, r), shape)

    def __call__(self, output):
        m = self.mask.to(device=output.device, dtype=output.dtype)
        return (output[:, 0] * m).sum(dim=(-2, -1))

    def describe(self):
        return self.description

    def check(self, output_shape):
        h, w = _require_image_output(self, output_shape)
        if tuple(self.mask.shape) != (h, w):
            raise ParameterError(f"ROI mask {self.description} is {self.mask.shape[1]}×{self.mask.shape[0]} "
                                 f"but the images are {w}×{h}")


class _LazyROI(ROISum):
    """A box or disc ROI whose mask is built once the image shape is known (at ``check``)."""

    def __init__(self, kind, numbers, shape=None):
        self.kind, self.numbers = kind, tuple(numbers)
        self.description = f"roi:{','.join(f'{v:g}' for v in self.numbers)}"
        self.mask = None
        if shape is not None:
            self._build(shape)

    def _build(self, shape):
        h, w = int(shape[0]), int(shape[1])
        if self.kind == "box":
            x0, y0, x1, y1 = self.numbers
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise ParameterError(f"ROI box {self.description} reaches outside the {w}×{h} image "
                                     f"(need 0 ≤ X0 < X1 ≤ {w}, 0 ≤ Y0 < Y1 ≤ {h})")
            m = np.zeros((h, w), np.float32)
            m[int(y0):int(y1), int(x0):int(x1)] = 1
        else:
            x, y, r = self.numbers
            if not (0 <= x < w and 0 <= y < h):
                raise ParameterError(f"ROI disc centre (x={x:g}, y={y:g}) is outside the {w}×{h} image")
            m = disc_mask((h, w), r, (x, y)).astype(np.float32)
        self.mask = torch.from_numpy(m)

    def check(self, output_shape):
        h, w = _require_image_output(self, output_shape)
        if self.mask is None or tuple(self.mask.shape) != (h, w):
            self._build((h, w))

    def __call__(self, output):
        if self.mask is None:
            self._build(output.shape[-2:])
        return super().__call__(output)


class DiscEnergy(Target):
    """Output energy ``Σ y²`` inside the particle disc (radius ``R`` px, default inscribed)."""

    def __init__(self, radius: float | None = None):
        if radius is not None and radius <= 0:
            raise ParameterError(f"disc-energy radius must be positive, got {radius}")
        self.radius = radius
        self._mask = {}

    def _mask_for(self, shape, device, dtype):
        key = (tuple(shape), str(device), dtype)
        if key not in self._mask:
            self._mask[key] = torch.from_numpy(disc_mask(tuple(shape), self.radius)).to(device=device, dtype=dtype)
        return self._mask[key]

    def __call__(self, output):
        m = self._mask_for(output.shape[-2:], output.device, output.dtype)
        return (output[:, 0] ** 2 * m).sum(dim=(-2, -1))

    def describe(self):
        return "disc-energy" if self.radius is None else f"disc-energy:{self.radius:g}"

    def check(self, output_shape):
        h, w = _require_image_output(self, output_shape)
        if self.radius is not None and self.radius > np.hypot(h, w) / 2:
            raise ParameterError(f"disc-energy radius {self.radius:g} px is larger than the {w}×{h} image")


class ReferenceProjection(Target):
    """Scalar projection ``⟨y, r⟩ / ‖r‖`` of the output onto a reference image ``r``."""

    def __init__(self, reference: np.ndarray | torch.Tensor, description: str = "reference"):
        r = np.asarray(reference.detach().cpu() if isinstance(reference, torch.Tensor) else reference, dtype=np.float64)
        if r.ndim != 2:
            raise ParameterError(f"reference must be one 2-D image, got shape {r.shape}")
        if not np.isfinite(r).all():
            raise ParameterError("reference image contains NaN or infinite values")
        norm = float(np.linalg.norm(r))
        if norm == 0:
            raise ParameterError("reference image is all zeros; its direction is undefined")
        self.unit = torch.from_numpy((r / norm).astype(np.float32))
        self.description = description

    def __call__(self, output):
        u = self.unit.to(device=output.device, dtype=output.dtype)
        return (output[:, 0] * u).sum(dim=(-2, -1))

    def describe(self):
        return self.description

    def check(self, output_shape):
        h, w = _require_image_output(self, output_shape)
        if tuple(self.unit.shape) != (h, w):
            raise ParameterError(f"{self.description} is {self.unit.shape[1]}×{self.unit.shape[0]} but the images are {w}×{h}")


def _read_image(path: str, what: str) -> np.ndarray:
    from ..io.mrc import read_mrc

    data, _ = read_mrc(path)
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise ParameterError(f"{what} {path}: holds {data.shape[0]} images; give a single image")
        data = data[0]
    return data


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _numbers(text: str) -> list[float] | None:
    parts = [p.strip() for p in text.split(",")]
    if all(re.fullmatch(_NUM, p) for p in parts):
        return [float(p) for p in parts]
    return None


def _ints(vals: list[float], spec: str) -> list[int]:
    if any(v != int(v) for v in vals):
        raise ParameterError(f"target {spec!r}: pixel coordinates must be integers")
    return [int(v) for v in vals]


def parse_target(spec: str | Target, image_shape: tuple[int, int] | None = None) -> Target:
    """Build a :class:`Target` from its CLI string (see the module table).

    ``image_shape`` ``(H, W)``, when given, is checked immediately (a pixel or box outside the
    image raises :class:`ParameterError`); otherwise the check happens in ``Target.check``.
    """
    if isinstance(spec, Target):
        return spec
    s = str(spec).strip()
    name, _, arg = s.partition(":")
    name = name.strip().lower().replace("_", "-")
    arg = arg.strip()
    forms = ", ".join(TARGET_SPECS)

    def need_arg():
        if not arg:
            raise ParameterError(f"target {s!r} needs an argument; forms: {forms}")

    if name == "class":
        need_arg()
        vals = _numbers(arg)
        if vals is None or len(vals) != 1:
            raise ParameterError(f"target {s!r}: expected class:K with an integer class index K")
        (k,) = _ints(vals, s)
        if k < 0:
            raise ParameterError(f"target {s!r}: class index must be ≥ 0")
        t = ClassLogit(k)
    elif name == "predicted":
        if arg:
            raise ParameterError(f"target {s!r}: 'predicted' takes no argument")
        t = PredictedClass()
    elif name == "pixel":
        need_arg()
        vals = _numbers(arg)
        if vals is None or len(vals) != 2:
            raise ParameterError(f"target {s!r}: expected pixel:X,Y (column, row; 0-based integers)")
        x, y = _ints(vals, s)
        t = PixelOutput(x, y)
    elif name == "roi":
        need_arg()
        vals = _numbers(arg)
        if vals is None:
            if not Path(arg).exists():
                raise ParameterError(f"target {s!r}: {arg} is neither a mask file nor X0,Y0,X1,Y1 (box) or X,Y,R (disc)")
            t = ROISum(_read_image(arg, "ROI mask"), f"roi:{os.path.basename(arg)}")
        elif len(vals) == 4:
            t = ROISum.box(*_ints(vals, s), shape=image_shape)
        elif len(vals) == 3:
            t = ROISum.disc(*vals, shape=image_shape)
        else:
            raise ParameterError(f"target {s!r}: expected roi:X0,Y0,X1,Y1 (box), roi:X,Y,R (disc) or roi:MASK.mrc")
    elif name in ("disc-energy", "energy"):
        if arg:
            vals = _numbers(arg)
            if vals is None or len(vals) != 1:
                raise ParameterError(f"target {s!r}: expected disc-energy or disc-energy:R (radius in pixels)")
            t = DiscEnergy(vals[0])
        else:
            t = DiscEnergy()
    elif name in ("reference", "ref"):
        need_arg()
        if not Path(arg).exists():
            raise ParameterError(f"target {s!r}: reference image {arg} does not exist")
        t = ReferenceProjection(_read_image(arg, "reference"), f"reference:{os.path.basename(arg)}")
    else:
        raise ParameterError(f"unknown target {s!r}; forms: {forms}")
    if image_shape is not None:
        kind_shape = (1, 1) + tuple(image_shape)
        if isinstance(t, (ClassLogit, PredictedClass)):
            return t  # the number of classes is checked against the model output later
        t.check(kind_shape)
    return t


def default_target(task: str) -> Target:
    """``predicted`` for classifiers, ``disc-energy`` for denoisers."""
    return PredictedClass() if task == "classify" else DiscEnergy()
