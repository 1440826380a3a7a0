"""Particle sets: the particles a RELION STAR file or a cryoSPARC ``.cs`` file lists.

:func:`open_particles` reads the list (RELION 3.0 single-table files, RELION 3.1/4/5
``data_optics`` + ``data_particles`` files, cryoSPARC particle ``.cs`` files), resolves every
stack, checks every header (missing stacks, indices past the end of a stack and mixed box sizes
are one-line :class:`~cryoxplain.errors.InputFileError`\\ s naming the file) and returns a
:class:`ParticleSet`; :meth:`ParticleSet.batches` streams the images stack by stack from memory
maps, so memory stays bounded.  :func:`write_particle_set` / :class:`ParticleSetWriter` write
processed images as new stacks plus a STAR (or ``.cs``) file that is the input file except for the
image names (and the pixel size and box where they changed), atomically and never over an input.

Reading rules (docs/formats.md):

* RELION ``rlnImageName`` is ``index@stack`` with a 1-based index (a name without ``@`` is a
  single image).  A relative stack path is resolved as RELION does, against the project directory
  (``project_dir``, default the current directory), falling back to the STAR file's folder and
  then up to three folders above it (a STAR in ``Job/job012/`` of a project finds the project).
* cryoSPARC ``blob/path`` (relative to the cryoSPARC project directory; a leading ``>`` is
  dropped) with the 0-based ``blob/idx``; relative paths are resolved the same way (the ``.cs``
  file's parent folder is the project directory in cryoSPARC's layout).
* Every listed file is read as an image stack, whatever its header says (``.mrc`` with
  ``ispg = 1`` is what cryoSPARC and cryoDRGN write).
* Pixel size: ``pixel_size`` if given; else the STAR optics group's ``rlnImagePixelSize`` (or a
  per-particle ``rlnImagePixelSize``; RELION 3.0: ``rlnDetectorPixelSize`` · 10⁴ /
  ``rlnMagnification``) or cryoSPARC ``blob/psize_A``; else the stack headers; else ``None``.
  Header quirks are reported once per set (one :class:`~cryoxplain.errors.FileQuirkWarning` per
  kind of quirk, with how many stacks have it).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import FileQuirkWarning, InputFileError, ParameterError, ShapeError
from .atomic import check_output, temp_dir, translate_os_error
from ..checks import check_pixel_size
from .mrc import ImageStack, RunningStats, StackWriter, sniff
from .star import StarTable, read_star, rewrite_star_text

__all__ = ["ParticleSet", "ParticleSetWriter", "ParticleStack", "is_particle_file", "open_images", "open_particles",
           "write_particle_set"]

PARTICLE_SUFFIXES = (".star", ".cs")
FALLBACK_PARENTS = 3  # relative stack paths are also tried against this many folders above the file's
_PIXEL_TOLERANCE = 1e-3  # relative: header and STAR pixel sizes that differ by more are reported


def is_particle_file(path: str | os.PathLike) -> bool:
    """True for the files :func:`open_particles` reads (``.star``, ``.cs``), by name alone."""
    return Path(path).suffix.lower() in PARTICLE_SUFFIXES


@dataclass
class ParticleSet:
    """The particles a STAR or ``.cs`` file lists, with their stacks resolved and checked.

    ``len(ps)`` particles of ``ps.image_shape`` (``ps.box`` for square boxes), in file order;
    particle ``i`` is image ``ps.index_in_stack[i]`` (0-based) of ``ps.stacks[ps.stack_of[i]]``.
    ``ps.pixel_size`` (Å/px, ``None`` when unknown) and ``ps.pixel_sizes`` (per particle, NaN
    when unknown); ``ps.optics_groups`` lists ``{"group", "name", "pixel_size", "n_particles"}``.
    """

    path: Path
    format: str  # "star" (RELION) or "cs" (cryoSPARC)
    project_dir: Path
    stacks: tuple  # resolved stack paths, in order of first use
    stack_names: tuple  # the names as the file lists them (before resolution)
    stack_of: np.ndarray  # (n,) int64: index into stacks
    index_in_stack: np.ndarray  # (n,) int64, 0-based
    image_shape: tuple
    pixel_sizes: np.ndarray  # (n,) float64, NaN when unknown
    optics_groups: tuple = ()
    relion_version: str | None = None  # "3.0" or "3.1+" for STAR files
    particles_block: str | None = None  # the STAR block holding the particles
    blocks: dict = field(default_factory=dict, repr=False)  # the parsed STAR file
    records: np.ndarray | None = field(default=None, repr=False)  # the .cs structured array
    stack_lengths: tuple = ()  # images in each stack file

    def __len__(self) -> int:
        return int(len(self.stack_of))

    @property
    def box(self) -> int:
        """The box size in pixels (square boxes; raises for rectangular images)."""
        h, w = self.image_shape
        if h != w:
            raise ShapeError(f"{self.path}: particles are {h}×{w}, not square")
        return int(h)

    @property
    def pixel_size(self) -> float | None:
        """The pixel size of all particles (Å/px), ``None`` when unknown.

        Raises :class:`InputFileError` when the optics groups have different pixel sizes.
        """
        known = self.pixel_sizes[np.isfinite(self.pixel_sizes)]
        if known.size == 0:
            return None
        lo, hi = float(known.min()), float(known.max())
        if hi - lo > _PIXEL_TOLERANCE * hi or known.size != self.pixel_sizes.size:
            raise InputFileError(f"{self.path}: particles have different pixel sizes ({lo:g}–{hi:g} Å, "
                                 "or unknown for some); process one optics group at a time")
        return lo

    def particles_in(self, stack: int) -> np.ndarray:
        """Positions (in set order) of the particles that come from ``self.stacks[stack]``."""
        return np.flatnonzero(self.stack_of == stack)

    def _open_stack(self, j: int) -> ImageStack:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FileQuirkWarning)  # reported once, by open_particles
            return ImageStack(self.stacks[j], stack=True)

    def batch_positions(self, batch_size: int = 64) -> list[tuple[int, np.ndarray]]:
        """The batches of :meth:`batches` without reading images: ``[(stack, positions), …]``."""
        if int(batch_size) < 1:
            raise ParameterError(f"batch_size must be ≥ 1, got {batch_size}")
        out = []
        for j in range(len(self.stacks)):
            pos = self.particles_in(j)
            out += [(j, pos[a:a + int(batch_size)]) for a in range(0, pos.size, int(batch_size))]
        return out

    def batches(self, batch_size: int = 64, first: int = 0,
                stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, images)``: int64 positions into the set and a float32
        ``(b, H, W)`` array, ``b ≤ batch_size``.

        Batches go stack by stack (one memory-mapped stack open at a time, a batch never spans two
        stacks), each stack's particles in set order; every particle comes exactly once.
        ``first``/``stop``: only batches ``first … stop − 1`` of that sequence
        (:meth:`batch_positions`; a work unit of sharded processing), opening only their stacks.
        """
        plan = self.batch_positions(batch_size)[int(first):None if stop is None else int(stop)]
        st, open_j = None, None
        try:
            for j, p in plan:
                if j != open_j:
                    if st is not None:
                        st.close()
                    st, open_j = self._open_stack(j), j
                yield p, _read_rows(st, self.index_in_stack[p])
        finally:
            if st is not None:
                st.close()

    def __getitem__(self, i: int) -> np.ndarray:
        """Particle ``i`` as a float32 ``(H, W)`` array."""
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"particle {i} out of range for {len(self)} particles")
        i %= len(self)
        with self._open_stack(int(self.stack_of[i])) as st:
            return st[int(self.index_in_stack[i])]

    def read(self, positions=None) -> np.ndarray:
        """The particles at ``positions`` (default all) as one float32 ``(n, H, W)`` array in
        memory; prefer :meth:`batches` for large sets."""
        positions = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions),) + tuple(self.image_shape), np.float32)
        order = {int(p): k for k, p in enumerate(positions)}
        wanted = set(order)
        for pos, imgs in self.batches(256):
            for p, img in zip(pos, imgs):
                if int(p) in wanted:
                    out[order[int(p)]] = img
        return out

    def stats(self, batch_size: int = 256) -> dict:
        """Min, max, mean, std of all listed particles' pixels, batch by batch (bounded memory)."""
        acc = RunningStats()
        for _, b in self.batches(batch_size):
            acc.add(b)
        return acc.result()

    def as_stack(self) -> "ParticleStack":
        """The set as a read-only stack in set order, with the interface of
        :class:`~cryoxplain.io.mrc.ImageStack` (for the commands that read stacks)."""
        return ParticleStack(self)

    def describe(self) -> list[str]:
        """Lines for ``cryoxplain info``: format, counts, box, pixel size, optics groups."""
        kind = {"star": f"RELION {self.relion_version} particle STAR", "cs": "cryoSPARC particle .cs"}[self.format]
        try:
            px = self.pixel_size
            pxs = f"{px:g} Å" if px else "unknown (give pixel_size=...)"
        except InputFileError:
            known = self.pixel_sizes[np.isfinite(self.pixel_sizes)]
            pxs = "mixed: " + ", ".join(f"{v:g}" for v in np.unique(known)) + " Å"
        h, w = self.image_shape
        lines = [f"{self.path}: {kind}, {len(self)} particles in {len(self.stacks)} stack(s), "
                 f"box {h}×{w} px, pixel size {pxs}"]
        for g in self.optics_groups:
            gpx = f"{g['pixel_size']:g} Å" if g.get("pixel_size") else "pixel size unknown"
            lines.append(f"  optics group {g['group']} ({g['name']}): {g['n_particles']} particles, {gpx}")
        for j, (s, n) in enumerate(zip(self.stacks, self.stack_lengths)):
            if j == 5 and len(self.stacks) > 6:
                lines.append(f"  … {len(self.stacks) - 5} more stacks")
                break
            lines.append(f"  stack {s}: {int((self.stack_of == j).sum())} of its {n} images listed")
        return lines


