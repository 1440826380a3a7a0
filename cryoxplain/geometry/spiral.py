"""Archimedean spiral sampling, convolution ribbons and sparse resampling operators.

This is the geometry behind the spiral CNN of J. Sagemüller's PhD thesis (2023) (chapter 7, "Spiral convolutional
neural network", Eq. 7.4–7.7, Fig. 7.3–7.5).  All of the geometry of a spiral network lives
here: the network itself only multiplies by fixed sparse matrices and runs ordinary
convolutions.

Coordinates
-----------
An image of ``box × box`` pixels is indexed ``[row, col]``; pixel centres are at integer
positions.  Spiral coordinates are in **pixels relative to the box centre**
``c = box // 2`` (the particle centre of the field and the centre of every rotation in cryoxplain,
docs/conventions.md, so that exact 90° rotations of the image are exact rotations of the geometry
too), as ``(x, y) = (col − c, row − c)``.  The disc has radius ``R = (box − 1) // 2`` pixels — the
largest disc about ``c`` that lies between pixel centres (on even boxes the centre is half a pixel
past the middle, so R is half a pixel less than ``(box − 1)/2``) — and bilinear interpolation never
reads outside the box.

Spiral (Eq. 7.5–7.7), in unit-disc coordinates::

    r(t) = sqrt(t / π),   ϑ(t) = 2·n_wind·sqrt(π t),   t_i = i·π / n_spls,  i = 0 … n_spls − 1

and point ``p_i = R · r_i · (cos ϑ_i, sin ϑ_i)``.  The windings are ``Δr = R / n_wind`` pixels
apart and the path is ≈ ``π R² / Δr`` pixels long, so the defaults ``n_wind = ceil(R)`` and
``n_spls = ceil(π R n_wind)`` (≈ disc area in px²) space the samples ≈ 1 px apart both along the
path and between windings.

Ribbon (Fig. 7.4): ``k`` rows (k = kernel height, odd); row ``a`` is the spiral shifted by
``(a − (k − 1)/2) · Δr`` along the local unit normal of the path (outwards for ``a > (k−1)/2``).
Row ``(k−1)/2`` is the spiral itself.

Operators (all ``scipy.sparse.csr_matrix``, rows = targets, columns = sources):

* :func:`grid_to_points` – bilinear from the pixel grid (≤ 4 non-zeros per row);
* :func:`delaunay_interpolation` – linear interpolation in barycentric coordinates of the
  Delaunay triangle of the source points that contains each target (≤ 3 non-zeros per row);
  used for spiral → ribbon and spiral → grid.

Rule outside the disc (thesis Remark 31: there the convolution would be extrapolation, i.e.
undefined).  We never extrapolate:

* a ribbon point that falls outside the convex hull of the spiral samples (only the outer rows
  of the outermost winding) gets an **all-zero row** – exactly the zero padding an ordinary CNN
  applies at the image border;
* the spiral → grid operator is defined on :attr:`SpiralOperators.mask`, the pixels whose centre
  lies within :attr:`SpiralGeometry.mask_radius` ``= R − Δr`` (inside the outermost complete
  winding, so the mask is a disc, symmetric under the 90° grid rotations); rows of pixels outside
  the mask are all zero.  What a model then puts outside the mask is the model's documented
  rule (see :mod:`cryoxplain.models.spiral`).

Operators are built once per geometry and cached in memory, and on disk as ``.npz`` files
(numeric arrays only, loaded with ``allow_pickle=False``) under :func:`cache_dir`.
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial import Delaunay

from ..errors import CryoxplainError, ParameterError

#: bump when the construction of the operators changes (invalidates on-disk caches)
OPERATOR_VERSION = 1

__all__ = [
    "SpiralGeometry", "SpiralOperators", "spiral_geometry", "spiral_parameters", "grid_to_points",
    "delaunay_interpolation", "spiral_operators", "cache_dir", "clear_memory_cache",
]


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def spiral_parameters(n_wind: int, n_spls: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius ``r_i`` (unit disc) and angle ``ϑ_i`` (radians) of the spiral samples (Eq. 7.5–7.7)."""
    i = np.arange(int(n_spls), dtype=np.float64)
    t = i * np.pi / n_spls
    r = np.sqrt(t / np.pi)
    theta = 2.0 * n_wind * np.sqrt(np.pi * t)
    return r, theta


