"""3D densities to project: from atomic models (PDB/mmCIF), MRC maps, or a procedural phantom.

A :class:`Density` is a cubic float32 array indexed ``[z, y, x]`` with its voxel size in Å.  The
box centre (the rotation centre of every projection) is voxel ``D // 2`` on each axis.  Values are
per voxel: for atomic models they are electrons-per-voxel-like (each atom's Gaussian integrates to
its atomic number), so a projection (a sum over z) is a column count per pixel.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from ..errors import InputFileError, ParameterError

ATOMIC_MODEL_SUFFIXES = {".pdb", ".ent", ".cif", ".mmcif", ".pdbx"}
MAP_SUFFIXES = {".mrc", ".map", ".ccp4", ".mrcs", ".rec"}


@dataclass
class Density:
    """A cubic density ``data`` (D, D, D) float32, ``[z, y, x]``, voxel size ``pixel_size`` Å."""

    data: np.ndarray
    pixel_size: float
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        d = np.asarray(self.data)
        if d.ndim != 3 or len(set(d.shape)) != 1:
            raise ParameterError(f"a density must be a cubic 3D array, got shape {d.shape}")
        if not np.isfinite(d).all():
            raise InputFileError(f"density {self.source or ''} contains NaN/Inf values".replace("  ", " "))
        if not (self.pixel_size and self.pixel_size > 0 and math.isfinite(self.pixel_size)):
            raise ParameterError(f"pixel size must be a positive number of Å, got {self.pixel_size}")
        self.data = np.ascontiguousarray(d, dtype=np.float32)
        self.pixel_size = float(self.pixel_size)

    @property
    def size(self) -> int:
        return int(self.data.shape[0])

    def resampled(self, pixel_size: float) -> "Density":
        """This density on a grid of voxel size ``pixel_size`` Å (same physical extent).

        Down-sampling low-passes first (Gaussian, σ = 0.5 new voxels) to avoid aliasing; values
        are rescaled so that the total (the integral) is preserved.
        """
        from scipy import ndimage

        if pixel_size <= 0:
            raise ParameterError(f"pixel size must be > 0 Å, got {pixel_size}")
        f = self.pixel_size / float(pixel_size)
        if abs(f - 1) < 1e-4:
            return self
        data = self.data.astype(np.float64)
        if f < 1:
            data = ndimage.gaussian_filter(data, sigma=0.5 / f, mode="constant")
        n_new = max(2, int(round(self.size * f)))
        c_old, c_new = self.size // 2, n_new // 2
        # coordinates of the new voxel centres in old voxel units, keeping the box centre fixed
        idx = (np.arange(n_new) - c_new) / f + c_old
        coeffs = ndimage.spline_filter(data, order=3, mode="constant")
        zz, yy, xx = np.meshgrid(idx, idx, idx, indexing="ij")
        out = ndimage.map_coordinates(coeffs, [zz, yy, xx], order=3, mode="constant", prefilter=False)
        out *= (1.0 / f) ** 3
        meta = dict(self.meta, resampled_from=self.pixel_size)
        return Density(out.astype(np.float32), float(pixel_size), self.source, meta)


# ---------------------------------------------------------------------------------------------
# Gaussian splatting of point masses (atoms, phantom blobs)

#: the largest box (voxels per side of a density, pixels of a simulated particle) the simulator
#: accepts: a 1024³ float32 density is 4 GiB, and the projections need a few times that
MAX_BOX = 1024


def check_box(box, what: str = "box", minimum: int = 8) -> int:
    """The one check of a simulation box size: an integer in ``minimum … MAX_BOX``; the error of a
    too-large box says how much memory it would take."""
    try:
        b = int(box)
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"{what} must be a whole number of pixels, got {box!r}") from None
    if b != box and not (isinstance(box, float) and float(box).is_integer()):
        raise ParameterError(f"{what} must be a whole number of pixels, got {box!r}")
    if b < minimum:
        raise ParameterError(f"{what} must be ≥ {minimum} pixels, got {b}")
    if b > MAX_BOX:
        raise ParameterError(f"{what} {b} px is above the simulator's limit of {MAX_BOX} px (a {b}³ float32 "
                             f"density alone needs {4 * float(b) ** 3 / 2 ** 30:,.0f} GiB)")
    return b


@numba.njit(cache=True)
def _splat(out, centres, weights, sigmas, cutoff):
    n = out.shape[0]
    inv_sqrt2pi = 1.0 / math.sqrt(2.0 * math.pi)
    for a in range(centres.shape[0]):
        cx, cy, cz = centres[a, 0], centres[a, 1], centres[a, 2]
        s = sigmas[a]
        r = int(math.ceil(cutoff * s))
        x0 = max(int(math.floor(cx)) - r, 0)
        x1 = min(int(math.floor(cx)) + r + 1, n - 1)
        y0 = max(int(math.floor(cy)) - r, 0)
        y1 = min(int(math.floor(cy)) + r + 1, n - 1)
        z0 = max(int(math.floor(cz)) - r, 0)
        z1 = min(int(math.floor(cz)) + r + 1, n - 1)
        if x0 > x1 or y0 > y1 or z0 > z1:
            continue
        norm = inv_sqrt2pi / s
        gx = np.empty(x1 - x0 + 1)
        gy = np.empty(y1 - y0 + 1)
        gz = np.empty(z1 - z0 + 1)
        for i in range(x0, x1 + 1):
            d = (i - cx) / s
            gx[i - x0] = norm * math.exp(-0.5 * d * d)
        for i in range(y0, y1 + 1):
            d = (i - cy) / s
            gy[i - y0] = norm * math.exp(-0.5 * d * d)
        for i in range(z0, z1 + 1):
            d = (i - cz) / s
            gz[i - z0] = norm * math.exp(-0.5 * d * d)
        w = weights[a]
        for k in range(z0, z1 + 1):
            wz = w * gz[k - z0]
            for j in range(y0, y1 + 1):
                wzy = wz * gy[j - y0]
                for i in range(x0, x1 + 1):
                    out[k, j, i] += wzy * gx[i - x0]


def gaussian_density(coords: np.ndarray, weights: np.ndarray, pixel_size: float, sigma: float | np.ndarray,
                     box: int, center: np.ndarray | None = None, cutoff: float = 4.0) -> np.ndarray:
    """Sum of isotropic 3D Gaussians on a ``box``³ grid.

    ``coords`` (N, 3) in Å as (x, y, z); ``weights`` (N,) the integral of each Gaussian;
    ``sigma`` (Å, scalar or per point); ``center`` (Å) is put at voxel ``box // 2`` (default: the
    origin).  Each Gaussian is truncated at ``cutoff`` σ and normalised analytically, so a
    Gaussian well inside the box sums to its weight.  Returns float32 ``[z, y, x]``.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (coords.shape[0],)).copy()
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (coords.shape[0],)) / pixel_size
    if np.any(sig <= 0):
        raise ParameterError("Gaussian width sigma must be > 0")
    center = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
    vox = (coords - center) / pixel_size + box // 2
    out = np.zeros((box, box, box), dtype=np.float64)
    _splat(out, np.ascontiguousarray(vox), weights, np.ascontiguousarray(sig), float(cutoff))
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# sources