class ParticleStack:
    """A :class:`ParticleSet` seen as one image stack in set order (the part of
    :class:`~cryoxplain.io.mrc.ImageStack` the commands use): ``len``, ``image_shape``, ``shape``,
    ``voxel_size`` (the set's pixel size), ``path``, indexing by int, slice or index array, and
    :meth:`batches` yielding ``(start, images)``.  Each read opens the memory-mapped stacks it needs,
    so memory is bounded by one batch."""

    def __init__(self, particles: ParticleSet):
        self.particles = particles
        self.path = particles.path
        self.voxel_size = particles.pixel_size

    def __len__(self) -> int:
        return len(self.particles)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.particles.image_shape)

    @property
    def shape(self) -> tuple:
        return (len(self),) + self.image_shape

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        ps = self.particles
        out = np.empty((positions.size,) + self.image_shape, np.float32)
        stacks = ps.stack_of[positions]
        for j in np.unique(stacks):
            sel = np.flatnonzero(stacks == j)
            with ps._open_stack(int(j)) as st:
                out[sel] = _read_rows(st, ps.index_in_stack[positions[sel]])
        return out

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.particles[int(idx)]
        positions = np.arange(len(self))[idx]
        return self._rows(np.atleast_1d(positions).astype(np.int64))

    def batches(self, batch_size: int = 64) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, images)``: particles ``start … start + b − 1`` of the set, float32 ``(b, H, W)``."""
        if int(batch_size) < 1:
            raise ParameterError(f"batch_size must be ≥ 1, got {batch_size}")
        for start in range(0, len(self), int(batch_size)):
            yield start, self._rows(np.arange(start, min(start + int(batch_size), len(self))))

    def close(self) -> None:
        pass

    def __enter__(self) -> "ParticleStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_images(path: str | os.PathLike, *, project_dir: str | os.PathLike | None = None,
                pixel_size: float | None = None, stack: bool | None = None):
    """Open what the commands read as particles: a particle file (``.star``/``.cs``, see
    :func:`open_particles`) as a :class:`ParticleStack`, an MRC file as an
    :class:`~cryoxplain.io.mrc.ImageStack` (``stack=True``: whatever its header says)."""
    if is_particle_file(path):
        return open_particles(path, project_dir, pixel_size=pixel_size).as_stack()
    from .mrc import open_stack

    st = open_stack(path, stack=stack)
    if pixel_size is not None:
        st.voxel_size = float(pixel_size)
    return st


def _read_rows(st: ImageStack, rows: np.ndarray) -> np.ndarray:
    """Images ``rows`` of a memory-mapped stack, copied once (sorted for locality)."""
    if rows.size and np.all(np.diff(rows) == 1):
        return st[int(rows[0]):int(rows[-1]) + 1]
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size,) + st.image_shape, np.float32)
    out[order] = st[rows[order]]
    return out


# ---------------------------------------------------------------- reading

def open_particles(path: str | os.PathLike, project_dir: str | os.PathLike | None = None, *,
                   pixel_size: float | None = None) -> ParticleSet:
    """Open the particle set a RELION STAR or cryoSPARC ``.cs`` file lists (module docstring).

    ``project_dir`` is the directory relative stack paths are resolved against (default: the
    current directory), with the file's own folder as fallback.  ``pixel_size`` (Å/px) overrides
    what the files say.  Only headers are read here; images come from :meth:`ParticleSet.batches`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file" if not path.is_dir() else f"{path}: is a directory")
    project = Path(project_dir) if project_dir is not None else Path.cwd()
    if project_dir is not None and not project.is_dir():
        raise ParameterError(f"project_dir={project} is not a directory")
    pixel_size = check_pixel_size(pixel_size)
    suffix = path.suffix.lower()
    if suffix == ".cs":
        listing = _list_cs(path)
    elif suffix == ".star":
        listing = _list_star(path)
    else:
        raise InputFileError(f"{path}: not a particle file (expected a RELION .star or a cryoSPARC .cs file)")
    folder = path.parent.absolute()
    fallbacks = (folder,) + tuple(folder.parents)[:FALLBACK_PARENTS]
    return _assemble(path, project, fallbacks, listing, pixel_size)