@dataclass(frozen=True)
class SpiralGeometry:
    """A spiral sampling of the disc inscribed in a ``box × box`` image.

    Use :func:`spiral_geometry` to get one with defaults derived from the box.
    """

    box_size: int
    n_wind: int
    n_spls: int

    def __post_init__(self):
        if self.box_size < 4:
            raise ParameterError(f"box_size must be at least 4 pixels, got {self.box_size}")
        if self.n_wind < 1:
            raise ParameterError(f"n_wind must be ≥ 1, got {self.n_wind}")
        if self.n_spls < 8 * self.n_wind:
            raise ParameterError(
                f"n_spls={self.n_spls} is too small for n_wind={self.n_wind}: need at least 8 samples "
                f"per winding (the default for this box is {_default_spls(self.radius, self.n_wind)})")

    # geometry in pixels ---------------------------------------------------------------------
    @property
    def center(self) -> float:
        """Pixel coordinate of the disc centre (same for rows and columns): ``box // 2``."""
        return float(self.box_size // 2)

    @property
    def radius(self) -> float:
        """Disc radius in pixels, ``(box − 1) // 2``."""
        return float((self.box_size - 1) // 2)

    @property
    def mask_radius(self) -> float:
        """Radius (px) of the disc on which the spiral → grid operator is defined.

        ``R − winding_spacing``: the disc inside the outermost *complete* winding.  The outermost
        winding climbs from ``R − Δr`` to ``R``, so the region between it and radius ``R`` is not
        rotation-symmetric; excluding it makes the mask a true disc (exactly symmetric under the
        90° rotations of the pixel grid, and invariant under any rotation up to pixelation).
        """
        return self.radius - self.winding_spacing

    @property
    def winding_spacing(self) -> float:
        """Distance between neighbouring windings, in pixels (``R / n_wind``)."""
        return self.radius / self.n_wind

    @property
    def path_spacing(self) -> float:
        """Mean distance between neighbouring samples along the path, in pixels."""
        d = np.diff(self.points(), axis=0)
        return float(np.mean(np.hypot(d[:, 0], d[:, 1])))

    def polar(self) -> tuple[np.ndarray, np.ndarray]:
        """``(r, ϑ)`` of the samples; ``r`` in pixels."""
        r, th = spiral_parameters(self.n_wind, self.n_spls)
        return r * self.radius, th

    def points(self) -> np.ndarray:
        """Sample positions ``(n_spls, 2)`` as ``(x, y)`` pixels relative to the centre."""
        r, th = self.polar()
        return np.stack([r * np.cos(th), r * np.sin(th)], axis=1)

    def normals(self) -> np.ndarray:
        """Outward unit normals ``(n_spls, 2)`` of the path at the samples.

        With ``p(ρ) = ρ (cos 2π n ρ, sin 2π n ρ)`` (ρ the unit radius) the tangent is
        ``(cos ϑ − 2π n ρ sin ϑ, sin ϑ + 2π n ρ cos ϑ)``; the normal is the tangent turned by
        −90°, which tends to the radial direction away from the centre.
        """
        rho, th = spiral_parameters(self.n_wind, self.n_spls)
        a = 2.0 * np.pi * self.n_wind * rho
        tx = np.cos(th) - a * np.sin(th)
        ty = np.sin(th) + a * np.cos(th)
        nrm = np.hypot(tx, ty)
        return np.stack([ty / nrm, -tx / nrm], axis=1)

    def ribbon_points(self, rows: int = 3) -> np.ndarray:
        """Ribbon sample positions ``(rows, n_spls, 2)`` (pixels relative to the centre).

        Row ``a`` is offset by ``(a − (rows − 1)/2) · winding_spacing`` along the normal.
        """
        rows = _check_rows(rows)
        off = (np.arange(rows) - (rows - 1) / 2.0) * self.winding_spacing
        return self.points()[None, :, :] + off[:, None, None] * self.normals()[None, :, :]

    def grid_points(self) -> np.ndarray:
        """Pixel centres ``(box², 2)`` as ``(x, y)`` relative to the centre, row-major order."""
        n = self.box_size
        ii, jj = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
        return np.stack([jj.ravel() - self.center, ii.ravel() - self.center], axis=1)

    def key(self) -> str:
        # "c2": centre box // 2 (operators cached under the older (box − 1)/2 centre are not reused)
        return f"c2_b{self.box_size}_w{self.n_wind}_s{self.n_spls}"


def _default_wind(radius: float) -> int:
    return max(1, int(math.ceil(radius - 1e-9)))


def _default_spls(radius: float, n_wind: int) -> int:
    return max(8 * n_wind, int(math.ceil(math.pi * radius * n_wind - 1e-9)))


def _check_rows(rows: int) -> int:
    rows = int(rows)
    if rows < 1 or rows % 2 == 0:
        raise ParameterError(f"ribbon rows (kernel size) must be a positive odd number, got {rows}")
    return rows


def spiral_geometry(box_size: int, n_wind: int | None = None, n_spls: int | None = None,
                    oversample: int = 1) -> SpiralGeometry:
    """Geometry for a ``box_size`` box; ``n_wind``/``n_spls`` default to ≈ 1 px spacing.

    ``n_wind = ceil(R)`` and ``n_spls = ceil(π R n_wind)`` with ``R = (box_size − 1) // 2``;
    e.g. 256 px → 127 windings, 50 671 samples.  ``oversample = s`` (integer ≥ 1) makes both
    spacings ≈ 1/s px instead: ``n_wind = ceil(s R)``, ``n_spls = ceil(s π R n_wind)`` (s² times
    the samples; a kernel on the ribbon then spans 1/s of the pixels).  Explicit ``n_wind`` /
    ``n_spls`` are used as given.
    """
    try:
        oversample = int(oversample)
    except (TypeError, ValueError):
        raise ParameterError(f"oversample must be an integer >= 1, got oversample={oversample!r}") from None
    if oversample < 1:
        raise ParameterError(f"oversample must be an integer >= 1, got oversample={oversample}")
    try:
        box_size = int(box_size)
    except (TypeError, ValueError):
        raise ParameterError(f"box_size must be an integer, got {box_size!r}") from None
    if box_size < 4:
        raise ParameterError(f"box_size must be at least 4 pixels, got {box_size}")
    radius = float((box_size - 1) // 2)
    n_wind = _default_wind(radius * oversample) if n_wind is None else int(n_wind)
    if n_wind < 1:
        raise ParameterError(f"n_wind must be ≥ 1, got {n_wind}")
    n_spls = _default_spls(radius * oversample, n_wind) if n_spls is None else int(n_spls)
    return SpiralGeometry(box_size, n_wind, n_spls)


# --------------------------------------------------------------------------------------------
# operators
# --------------------------------------------------------------------------------------------
def grid_to_points(box_size: int, points: np.ndarray, center: float | None = None) -> sp.csr_matrix:
    """Bilinear interpolation from a ``box × box`` grid (row-major) to ``points`` ``(m, 2)``.

    ``points`` are ``(x, y)`` pixels relative to ``center`` (default ``box // 2``).  Returns a
    CSR matrix ``(m, box²)`` with ≤ 4 non-zeros per row; points outside the span of the pixel
    centres get zero rows (zero padding).
    """
    n = int(box_size)
    c = float(n // 2) if center is None else float(center)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    col = pts[:, 0] + c
    row = pts[:, 1] + c
    tol = 1e-9
    inside = (col >= -tol) & (col <= n - 1 + tol) & (row >= -tol) & (row <= n - 1 + tol)
    col = np.clip(col, 0, n - 1)
    row = np.clip(row, 0, n - 1)
    j0 = np.minimum(np.floor(col).astype(np.int64), n - 2)
    i0 = np.minimum(np.floor(row).astype(np.int64), n - 2)
    fx = col - j0
    fy = row - i0
    idx = np.stack([i0 * n + j0, i0 * n + j0 + 1, (i0 + 1) * n + j0, (i0 + 1) * n + j0 + 1], axis=1)
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=1)
    w[~inside] = 0.0
    return _csr_from_fixed(idx, w, n * n)


def _csr_from_fixed(idx: np.ndarray, w: np.ndarray, n_cols: int, drop: float = 1e-12) -> sp.csr_matrix:
    """CSR from fixed-width (row, slot) index/weight arrays; drops |w| ≤ drop, renormalises rows."""
    m, k = idx.shape
    w = np.where(np.abs(w) <= drop, 0.0, w)
    s = w.sum(axis=1, keepdims=True)
    nz_rows = s[:, 0] != 0
    w[nz_rows] /= s[nz_rows]
    rows = np.repeat(np.arange(m), k)
    mat = sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(m, n_cols))
    mat.sum_duplicates()
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat


#: how far (px) a target just outside the convex hull may be from it (see delaunay_interpolation)
SNAP_DISTANCE = 0.25


def delaunay_interpolation(source: np.ndarray, targets: np.ndarray, tri: Delaunay | None = None,
                           snap: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Barycentric interpolation in the Delaunay triangulation of ``source`` points.

    Returns ``(A, inside)``: ``A`` is CSR ``(len(targets), len(source))`` with ≤ 3 non-zeros per
    row that sum to 1 where ``inside`` is True, and all-zero rows elsewhere (no extrapolation).
    Targets inside the convex hull reproduce linear functions exactly.

    ``snap`` (bool per target) allows a target *just* outside the hull – one that lands in a
    triangle when moved :data:`SNAP_DISTANCE` px towards the origin (the disc centre) – to be
    interpolated in that triangle with its negative barycentric coordinates clamped to 0, i.e.
    from the hull edge next to it.  This matters for the spiral because the hull of the samples
    is a polygon of chords *inside* the outermost winding: a point on that winding between two
    samples is outside the hull by the sagitta of the chord.
    """
    src = np.asarray(source, dtype=np.float64)
    tgt = np.asarray(targets, dtype=np.float64).reshape(-1, 2)
    if tri is None:
        tri = Delaunay(src)
    simplex = tri.find_simplex(tgt, tol=1e-9)
    if snap is not None:
        retry = (simplex < 0) & np.asarray(snap, dtype=bool)
        if retry.any():
            q = tgt[retry]
            rq = np.maximum(np.hypot(q[:, 0], q[:, 1]), SNAP_DISTANCE)
            simplex[retry] = tri.find_simplex(q * (1.0 - SNAP_DISTANCE / rq)[:, None], tol=1e-9)
    inside = simplex >= 0
    s = np.where(inside, simplex, 0)
    T = tri.transform[s]                       # (m, 3, 2): inverse affine map and offset
    b01 = np.einsum("mij,mj->mi", T[:, :2, :], tgt - T[:, 2, :])
    bary = np.concatenate([b01, 1.0 - b01.sum(axis=1, keepdims=True)], axis=1)
    # points on an edge/vertex can get −1e-16 weights: clamp (renormalised in _csr_from_fixed)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-300)
    idx = tri.simplices[s].astype(np.int64)
    if snap is not None and retry.any():
        # a snapped target is interpolated at Σ w·p; reject it if that is too far away
        eff = np.einsum("mk,mkd->md", bary[retry], src[idx[retry]])
        far = np.hypot(*(eff - tgt[retry]).T) > SNAP_DISTANCE
        where = np.flatnonzero(retry)[far]
        inside[where] = False
    bary[~inside] = 0.0
    return _csr_from_fixed(idx, bary, len(src), drop=1e-10), inside


@dataclass
class SpiralOperators:
    """The fixed linear maps of a spiral network for one geometry.

    Attributes
    ----------
    geometry : SpiralGeometry
    grid_to_spiral : csr ``(n_spls, box²)`` – bilinear, ≤ 4 nnz/row, rows sum to 1.
    spiral_to_ribbon : dict ``rows → csr (rows·n_spls, n_spls)`` – barycentric, ≤ 3 nnz/row; row
        ``a·n_spls + i`` is ribbon row ``a`` at path sample ``i``; zero rows outside the hull.
    spiral_to_grid : csr ``(box², n_spls)`` – barycentric, ≤ 3 nnz/row, zero outside :attr:`mask`.
    mask : bool ``(box, box)`` – the disc of radius ``geometry.mask_radius`` where the spiral →
        grid operator is defined.
    build_seconds : wall time of the construction (0 when loaded from a cache).
    """

    geometry: SpiralGeometry
    grid_to_spiral: sp.csr_matrix
    spiral_to_ribbon: dict[int, sp.csr_matrix]
    spiral_to_grid: sp.csr_matrix
    mask: np.ndarray
    build_seconds: float = 0.0
    source: str = "built"
    _extra: dict = field(default_factory=dict, repr=False)

    def ribbon(self, rows: int) -> sp.csr_matrix:
        rows = _check_rows(rows)
        if rows not in self.spiral_to_ribbon:
            self.spiral_to_ribbon[rows] = _build_ribbon(self.geometry, rows, self._tri())
        return self.spiral_to_ribbon[rows]

    def _tri(self) -> Delaunay:
        if "tri" not in self._extra:
            self._extra["tri"] = Delaunay(self.geometry.points())
        return self._extra["tri"]

    def nnz(self) -> dict[str, int]:
        out = {"grid_to_spiral": int(self.grid_to_spiral.nnz), "spiral_to_grid": int(self.spiral_to_grid.nnz)}
        for k, m in sorted(self.spiral_to_ribbon.items()):
            out[f"spiral_to_ribbon[{k}]"] = int(m.nnz)
        return out


def _build_ribbon(geom: SpiralGeometry, rows: int, tri: Delaunay) -> sp.csr_matrix:
    pts = geom.ribbon_points(rows).reshape(-1, 2)
    in_disc = np.hypot(pts[:, 0], pts[:, 1]) <= geom.radius + 1e-9
    mat, _ = delaunay_interpolation(geom.points(), pts, tri=tri, snap=in_disc)
    return mat


def _build(geom: SpiralGeometry, rows: tuple[int, ...]) -> SpiralOperators:
    import time

    t0 = time.perf_counter()
    pts = geom.points()
    tri = Delaunay(pts)
    g2s = grid_to_points(geom.box_size, pts)
    ribbons = {k: _build_ribbon(geom, k, tri) for k in rows}
    grid = geom.grid_points()
    within = np.hypot(grid[:, 0], grid[:, 1]) <= geom.mask_radius + 1e-9
    s2g_in, inside = delaunay_interpolation(pts, grid[within], tri=tri, snap=np.ones(int(within.sum()), bool))
    if not inside.all():  # cannot happen: the disc inside the last full winding is covered
        raise RuntimeError(f"spiral {geom}: {int((~inside).sum())} mask pixels outside the triangulation")
    # scatter the rows of in-disc pixels into a box²-row matrix
    rows_idx = np.flatnonzero(within)
    coo = s2g_in.tocoo()
    s2g = sp.csr_matrix((coo.data, (rows_idx[coo.row], coo.col)), shape=(grid.shape[0], len(pts)))
    s2g.sort_indices()
    mask = np.zeros(grid.shape[0], dtype=bool)
    mask[rows_idx[inside]] = True
    ops = SpiralOperators(geom, g2s, ribbons, s2g, mask.reshape(geom.box_size, geom.box_size),
                          build_seconds=time.perf_counter() - t0)
    ops._extra["tri"] = tri
    return ops


# --------------------------------------------------------------------------------------------
# caching
# --------------------------------------------------------------------------------------------
_MEMORY: dict[tuple, SpiralOperators] = {}


def clear_memory_cache() -> None:
    """Forget the operators cached in this process."""
    _MEMORY.clear()


def cache_dir() -> Path:
    """Directory of the on-disk operator cache.

    ``$CRYOXPLAIN_CACHE_DIR/spiral`` if set, else ``$XDG_CACHE_HOME/cryoxplain/spiral``, else
    ``~/.cache/cryoxplain/spiral``.
    """
    base = os.environ.get("CRYOXPLAIN_CACHE_DIR")
    if base:
        return Path(base).expanduser() / "spiral"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "cryoxplain" / "spiral"


def _cache_file(geom: SpiralGeometry, rows: tuple[int, ...]) -> Path:
    tag = f"v{OPERATOR_VERSION}_{geom.key()}_k{'-'.join(map(str, rows))}"
    h = hashlib.sha1(tag.encode()).hexdigest()[:8]
    return cache_dir() / f"{tag}_{h}.npz"


def _save(ops: SpiralOperators, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"mask": ops.mask, "meta": np.array(
        [OPERATOR_VERSION, ops.geometry.box_size, ops.geometry.n_wind, ops.geometry.n_spls], dtype=np.int64)}

    def put(name, m):
        arrays[f"{name}_data"] = m.data.astype(np.float64)
        arrays[f"{name}_indices"] = m.indices.astype(np.int64)
        arrays[f"{name}_indptr"] = m.indptr.astype(np.int64)
        arrays[f"{name}_shape"] = np.array(m.shape, dtype=np.int64)

    put("g2s", ops.grid_to_spiral)
    put("s2g", ops.spiral_to_grid)
    for k, m in ops.spiral_to_ribbon.items():
        put(f"s2r{k}", m)
    from ..io.atomic import atomic_path  # our temporary naming: a killed run's leftover is cleaned next time

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, force=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load(path: Path, geom: SpiralGeometry, rows: tuple[int, ...]) -> SpiralOperators | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = z["meta"]
            if list(meta) != [OPERATOR_VERSION, geom.box_size, geom.n_wind, geom.n_spls]:
                return None

            def get(name):
                return sp.csr_matrix((z[f"{name}_data"], z[f"{name}_indices"], z[f"{name}_indptr"]),
                                     shape=tuple(z[f"{name}_shape"]))

            return SpiralOperators(geom, get("g2s"), {k: get(f"s2r{k}") for k in rows}, get("s2g"),
                                   z["mask"].astype(bool), source="disk")
    except Exception:  # unreadable/partial cache file: rebuild
        return None


def spiral_operators(geometry: SpiralGeometry, rows: int | tuple[int, ...] = 3,
                     disk_cache: bool = True) -> SpiralOperators:
    """The operators of ``geometry`` with ribbons of ``rows`` rows (one or several kernel sizes).

    Built once per process (memory cache) and, with ``disk_cache``, stored under
    :func:`cache_dir` so later processes load them instead of triangulating again.  An
    unwritable cache directory only costs a warning.
    """
    rows = tuple(sorted({_check_rows(k) for k in ((rows,) if np.isscalar(rows) else rows)}))
    key = (OPERATOR_VERSION, geometry, rows)
    if key in _MEMORY:
        return _MEMORY[key]
    ops = None
    path = _cache_file(geometry, rows)
    if disk_cache and path.is_file():
        ops = _load(path, geometry, rows)
    if ops is None:
        ops = _build(geometry, rows)
        if disk_cache:
            try:
                _save(ops, path)
            except (OSError, CryoxplainError) as exc:  # a cache that cannot be written is only slower
                warnings.warn(f"could not write the spiral operator cache {path}: {exc}", stacklevel=2)
    _MEMORY[key] = ops
    return ops