def read_atoms(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Atoms of the first model of a PDB or mmCIF file: ``(coords Å (N,3), atomic numbers, info)``.

    Occupancy multiplies each atom's weight.  Raises :class:`InputFileError` when the file cannot be
    parsed or holds no atoms.
    """
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        st = gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with a useful message
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise InputFileError(f"{path}: cannot read atomic model ({msg})") from None
    if len(st) == 0:
        raise InputFileError(f"{path}: atomic model has no models/atoms")
    coords, z, occ = [], [], []
    unknown = 0
    for chain in st[0]:
        for res in chain:
            for atom in res:
                zn = atom.element.atomic_number
                if zn <= 0:
                    unknown += 1
                    continue
                p = atom.pos
                coords.append((p.x, p.y, p.z))
                z.append(zn)
                occ.append(atom.occ if atom.occ > 0 else 1.0)
    if not coords:
        raise InputFileError(f"{path}: atomic model contains no atoms with a known element")
    if unknown:
        warnings.warn(f"{path}: skipped {unknown} atom(s) with an unknown element")
    info = {"name": st.name, "n_atoms": len(coords), "n_models": len(st)}
    return np.array(coords, dtype=np.float64), np.array(z, dtype=np.float64) * np.array(occ), info


def density_from_atoms(path: str | Path, pixel_size: float, box: int | None = None,
                       sigma: float | None = None, center: bool = True) -> Density:
    """Density of an atomic model (PDB/mmCIF): one Gaussian per atom, integral = atomic number.

    ``sigma`` (Å) is the Gaussian width (default ``max(1 Å, pixel_size)``, which keeps the map
    band-limited on its grid).  With ``center`` the Z-weighted centroid goes to the box centre.
    ``box`` (voxels) defaults to the smallest even size that holds every atom plus 4σ.
    """
    if pixel_size is None or pixel_size <= 0:
        raise ParameterError(f"{path}: an atomic model needs a pixel size (Å) > 0, got {pixel_size}")
    coords, w, info = read_atoms(path)
    sigma = float(max(1.0, pixel_size) if sigma is None else sigma)
    if sigma <= 0:
        raise ParameterError(f"Gaussian width sigma must be > 0 Å, got {sigma}")
    c = (coords * w[:, None]).sum(0) / w.sum() if center else np.zeros(3)
    if box is None:
        rmax = np.abs(coords - c).max() + 4 * sigma
        box = int(2 * math.ceil(rmax / pixel_size) + 2)
    box = check_box(box, "density box", minimum=4)
    data = gaussian_density(coords, w, pixel_size, sigma, box, center=c)
    meta = dict(info, kind="atomic_model", sigma=sigma, center=[float(v) for v in c])
    return Density(data, pixel_size, str(path), meta)


def density_from_mrc(path: str | Path, pixel_size: float | None = None) -> Density:
    """Density from an MRC map.

    The header voxel size is used when it is set; when the header holds 0 (unknown) an explicit
    ``pixel_size`` is required.  If both are given and differ, the map is resampled to
    ``pixel_size``.  Non-cubic maps are zero-padded to a cube (centred).
    """
    from ..io.mrc import read_mrc, sniff

    info = sniff(path)
    if len(info.shape) != 3:
        raise InputFileError(f"{path}: is a 2D image, not a 3D density map")
    if info.kind == "stack":
        warnings.warn(f"{path}: header marks this as an image stack (ispg 0); reading it as a 3D density map")
    data, voxel = read_mrc(path)
    if voxel is None and pixel_size is None:
        raise ParameterError(
            f"{path}: the map header has no voxel size (0 Å); give the pixel size explicitly "
            "(pixel_size=..., in Å)"
        )
    n = max(data.shape)
    if len(set(data.shape)) != 1:
        cube = np.zeros((n, n, n), dtype=np.float32)
        sl = tuple(slice((n - s) // 2, (n - s) // 2 + s) for s in data.shape)
        cube[sl] = data
        data = cube
    dens = Density(data, voxel if voxel is not None else pixel_size, str(path),
                   {"kind": "map", "header_voxel_size": voxel or 0.0})
    if pixel_size is not None and voxel is not None:
        dens = dens.resampled(pixel_size)
    return dens


def phantom(size: int = 64, pixel_size: float = 1.0, seed: int = 0, n_blobs: int = 12) -> Density:
    """A procedural, asymmetric test density: ``n_blobs`` Gaussian blobs of random width and weight
    inside a sphere of radius ``0.3·size`` voxels, plus an off-centre elongated 'arm' of 5 blobs
    (so that every orientation is distinguishable).  Deterministic given ``seed``.
    """
    size = check_box(size, "phantom size (box)")
    rng = np.random.default_rng([int(seed), 7919])
    r = 0.3 * size * pixel_size
    pts = rng.standard_normal((n_blobs, 3))
    pts *= (r * rng.uniform(0, 1, n_blobs) ** (1 / 3) / np.linalg.norm(pts, axis=1))[:, None]
    w = rng.uniform(0.5, 1.5, n_blobs) * 100
    s = rng.uniform(0.04, 0.09, n_blobs) * size * pixel_size
    arm = np.outer(np.linspace(0.1, 0.3, 5), np.array([0.8, 0.5, 0.33])) * size * pixel_size
    pts = np.vstack([pts, arm])
    w = np.concatenate([w, np.full(5, 40.0)])
    s = np.concatenate([s, np.full(5, 0.03 * size * pixel_size)])
    s = np.maximum(s, pixel_size)
    data = gaussian_density(pts, w, pixel_size, s, size)
    return Density(data, pixel_size, f"phantom(seed={int(seed)})",
                   {"kind": "phantom", "seed": int(seed), "n_blobs": int(n_blobs)})


def load_density(source: str | Path, pixel_size: float | None = None, *, box: int | None = None,
                 sigma: float | None = None, seed: int = 0) -> Density:
    """Load a density from ``source``: a PDB/mmCIF atomic model, an MRC map, or ``"phantom"``.

    ``pixel_size`` (Å): required for atomic models and for maps whose header voxel size is 0; for a
    map with a known voxel size a different ``pixel_size`` resamples it.  ``box`` (voxels) and
    ``sigma`` (Å, Gaussian width per atom) apply to atomic models; ``box`` and ``seed`` to the
    phantom (default box 64, pixel size 1 Å).
    """
    if str(source).lower() == "phantom":
        return phantom(size=box or 64, pixel_size=pixel_size or 1.0, seed=seed)
    path = Path(source)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".gz":
        suffix = Path(path.stem).suffix.lower()
    if suffix in ATOMIC_MODEL_SUFFIXES:
        if pixel_size is None:
            raise ParameterError(f"{path}: simulating from an atomic model needs pixel_size=... (Å)")
        return density_from_atoms(path, pixel_size, box=box, sigma=sigma)
    if suffix in MAP_SUFFIXES:
        return density_from_mrc(path, pixel_size)
    raise InputFileError(
        f"{path}: unknown density format {suffix or '(no suffix)'}; use .pdb/.cif (atomic model), "
        ".mrc/.map (density map) or 'phantom'"
    )