@dataclass
class _Listing:
    format: str
    names: list  # stack name per particle, as written
    index: np.ndarray  # 0-based index per particle
    pixel_sizes: np.ndarray  # per particle from the metadata, NaN unknown
    groups: np.ndarray | None = None  # optics group per particle
    group_names: dict = field(default_factory=dict)
    relion_version: str | None = None
    block: str | None = None
    blocks: dict = field(default_factory=dict)
    records: np.ndarray | None = None
    invalid_pixel_size: str | None = None  # "where: value" of a listed pixel size that is not a number > 0


def _particle_block(path: Path, blocks: dict) -> str:
    tables = [n for n, b in blocks.items() if isinstance(b, StarTable) and "rlnImageName" in b]
    if "particles" in tables:
        return "particles"
    if len(tables) == 1:
        return tables[0]
    if not tables:
        raise InputFileError(f"{path}: no particle table (no block with an rlnImageName column)")
    raise InputFileError(f"{path}: several tables list images ({', '.join('data_' + t for t in tables)}); "
                         "expected one data_particles block")


def _list_star(path: Path) -> _Listing:
    blocks = read_star(path)
    block = _particle_block(path, blocks)
    t = blocks[block]
    n = t.n_rows
    if n == 0:
        raise InputFileError(f"{path}: data_{block} lists no particles")
    names, index = [], np.empty(n, np.int64)
    for i, entry in enumerate(t["rlnImageName"].astype(str)):
        if "@" in entry:
            k, _, name = entry.partition("@")
            try:
                k = int(k)
            except ValueError:
                raise InputFileError(f"{path}: particle {i + 1}: rlnImageName {entry!r} is not index@stack") from None
            if k < 1:
                raise InputFileError(f"{path}: particle {i + 1}: rlnImageName {entry!r} has index {k}; "
                                     "RELION indices start at 1")
        else:
            k, name = 1, entry
        if not name:
            raise InputFileError(f"{path}: particle {i + 1}: rlnImageName {entry!r} names no stack")
        names.append(name)
        index[i] = k - 1
    px = np.full(n, np.nan)
    groups = None
    group_names: dict = {}
    optics = blocks.get("optics")
    version = "3.1+" if isinstance(optics, StarTable) else "3.0"
    if "rlnImagePixelSize" in t:
        px = _as_float(t["rlnImagePixelSize"], path, "rlnImagePixelSize")
    if isinstance(optics, StarTable):
        if "rlnOpticsGroup" not in optics:
            raise InputFileError(f"{path}: data_optics has no rlnOpticsGroup column")
        og = {int(g): optics.row(r) for r, g in enumerate(optics["rlnOpticsGroup"])}
        group_names = {g: str(row.get("rlnOpticsGroupName", f"opticsGroup{g}")) for g, row in og.items()}
        if "rlnOpticsGroup" in t:
            groups = np.asarray(t["rlnOpticsGroup"]).astype(np.int64)
        elif len(og) == 1:
            groups = np.full(n, next(iter(og)), np.int64)
        else:
            raise InputFileError(f"{path}: data_{block} has no rlnOpticsGroup column but data_optics has {len(og)} groups")
        unknown = sorted(set(groups.tolist()) - set(og))
        if unknown:
            raise InputFileError(f"{path}: particles refer to optics group(s) {unknown} missing from data_optics")
        gpx = {g: float(row["rlnImagePixelSize"]) for g, row in og.items()
               if "rlnImagePixelSize" in row and _positive(row["rlnImagePixelSize"])}
        from_group = np.array([gpx.get(int(g), np.nan) for g in groups])
        px = np.where(np.isfinite(px), px, from_group)
    elif "rlnDetectorPixelSize" in t and "rlnMagnification" in t:
        dps = _as_float(t["rlnDetectorPixelSize"], path, "rlnDetectorPixelSize")
        mag = _as_float(t["rlnMagnification"], path, "rlnMagnification")
        with np.errstate(all="ignore"):
            px = np.where(np.isfinite(px), px, dps * 1e4 / mag)
    bad = None
    if isinstance(optics, StarTable):
        bad = next((f"data_optics group {g} rlnImagePixelSize {row['rlnImagePixelSize']!s}" for g, row in og.items()
                    if "rlnImagePixelSize" in row and not _positive(row["rlnImagePixelSize"])), None)
    listed = np.asarray(t["rlnImagePixelSize"], dtype=object) if "rlnImagePixelSize" in t else None
    if bad is None and listed is not None:
        k = next((i for i, v in enumerate(listed) if not _positive(v)), None)
        bad = None if k is None else f"particle {k + 1} rlnImagePixelSize {listed[k]!s}"
    px = np.where(np.isfinite(px) & (px > 0), px, np.nan)
    lst = _Listing("star", names, index, px, groups, group_names, version, block, blocks)
    lst.invalid_pixel_size = bad
    return lst


