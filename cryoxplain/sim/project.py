"""Projection of a 3D density along z after rotation (real-space line integrals).

``image(x, y) = Σ_z density(Aᵀ (x, y, z))`` with trilinear interpolation (torch ``grid_sample``),
where ``A`` is the particle's rotation matrix (RELION convention, see :mod:`cryoxplain.sim.so3`).
Coordinates are in voxels with the origin at voxel ``D // 2`` of the volume and pixel ``B // 2``
of the ``B × B`` output image; z is sampled at unit spacing over the volume's full diagonal, so
nothing of the density is cut whatever the orientation.  Sums over z use unit voxel spacing: a
projection of a density in per-voxel units is a per-pixel column sum.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError


def _grid(box: int, nz: int, device, dtype) -> torch.Tensor:
    r = torch.arange(box, device=device, dtype=dtype) - box // 2
    rz = torch.arange(nz, device=device, dtype=dtype) - nz // 2
    z, y, x = torch.meshgrid(rz, r, r, indexing="ij")
    return torch.stack([x, y, z], dim=-1)  # (nz, box, box, 3) as (x, y, z)


def upsample(volume: np.ndarray, factor: int) -> np.ndarray:
    """Cubic-spline interpolation of ``volume`` onto a grid ``factor`` times finer.

    Voxel ``i`` of the input becomes voxel ``factor·i`` of the output (size ``factor·(D−1)+1``), so
    the box centre ``D//2`` maps to ``factor·(D//2)`` and the original samples are kept exactly.
    """
    from scipy import ndimage

    vol = np.asarray(volume, dtype=np.float64)
    if factor == 1:
        return vol.astype(np.float32)
    d = vol.shape[0]
    idx = np.arange(factor * (d - 1) + 1) / factor
    coeffs = ndimage.spline_filter(vol, order=3, mode="mirror")
    out = np.empty((idx.size,) * 3, dtype=np.float32)
    yy, xx = np.meshgrid(idx, idx, indexing="ij")
    for k, z in enumerate(idx):  # slice by slice keeps the coordinate arrays small
        zz = np.full_like(yy, z)
        out[k] = ndimage.map_coordinates(coeffs, [zz, yy, xx], order=3, mode="mirror", prefilter=False)
    return out


def project(volume: np.ndarray, rotations: np.ndarray, box: int | None = None, *, device: str | torch.device = "cpu",
            batch_size: int = 16, oversample: int = 2) -> np.ndarray:
    """Project ``volume`` (D, D, D) ``[z, y, x]`` in each orientation of ``rotations`` (n, 3, 3).

    Returns float32 ``(n, box, box)`` (``box`` defaults to D).  Runs in batches of ``batch_size``
    orientations on ``device``.  The volume is first upsampled ``oversample`` times by cubic
    splines (see :func:`upsample`), which divides the trilinear interpolation error by about
    ``oversample²``; ``oversample=1`` is plain trilinear interpolation.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ParameterError(f"projection needs a cubic volume, got shape {vol.shape}")
    rots = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    d = vol.shape[0]
    box = d if box is None else int(box)
    if box < 2:
        raise ParameterError(f"box must be ≥ 2 pixels, got {box}")
    device = torch.device(device)
    dtype = torch.float32
    nz = int(math.ceil(math.sqrt(3) * d)) | 1
    k = int(oversample)
    if k < 1:
        raise ParameterError(f"oversample must be ≥ 1, got {oversample}")
    up = upsample(vol, k)
    v = torch.tensor(up, device=device)[None, None]
    grid = _grid(box, nz, device, dtype).reshape(-1, 3)  # (P, 3)
    c = float(d // 2)
    scale = 2.0 * k / (up.shape[0] - 1)
    out = np.empty((rots.shape[0], box, box), dtype=np.float32)
    # keep the sampling grid + samples of one batch within ~256 MB whatever the box
    per_orientation = nz * box * box * 16
    batch_size = max(1, min(int(batch_size), (256 << 20) // per_orientation))
    for s in range(0, rots.shape[0], batch_size):
        r = torch.as_tensor(rots[s:s + batch_size], device=device, dtype=dtype)  # (b, 3, 3)
        b = r.shape[0]
        # volume coordinates Aᵀ p for every sample point p, i.e. p @ A, written out element-wise
        # (no BLAS: the result must not depend on the CPU's SIMD width or the BLAS library)
        pts = (grid[None, :, 0:1] * r[:, None, 0, :] + grid[None, :, 1:2] * r[:, None, 1, :]) \
            + grid[None, :, 2:3] * r[:, None, 2, :]
        pts = (pts + c) * scale - 1.0
        g = pts.reshape(1, b * nz, box, box, 3)
        with torch.no_grad():
            sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=True)
        sampled = sampled.reshape(b, nz, box, box)
        # sum along z slice by slice in float64: a fixed summation order, so results are
        # bit-identical across CPUs (torch's vectorised reductions depend on the SIMD width)
        img = torch.zeros((b, box, box), dtype=torch.float64, device=device)
        for k in range(nz):
            img += sampled[:, k]
        img = img.to(torch.float32)
        out[s:s + b] = img.cpu().numpy()
    return out