def _positive(v) -> bool:
    try:
        return float(v) > 0 and np.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _as_float(col, path, label) -> np.ndarray:
    try:
        return np.asarray(col, dtype=np.float64)
    except ValueError:
        raise InputFileError(f"{path}: column {label} is not numeric") from None


def _list_cs(path: Path) -> _Listing:
    try:
        rec = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{path}: not a cryoSPARC .cs file (not a numpy record array: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    names = rec.dtype.names or ()
    for need in ("blob/path", "blob/idx"):
        if need not in names:
            raise InputFileError(f"{path}: cryoSPARC file has no {need} field (a passthrough file? "
                                 "use the job's particles .cs)")
    if rec.ndim != 1 or len(rec) == 0:
        raise InputFileError(f"{path}: lists no particles")
    paths = [p.decode() if isinstance(p, bytes) else str(p) for p in rec["blob/path"]]
    paths = [p[1:] if p.startswith(">") else p for p in paths]
    idx = np.asarray(rec["blob/idx"]).astype(np.int64)
    if (idx < 0).any():
        raise InputFileError(f"{path}: negative blob/idx")
    px = np.asarray(rec["blob/psize_A"], np.float64) if "blob/psize_A" in names else np.full(len(rec), np.nan)
    px = np.where(np.isfinite(px) & (px > 0), px, np.nan)
    return _Listing("cs", paths, idx, px, records=rec)


def _resolve(name: str, project: Path, fallbacks: tuple) -> Path | None:
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    for base in (project,) + tuple(fallbacks):
        q = base / p
        if q.is_file():
            return q
    return None


def _assemble(path: Path, project: Path, fallbacks: tuple, lst: _Listing, pixel_size) -> ParticleSet:
    uniq: dict = {}
    stack_of = np.empty(len(lst.names), np.int64)
    for i, name in enumerate(lst.names):
        stack_of[i] = uniq.setdefault(name, len(uniq))
    names = list(uniq)
    resolved, lengths, shapes, header_px = [], [], [], []
    quirks: dict = {}
    for j, name in enumerate(names):
        p = _resolve(name, project, fallbacks)
        if p is None:
            n = int((stack_of == j).sum())
            tried = ", ".join(str(b.absolute()) for b in (project,) + tuple(fallbacks))
            raise InputFileError(f"{path}: stack {name} (listed for {n} particle(s)) not found "
                                 f"(looked in {tried}); give project_dir=... (the RELION/cryoSPARC project directory)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FileQuirkWarning)
            info = sniff(p, stack=True)
        for w in caught:
            if not issubclass(w.category, FileQuirkWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for q in info.quirks:
            quirks.setdefault(q, []).append(p)
        resolved.append(p)
        lengths.append(info.n_images)
        shapes.append(info.image_shape)
        header_px.append(info.voxel_size)
        rows = lst.index[stack_of == j]
        if rows.max() >= info.n_images:
            first = int(np.flatnonzero((stack_of == j) & (lst.index >= info.n_images))[0])
            shown = f"{lst.index[first] + 1}@" if lst.format == "star" else f"blob/idx {lst.index[first]} of "
            raise InputFileError(f"{path}: particle {first + 1} ({shown}{name}) is past the end of {p}, "
                                 f"which holds {info.n_images} image(s)")
    if len(set(shapes)) > 1:
        a = shapes[0]
        k = next(i for i, s in enumerate(shapes) if s != a)
        raise InputFileError(f"{path}: mixed box sizes: {resolved[0]} holds {a[0]}×{a[1]} images, "
                             f"{resolved[k]} {shapes[k][0]}×{shapes[k][1]}; a particle set has one box size")
    if lst.invalid_pixel_size and pixel_size is None:
        raise InputFileError(f"{path}: {lst.invalid_pixel_size} is not a pixel size (a number > 0 Å); "
                             "correct the file or give pixel_size=...")
    px = lst.pixel_sizes.copy()
    hdr = np.array([header_px[j] if header_px[j] else np.nan for j in stack_of])
    listed = np.isfinite(px)
    if pixel_size is not None:
        px = np.full(len(px), float(pixel_size))
    else:
        disagree = listed & np.isfinite(hdr) & (np.abs(hdr - px) > _PIXEL_TOLERANCE * px)
        if disagree.any():
            i = int(np.flatnonzero(disagree)[0])
            source = "the STAR file" if lst.format == "star" else "blob/psize_A"
            warnings.warn(f"{path}: {int(disagree.sum())} particle(s) have a header voxel size that differs from "
                          f"{source} (e.g. {resolved[stack_of[i]]}: {hdr[i]:g} Å in the header, {px[i]:g} Å listed); "
                          f"using the listed value, as RELION and cryoSPARC do", FileQuirkWarning, stacklevel=3)
        px = np.where(listed, px, hdr)
    _report_quirks(path, quirks, len(names), listed_px=bool(np.isfinite(px).all()))
    groups = ()
    if lst.groups is not None:
        groups = tuple({"group": int(g), "name": lst.group_names.get(int(g), f"opticsGroup{g}"),
                        "pixel_size": float(px[lst.groups == g][0]) if np.isfinite(px[lst.groups == g][0]) else None,
                        "n_particles": int((lst.groups == g).sum())}
                       for g in sorted(set(lst.groups.tolist())))
    return ParticleSet(path=path, format=lst.format, project_dir=project, stacks=tuple(resolved),
                       stack_names=tuple(names), stack_of=stack_of, index_in_stack=lst.index,
                       image_shape=tuple(shapes[0]), pixel_sizes=px, optics_groups=groups,
                       relion_version=lst.relion_version, particles_block=lst.block, blocks=lst.blocks,
                       records=lst.records, stack_lengths=tuple(lengths))


def _report_quirks(path: Path, quirks: dict, n_stacks: int, listed_px: bool) -> None:
    """One FileQuirkWarning for the whole set: each kind of stack quirk, how many stacks, an example."""
    parts = []
    for q, files in quirks.items():
        if listed_px and q.startswith("voxel size 0"):
            continue  # the STAR/.cs (or pixel_size=...) gives the pixel size
        q = q.replace("(stack=True)", f"(listed in {path.name})")
        parts.append(q if n_stacks == 1 else f"{q} ({len(files)} of {n_stacks} stacks, e.g. {files[0]})")
    if parts:
        which = f"stack {next(iter(quirks.values()))[0]}" if n_stacks == 1 else "stacks"
        warnings.warn(f"{path}: {which} read despite known quirks: {'; '.join(parts)}",
                      FileQuirkWarning, stacklevel=4)


# ---------------------------------------------------------------- writing

class ParticleSetWriter:
    """Write processed particles as new stacks plus a particle file RELION/cryoSPARC can import.

    ``with ParticleSetWriter(ps, out_dir) as w: w.write(positions, images)`` for every particle
    (any order; :meth:`ParticleSet.batches` order keeps one output stack open at a time).  Each
    input stack ``DIR/NAME.EXT`` becomes ``out_dir/DIR/NAME{suffix}.mrcs`` holding only the listed
    particles in set order (``DIR`` kept when the listed path is relative and stays inside
    ``out_dir``), and the particle file ``out_dir/STEM{suffix}.star`` (or ``.cs``) is the input
    file with only the image names changed — plus ``rlnImagePixelSize``/``rlnImageSize`` (or
    ``blob/psize_A``/``blob/shape``) when ``pixel_size``/the image size changed; RELION 3.0 files
    get ``rlnDetectorPixelSize`` rescaled and pixel-unit origins (``rlnOriginX/Y``) scaled.
    New image names are relative to the set's project directory when ``out_dir`` is inside it (how
    RELION resolves them), absolute otherwise.

    Everything is written under a hidden temporary folder in ``out_dir`` and moved into place only
    when every particle was written (the particle file last); on any error nothing is left.
    Existing outputs are replaced only with ``force``; an output that is an input is refused.
    """

    def __init__(self, particles: ParticleSet, out_dir: str | os.PathLike, *, suffix: str = "_denoised",
                 pixel_size: float | None = None, image_shape: tuple | None = None, force: bool = False,
                 dtype: str = "float32", name: str | None = None, inputs: tuple = ()):
        self.ps = particles
        self.out_dir = Path(out_dir)
        self.suffix = suffix
        self.force = force
        self.dtype = dtype
        self.image_shape = tuple(image_shape) if image_shape is not None else tuple(particles.image_shape)
        if len(self.image_shape) != 2 or min(self.image_shape) < 1:
            raise ParameterError(f"image_shape must be (H, W), got {image_shape}")
        old_px = _known_px(particles)
        pixel_size = check_pixel_size(pixel_size)
        if self.image_shape != tuple(particles.image_shape) and pixel_size is None and old_px is not None:
            raise ParameterError(f"output images are {self.image_shape[0]}×{self.image_shape[1]}, the input "
                                 f"{particles.image_shape[0]}×{particles.image_shape[1]}: give pixel_size=... "
                                 "for the output")
        self.pixel_size = float(pixel_size) if pixel_size is not None else None
        if self.pixel_size is not None and old_px == -1.0:
            raise ParameterError(f"{particles.path}: optics groups have different pixel sizes; "
                                 "pixel_size=... would give them all one")
        ext = ".cs" if particles.format == "cs" else ".star"
        self.output_path = self.out_dir / (name or f"{particles.path.stem}{suffix}{ext}")
        self.stack_paths = self._stack_paths()
        inputs = (particles.path,) + tuple(particles.stacks) + tuple(inputs)  # inputs: e.g. the model file
        # check every output before writing anything (existing, input, or in the way)
        for p in list(self.stack_paths) + [self.output_path]:
            check_output(p, force, inputs, folder_must_exist=False)
        # output positions: stack j keeps the set order of its particles
        self._slot = np.empty(len(particles), np.int64)
        self._counts = []
        for j in range(len(particles.stacks)):
            pos = particles.particles_in(j)
            self._slot[pos] = np.arange(pos.size)
            self._counts.append(int(pos.size))
        self._written = np.zeros(len(particles), bool)
        self._open: dict = {}
        self._tmp: Path | None = None
        self._made_dir = False

    def _stack_paths(self) -> list:
        out, used = [], set()
        for name in self.ps.stack_names:
            rel = Path(name)
            keep = not rel.is_absolute() and ".." not in rel.parts
            base = (rel.parent if keep else Path()) / f"{rel.stem}{self.suffix}.mrcs"
            cand, k = base, 1
            while str(cand) in used:
                k += 1
                cand = base.with_name(f"{rel.stem}{self.suffix}_{k}.mrcs")
            used.add(str(cand))
            out.append(self.out_dir / cand)
        return out

    def _tmp_of(self, final: Path) -> Path:
        return self._tmp / final.relative_to(self.out_dir)

    def __enter__(self) -> "ParticleSetWriter":
        if not self.out_dir.exists():
            try:
                self.out_dir.mkdir(parents=True)
            except OSError as exc:
                raise translate_os_error(exc, self.out_dir / "x") from None
            self._made_dir = True
        elif not self.out_dir.is_dir():
            raise ParameterError(f"output folder {self.out_dir} is not a directory")
        try:
            self._tmp = temp_dir(self.out_dir)
        except BaseException:
            self._abort(None, None, None)
            raise
        return self

    def _writer(self, j: int) -> StackWriter:
        w = self._open.get(j)
        if w is None:
            final = self.stack_paths[j]
            tmp = self._tmp_of(final)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            px = self.pixel_size if self.pixel_size is not None else _finite_or_none(
                self.ps.pixel_sizes[self.ps.particles_in(j)[0]])
            w = StackWriter(tmp, (self._counts[j],) + self.image_shape, px, kind="stack", dtype=self.dtype)
            w.__enter__()
            self._open[j] = w
        return w

    def write(self, positions, images) -> None:
        """Write ``images`` (``(b, H, W)``) as the particles at set ``positions`` (``(b,)``)."""
        if self._tmp is None:
            raise RuntimeError("use ParticleSetWriter as a context manager")
        positions = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        if images.shape != (positions.size,) + self.image_shape:
            raise ShapeError(f"{self.output_path}: got images of shape {images.shape} for {positions.size} "
                             f"particle(s) of {self.image_shape[0]}×{self.image_shape[1]}")
        if positions.size and (positions.min() < 0 or positions.max() >= len(self.ps)):
            raise ParameterError(f"positions must be in 0..{len(self.ps) - 1}")
        stacks = self.ps.stack_of[positions]
        for j in np.unique(stacks):
            sel = np.flatnonzero(stacks == j)
            slots = self._slot[positions[sel]]
            order = np.argsort(slots, kind="stable")
            sel, slots = sel[order], slots[order]
            w = self._writer(int(j))
            # contiguous runs of output slots go in one write
            breaks = np.flatnonzero(np.diff(slots) != 1) + 1
            for run in np.split(np.arange(sel.size), breaks):
                w.write(int(slots[run[0]]), images[sel[run]])
            self._written[positions[sel]] = True
            if self._written[self.ps.particles_in(int(j))].all():
                self._open.pop(int(j)).__exit__(None, None, None)

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                missing = int((~self._written).sum())
                if missing:
                    raise ShapeError(f"{self.output_path}: {missing} of {len(self.ps)} particle(s) were never "
                                     "written; nothing was kept")
                meta_tmp = self._tmp_of(self.output_path)
                self._write_metadata(meta_tmp)
                for j, final in enumerate(self.stack_paths):
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self._tmp_of(final), final)
                os.replace(meta_tmp, self.output_path)
        except BaseException as err:
            self._abort(type(err), err, err.__traceback__)
            raise
        if exc_type is not None:
            self._abort(exc_type, exc, tb)
            if exc is not None and self._tmp is not None:  # name the outputs, not our hidden folder
                with contextlib.suppress(Exception):
                    exc.args = tuple(a.replace(str(self._tmp), str(self.out_dir)) if isinstance(a, str) else a
                                     for a in exc.args)
            return False
        shutil.rmtree(self._tmp, ignore_errors=True)
        return False

    def _abort(self, exc_type, exc, tb) -> None:
        for w in self._open.values():
            with contextlib.suppress(BaseException):
                w.__exit__(exc_type or RuntimeError, exc or RuntimeError("aborted"), tb)
        self._open.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._made_dir:
            with contextlib.suppress(OSError):
                self.out_dir.rmdir()

    # ---- the particle file
    def _new_names(self) -> list:
        project = self.ps.project_dir.resolve()
        out = []
        for final in self.stack_paths:
            full = final.resolve()
            try:
                out.append(str(full.relative_to(project)))
            except ValueError:
                out.append(str(full))
        return out

    def _write_metadata(self, tmp: Path) -> None:
        names = self._new_names()
        ps = self.ps
        if ps.format == "cs":
            rec = _rewrite_cs(ps, names, self._slot, self.pixel_size, self.image_shape)
            with open(tmp, "wb") as f:
                np.save(f, rec, allow_pickle=False)
            return
        updates = {(ps.particles_block, "rlnImageName"):
                   [f"{int(self._slot[i]) + 1:06d}@{names[int(ps.stack_of[i])]}" for i in range(len(ps))]}
        old_shape = tuple(ps.image_shape)
        t = ps.blocks[ps.particles_block]
        optics = ps.blocks.get("optics") if isinstance(ps.blocks.get("optics"), StarTable) else None
        if self.pixel_size is not None:
            old = ps.pixel_sizes
            if optics is not None and "rlnImagePixelSize" in optics:
                updates[("optics", "rlnImagePixelSize")] = [self.pixel_size] * optics.n_rows
            if "rlnImagePixelSize" in t:
                updates[(ps.particles_block, "rlnImagePixelSize")] = [self.pixel_size] * t.n_rows
            if optics is None and "rlnDetectorPixelSize" in t and "rlnMagnification" in t:
                mag = np.asarray(t["rlnMagnification"], np.float64)
                updates[(ps.particles_block, "rlnDetectorPixelSize")] = list(self.pixel_size * mag / 1e4)
            for lab in ("rlnOriginX", "rlnOriginY"):  # pixel units (RELION 3.0)
                if lab in t and np.isfinite(old).all():
                    updates[(ps.particles_block, lab)] = list(np.asarray(t[lab], np.float64) * old / self.pixel_size)
        if self.image_shape != old_shape and optics is not None and "rlnImageSize" in optics:
            updates[("optics", "rlnImageSize")] = [int(self.image_shape[0])] * optics.n_rows
        text = rewrite_star_text(ps.path.read_text(), updates, where=str(ps.path))
        tmp.write_text(text)


def _rewrite_cs(ps: ParticleSet, names: list, slot: np.ndarray, pixel_size, image_shape) -> np.ndarray:
    rec = ps.records
    new_paths = np.array([names[int(j)].encode() for j in ps.stack_of])
    dt = []
    for n in rec.dtype.names:
        if n == "blob/path":
            width = max(new_paths.dtype.itemsize, rec.dtype.fields[n][0].itemsize)
            dt.append((n, f"S{width}"))
        else:
            dt.append((n, rec.dtype.fields[n][0]))
    out = np.empty(rec.shape, dtype=dt)
    for n in rec.dtype.names:
        out[n] = rec[n]
    out["blob/path"] = new_paths
    out["blob/idx"] = slot.astype(out["blob/idx"].dtype)
    if pixel_size is not None and "blob/psize_A" in rec.dtype.names:
        out["blob/psize_A"] = pixel_size
    if "blob/shape" in rec.dtype.names and tuple(image_shape) != tuple(ps.image_shape):
        out["blob/shape"] = np.asarray(image_shape, dtype=out["blob/shape"].dtype)
    return out


def _known_px(ps: ParticleSet):
    try:
        return ps.pixel_size
    except InputFileError:
        return -1.0  # mixed: known, but not one value


def _finite_or_none(v):
    v = float(v)
    return v if np.isfinite(v) and v > 0 else None


def write_particle_set(particles: ParticleSet, out_dir: str | os.PathLike,
                       batches: Iterable[tuple[np.ndarray, np.ndarray]], **kwargs) -> Path:
    """Write every ``(positions, images)`` of ``batches`` with a :class:`ParticleSetWriter`
    (keyword arguments as there) and return the new particle file's path, e.g.
    ``write_particle_set(ps, "out", ((p, f(x)) for p, x in ps.batches(64)))``."""
    with ParticleSetWriter(particles, out_dir, **kwargs) as w:
        for positions, images in batches:
            w.write(positions, images)
    return w.output_path
