"""MRC / MRCS reading and writing on top of :mod:`mrcfile`.

Conventions (see docs/formats.md):

* Images come out as ``float32`` arrays, ``(H, W)`` for one image and ``(N, H, W)`` for a stack
  (``float16`` on request).  Input modes 0, 1, 2, 6 and 12 are accepted.
* A 3D file is an *image stack* when its header says so (``ispg == 0``) or its name ends in
  ``.mrcs``; otherwise it is a *volume*.  ``stack=True`` reads any file as a stack (cryoSPARC and
  cryoDRGN write particle stacks as ``.mrc`` with ``ispg = 1``); files listed by a STAR or ``.cs``
  file are always read as stacks (:mod:`cryoxplain.io.particles`).
* The voxel size (Å) is read from the header and written back to every output; a header voxel
  size of 0 means *unknown* and is reported as ``None`` (unless an FEI extended header holds it).
* Known quirks of files written by real tools (no ``MAP `` identifier / zero machine stamp,
  ``nversion`` 0, integer or half-precision modes, FEI extended headers, voxel size 0, stacks
  marked as volumes) are read with one :class:`~cryoxplain.errors.FileQuirkWarning` per file that
  says what was assumed; really broken files are refused with a one-line
  :class:`~cryoxplain.errors.InputFileError`.
* Large stacks are read memory-mapped and iterated in batches, so memory stays bounded.
* Outputs are written atomically, validated, and never written over an existing file unless
  ``force`` is set.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import mrcfile
import numpy as np

from ..errors import FileQuirkWarning, InputFileError, ParameterError, ShapeError
from .atomic import atomic_path, reserve_space

SUPPORTED_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}
OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}
HEADER_BYTES = 1024


@dataclass(frozen=True)
class MrcInfo:
    """What the header of an MRC file says, read without touching the data."""

    path: Path
    shape: tuple  # (H, W) for 2D, (N, H, W) for stacks and volumes
    mode: int
    voxel_size: float | None  # Å per pixel; None when the header holds 0
    kind: str  # "image", "stack" or "volume"
    truncated: bool = False  # permissive reading of a truncated file: only complete images
    quirks: tuple = ()  # known departures from MRC2014 that were accepted, one phrase each
    metadata: dict = field(default_factory=dict)  # from an FEI1/FEI2 extended header (see fei_metadata)
    header_quirk: bool = False  # no 'MAP ' ID or zero machine stamp: mrcfile must open it permissively

    @property
    def n_images(self) -> int:
        return 1 if len(self.shape) == 2 else self.shape[0]

    @property
    def image_shape(self) -> tuple:
        return tuple(self.shape[-2:])


def _voxel_size(mrc) -> float | None:
    with np.errstate(all="ignore"):  # mrcfile divides the cell size by mx, which may be 0
        vs = mrc.voxel_size
    x = float(vs.x)
    if not np.isfinite(x) or x <= 0:
        return None
    return x


COMPRESSED_SUFFIXES = {".gz", ".bz2", ".xz", ".zst"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# mrcfile's complaints about a header that is otherwise fine: what old RELION (≤ 3.1) and some
# other writers leave in it.  Anything else mrcfile complains about is a real defect.
_MAP_ID = "map id string not found"
_ZERO_STAMP = "unrecognised machine stamp: 0x00 0x00 0x00 0x00"


def _header_quirks(problems: list[str]) -> tuple[list[str], list[str]]:
    """Split mrcfile's warnings into known header quirks (as phrases) and other problems."""
    quirks, other = [], []
    for msg in problems:
        low = msg.lower()
        if _MAP_ID in low:
            quirks.append("no 'MAP ' identifier")
        elif _ZERO_STAMP in low:
            quirks.append("zero machine stamp (read as little-endian)")
        else:
            other.append(msg)
    return quirks, other


def _open_recording(path: Path, mode: str, permissive: bool, header_only: bool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if header_only:
            mrc = mrcfile.open(path, mode=mode, header_only=True, permissive=permissive)
        else:
            mrc = mrcfile.mmap(path, mode=mode, permissive=permissive)
    return mrc, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _open(path: Path, mode: str = "r", permissive: bool = False, header_only: bool = False,
          with_quirks: bool = False):
    """Open with mrcfile, translating its exceptions into one-line user errors.

    A header whose only defects are a missing ``MAP `` identifier and/or a zero machine stamp (the
    known quirk of old RELION stacks) is opened permissively in any mode; those quirks are
    returned (``with_quirks=True``) for :func:`sniff` to check and report, not warned here.  In
    permissive mode mrcfile's other complaints are collected and re-issued as one ``UserWarning``
    naming the file, so a damaged file is never read silently.
    """
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected an MRC file")
    if path.suffix.lower() in COMPRESSED_SUFFIXES:
        raise InputFileError(f"{path}: compressed MRC files are not supported (memory-mapped reading); decompress it first")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise InputFileError(f"{path}: not an MRC file (only {size} bytes, shorter than the 1024-byte header)")
    try:
        mrc, problems = _open_recording(path, mode, permissive, header_only)
    except (ValueError, OSError, EOFError) as exc:
        msg = _first_line(exc)
        low = msg.lower()
        mrc = None
        if not permissive and (_MAP_ID in low or _ZERO_STAMP in low):
            with contextlib.suppress(ValueError, OSError, EOFError):
                mrc, problems = _open_recording(path, mode, True, header_only)
            if mrc is not None and _header_quirks(problems)[1]:
                mrc.close()
                mrc = None
        if mrc is None:
            if "unrecognised mode" in low or ("mode" in low and "unrecognised" in low):
                raise InputFileError(f"{path}: unsupported MRC data mode ({msg}); supported modes are 0, 1, 2, 6 and 12") from None
            if _MAP_ID in low:
                raise InputFileError(f"{path}: not an MRC file (header has no 'MAP ' identifier)") from None
            raise InputFileError(f"{path}: invalid MRC file: {msg}; try permissive reading if you trust the data") from None
    quirks, problems = _header_quirks(problems)
    if problems:
        if not permissive:
            mrc.close()
            raise InputFileError(f"{path}: invalid MRC file: {problems[0]}")
        warnings.warn(f"{path}: damaged MRC file read permissively ({'; '.join(problems)})", UserWarning, stacklevel=3)
    return (mrc, quirks) if with_quirks else mrc


MODE_NOTES = {
    0: "mode 0 (int8): read as signed bytes as MRC2014 says (old IMOD files may hold unsigned bytes)",
    1: "mode 1 (int16): integer data, converted to float32",
    6: "mode 6 (uint16): integer data (raw detector counts, e.g. EPU), converted to float32",
    12: "mode 12 (float16): half precision, converted to float32",
}


def fei_metadata(mrc) -> dict:
    """Acquisition metadata from the first entry of an FEI1/FEI2 extended header (EPU, Velox).

    Returns a dict with what is present and plausible (non-zero, finite), in the units of
    ``docs/conventions.md``: ``pixel_size`` (Å/px), ``dose`` (e⁻/Å²), ``defocus`` (Å, positive =
    underfocus, as RELION), ``voltage`` (kV), ``magnification``, ``microscope``, ``application``,
    and ``type`` (``"FEI1"``/``"FEI2"``).  Empty for other or unreadable extended headers.
    """
    exttyp = bytes(mrc.header.exttyp)
    if exttyp not in (b"FEI1", b"FEI2") or int(mrc.header.nsymbt) <= 0:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = mrc.indexed_extended_header
    except Exception:  # noqa: BLE001 - a damaged extended header: no metadata, never a crash
        return {}
    if ext is None or len(ext) == 0:
        return {}
    e = ext[0]
    out: dict = {"type": exttyp.decode()}

    def num(name, scale):
        try:
            v = float(e[name]) * scale
        except (ValueError, KeyError, TypeError):
            return None
        return v if np.isfinite(v) and v != 0 else None

    for key, name, scale in (("pixel_size", "Pixel size X", 1e10), ("dose", "Dose", 1e-20),
                             ("defocus", "Defocus", -1e10), ("voltage", "HT", 1e-3),
                             ("magnification", "Magnification", 1.0)):
        v = num(name, scale)
        if v is not None:
            out[key] = v
    for key, name in (("microscope", "Microscope type"), ("application", "Application")):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            text = bytes(e[name]).split(b"\0")[0].decode("ascii", "replace").strip()
            if text:
                out[key] = text
    return out


def _fei_phrase(meta: dict) -> str:
    parts = []
    if "pixel_size" in meta:
        parts.append(f"pixel size {meta['pixel_size']:.4g} Å")
    if "dose" in meta:
        parts.append(f"dose {meta['dose']:.3g} e/Å²")
    if "defocus" in meta:
        parts.append(f"defocus {meta['defocus']:.0f} Å")
    return f"{meta['type']} extended header ({', '.join(parts) or 'no usable values'})"


def sniff(path: str | os.PathLike, permissive: bool = False, stack: bool | None = None) -> MrcInfo:
    """Read and check only the header of ``path``.

    Raises :class:`InputFileError` for non-MRC files, unsupported modes, non-positive dimensions,
    empty stacks and files whose size disagrees with the header (truncated or padded).  With
    ``permissive=True`` a damaged header is accepted with a warning where mrcfile can still make
    sense of it, and a truncated file is read up to its last complete image (with a warning).

    ``stack=True`` reads the file as an image stack whatever its header says (a 2D file becomes a
    stack of one); ``stack=False`` reads a 3D file as a volume; ``None`` decides from ``ispg``
    and the name (see the module docstring).  Known quirks are accepted with one
    :class:`~cryoxplain.errors.FileQuirkWarning` naming the file and listing them
    (``MrcInfo.quirks``); a header without ``MAP `` that is not otherwise consistent is refused.
    """
    path = Path(path)
    mrc, quirks = _open(path, permissive=permissive, header_only=True, with_quirks=True)
    header_quirk = bool(quirks)
    with mrc:
        h = mrc.header
        mode = int(h.mode)
        nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
        nsymbt = int(h.nsymbt)
        ispg = int(h.ispg)
        nversion = int(h.nversion)
        axes = (int(h.mapc), int(h.mapr), int(h.maps))
        voxel = _voxel_size(mrc)
        meta = fei_metadata(mrc)
    if sorted(axes) != [1, 2, 3] and axes != (0, 0, 0):  # 0,0,0: writers that leave them unset
        raise InputFileError(f"{path}: damaged MRC header (axis order mapc, mapr, maps = "
                             f"{', '.join(map(str, axes))} is not a permutation of 1, 2, 3)")
    try:
        shape, kind, truncated_to = _check_header(path, mode, nx, ny, nz, nsymbt, ispg, permissive, stack)
    except InputFileError as exc:
        if header_quirk and "no 'MAP '" in quirks[0]:
            raise InputFileError(f"{path}: not an MRC file (header has no 'MAP ' identifier, and "
                                 f"{str(exc).split(': ', 1)[-1]})") from None
        raise
    if nversion == 0:
        quirks.append("nversion 0 (pre-MRC2014 writer)")
    if mode in MODE_NOTES:
        quirks.append(MODE_NOTES[mode])
    if meta:
        quirks.append(_fei_phrase(meta))
    if voxel is None and meta.get("pixel_size"):
        voxel = float(meta["pixel_size"])
        quirks.append(f"voxel size 0 in the header; using the {meta['type']} pixel size {voxel:.4g} Å")
    elif voxel is None:
        quirks.append("voxel size 0 (unknown): give pixel_size=... or take it from a STAR optics table")
    is_mrcs = path.suffix.lower() == ".mrcs"
    if kind == "stack" and len(shape) == 3 and ispg != 0 and truncated_to is None:
        why = "stack=True" if stack else "the name ends in .mrcs"
        quirks.append(f"header says volume (ispg={ispg}); read as a particle stack ({why})")
    elif kind == "volume" and ispg == 0 and stack is False:
        quirks.append("header says image stack (ispg=0); read as a volume (stack=False)")
    if quirks:
        warnings.warn(f"{path}: read despite known quirks: {'; '.join(quirks)}", FileQuirkWarning, stacklevel=2)
    return MrcInfo(path=path, shape=shape, mode=mode, voxel_size=voxel, kind=kind,
                   truncated=truncated_to is not None, quirks=tuple(quirks), metadata=meta,
                   header_quirk=header_quirk)


def _check_header(path, mode, nx, ny, nz, nsymbt, ispg, permissive, stack):
    """Shape, kind and (for a permissively read truncated file) the number of complete images."""
    if mode not in SUPPORTED_MODES:
        if not 0 <= mode <= 102:
            raise InputFileError(f"{path}: not an MRC file (header data mode {mode} is not an MRC mode)")
        raise InputFileError(f"{path}: unsupported MRC data mode {mode}; supported modes are 0, 1, 2, 6 and 12")
    if min(nx, ny, nz) <= 0:
        if nz == 0 and nx > 0 and ny > 0:
            raise InputFileError(f"{path}: empty stack (header says 0 images)")
        raise InputFileError(f"{path}: header has non-positive dimensions nx={nx} ny={ny} nz={nz}")
    if nsymbt < 0:
        raise InputFileError(f"{path}: header has a negative extended-header size ({nsymbt})")
    item = np.dtype(SUPPORTED_MODES[mode]).itemsize
    expected = HEADER_BYTES + nsymbt + nx * ny * nz * item
    actual = path.stat().st_size
    truncated_to = None
    if actual < expected:
        msg = f"{path}: truncated file ({actual} bytes, header promises {expected} for {nz}×{ny}×{nx} mode {mode})"
        complete = (actual - HEADER_BYTES - nsymbt) // (nx * ny * item)
        if not permissive or complete < 1:
            raise InputFileError(msg + ("; permissive reading needs at least one complete image" if permissive else ""))
        warnings.warn(msg + f"; reading the {complete} complete image(s) (permissive mode)", UserWarning, stacklevel=3)
        truncated_to = int(complete)
        nz = truncated_to
    elif actual > expected:
        msg = f"{path}: file is larger than its header says ({actual} vs {expected} bytes); inconsistent header"
        if not permissive:
            raise InputFileError(msg)
        warnings.warn(msg + "; ignoring the trailing bytes (permissive mode)", UserWarning, stacklevel=3)
    is_mrcs = path.suffix.lower() == ".mrcs"
    if stack:
        return (nz, ny, nx), "stack", truncated_to
    if nz == 1 and not is_mrcs and truncated_to is None:
        return (ny, nx), "image", truncated_to
    if stack is False and truncated_to is None:
        return (nz, ny, nx), "volume", truncated_to
    kind = "stack" if (ispg == 0 or is_mrcs or truncated_to is not None) else "volume"
    return (nz, ny, nx), kind, truncated_to


def _data_view(info: MrcInfo, permissive: bool):
    """A read-only memory-mapped view of the data of ``info.path`` shaped ``info.shape``.

    Returns ``(array, closeable)``; ``closeable`` is the mrcfile object to close (or ``None``).
    """
    if info.truncated:
        with _open(info.path, permissive=True, header_only=True) as mrc:
            dtype = mrcfile.utils.data_dtype_from_header(mrc.header)
            offset = HEADER_BYTES + int(mrc.header.nsymbt)
        return np.memmap(info.path, dtype=dtype, mode="r", offset=offset, shape=info.shape), None
    mrc = _open(info.path, permissive=permissive)
    data = mrc.data
    if data is None:
        mrc.close()
        raise InputFileError(f"{info.path}: mrcfile could not map the data block")
    return data.reshape(info.shape), mrc


def _drop_pages(view) -> None:
    """Let the kernel unmap the pages of ``view`` (a slice of a ``numpy.memmap``) from this process.

    Pages of a memory-mapped file that were read or written stay resident — and count in the RSS —
    until the mapping is closed, so streaming a stack through a map grows the process with the
    stack.  Once a batch has been copied out (reading) or stored (writing) its pages are not needed
    again: ``madvise(MADV_DONTNEED)`` on a shared file mapping only drops them from this process's
    page tables (dirty pages stay in the page cache and reach the file as usual; a later access
    reads them back).  The range is widened down to a page boundary (the page shared with the
    previous batch is complete by then).  A no-op where madvise is unavailable.
    """
    import mmap as _mmap

    mm = getattr(view, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(_mmap, "MADV_DONTNEED") or view.size == 0:
        return
    with contextlib.suppress(ValueError, OSError, TypeError, BufferError):
        base = np.frombuffer(mm, np.uint8)
        try:
            lo = view.ctypes.data - base.ctypes.data
        finally:
            del base
        hi = lo + view.nbytes
        page = _mmap.PAGESIZE
        lo, hi = lo - lo % page, hi - hi % page
        if hi > lo:
            mm.madvise(_mmap.MADV_DONTNEED, lo, hi - lo)


def _convert(data: np.ndarray, dtype, where: str, check_finite: bool) -> np.ndarray:
    """Copy ``data`` (possibly a memory map) into a new in-memory array of ``dtype``."""
    if check_finite and data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputFileError(f"{where}: data contain {bad} NaN/Inf value(s); clean the input first")
    with np.errstate(over="ignore"):
        out = np.array(data, dtype=dtype, copy=True)
    if out.dtype == np.float16 and data.dtype != np.float16 and not np.isfinite(out).all():
        raise ParameterError(f"{where}: values exceed the float16 range (±65504); read as float32")
    return out


def read_mrc(path: str | os.PathLike, dtype: str = "float32", permissive: bool = False,
             check_finite: bool = True, stack: bool | None = None) -> tuple[np.ndarray, float | None]:
    """Read a whole image, stack or volume into memory.

    Returns ``(data, voxel_size)``; ``data`` is ``(H, W)`` or ``(N, H, W)`` of ``dtype``
    (``stack=True``: always ``(N, H, W)``, see :func:`sniff`).  Use :func:`open_stack` for stacks
    that may not fit in memory.
    """
    info = sniff(path, permissive=permissive, stack=stack)
    dt = _output_dtype(dtype)
    data, mrc = _data_view(info, permissive)
    try:
        out = _convert(data, dt, str(info.path), check_finite)
    finally:
        del data
        if mrc is not None:
            mrc.close()
    return out, info.voxel_size


def _output_dtype(dtype) -> np.dtype:
    if isinstance(dtype, str):
        if dtype not in OUTPUT_DTYPES:
            raise ParameterError(f"unsupported output dtype {dtype!r}; choose float32 or float16")
        return np.dtype(OUTPUT_DTYPES[dtype])
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ParameterError(f"unsupported output dtype {dt}; choose float32 or float16")
    return dt


class ImageStack:
    """A memory-mapped, read-only view of a particle stack or a single image.

    ``len(stack)`` images of shape ``stack.image_shape``; indexing and :meth:`batches` return
    float32 copies, so only one batch is in memory at a time.  Use as a context manager.
    ``stack=True`` reads a file whose header says volume as a particle stack (see :func:`sniff`).
    """

    def __init__(self, path: str | os.PathLike, permissive: bool = False, allow_volume: bool = False,
                 check_finite: bool = True, stack: bool | None = None):
        self.info = sniff(path, permissive=permissive, stack=stack)
        if self.info.kind == "volume" and not allow_volume:
            raise InputFileError(
                f"{self.info.path}: header says 3D volume (ispg != 0), not an image stack; if it is a "
                "particle stack (cryoSPARC and cryoDRGN write .mrc stacks with ispg=1), pass stack=True"
            )
        self.path = self.info.path
        self.voxel_size = self.info.voxel_size
        self.check_finite = check_finite
        data, self._mrc = _data_view(self.info, permissive)
        self._data = data.reshape((1,) + data.shape) if data.ndim == 2 else data

    def __len__(self) -> int:
        return int(self._data.shape[0])

    @property
    def image_shape(self) -> tuple:
        return tuple(self._data.shape[1:])

    @property
    def shape(self) -> tuple:
        return tuple(self._data.shape)

    def __getitem__(self, idx) -> np.ndarray:
        view = self._data[idx]
        out = _convert(view, np.float32, f"{self.path} [{idx}]", self.check_finite)
        if isinstance(idx, slice) and idx.step in (None, 1):  # a block streamed by a reader: let its pages go
            _drop_pages(view)
        return out

    def batches(self, batch_size: int = 64) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, images)`` with ``images`` a float32 ``(b, H, W)`` array."""
        if batch_size < 1:
            raise ParameterError("batch size must be ≥ 1")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            view = self._data[start:stop]
            out = _convert(view, np.float32, f"{self.path} images {start}..{stop - 1}", self.check_finite)
            _drop_pages(view)  # streamed once: the mapped pages need not stay resident
            del view
            yield start, out

    def close(self) -> None:
        self._data = None
        if getattr(self, "_mrc", None) is not None:
            self._mrc.close()
            self._mrc = None

    def __enter__(self) -> "ImageStack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def open_stack(path: str | os.PathLike, **kwargs) -> ImageStack:
    """Open an image or stack memory-mapped (see :class:`ImageStack`)."""
    return ImageStack(path, **kwargs)


def _set_header(mrc, voxel_size: float | None, kind: str, stats: "RunningStats | None" = None) -> None:
    """Kind, voxel size and the header statistics (``dmin``, ``dmax``, ``dmean``, ``rms`` — the
    population standard deviation, as mrcfile writes it).  ``stats`` accumulated while writing
    (:class:`RunningStats`); without it they are computed here a few images at a time — never with
    a temporary the size of the data (mrcfile's ``update_header_stats`` makes several)."""
    if kind == "stack":
        mrc.set_image_stack()
    elif kind == "volume":
        mrc.set_volume()
    mrc.voxel_size = float(voxel_size) if voxel_size else 0.0
    if stats is None:
        stats = RunningStats()
        data = mrc.data
        flat = data.reshape((-1,) + data.shape[-2:]) if data.ndim >= 2 else data.reshape(1, -1)
        step = max(1, (1 << 22) // max(1, flat[0].size))  # ~4 M pixels per chunk
        for i in range(0, len(flat), step):
            stats.add(flat[i:i + step])
    stats.to_header(mrc.header)


def write_mrc(path: str | os.PathLike, data: np.ndarray, voxel_size: float | None = None, *,
              kind: str | None = None, dtype: str = "float32", force: bool = False,
              inputs: tuple = ()) -> Path:
    """Write ``data`` atomically as a valid MRC file and return the path.

    ``kind`` is ``"image"`` (2D), ``"stack"`` (default for 3D) or ``"volume"``.  The voxel size is
    written to the header (0 when unknown).  Existing files are replaced only with ``force``.
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise ShapeError(f"can only write 2D images or 3D stacks/volumes, got shape {data.shape}")
    if data.size == 0:
        raise ShapeError("refusing to write an empty array")
    kind = kind or ("image" if data.ndim == 2 else "stack")
    if kind not in ("image", "stack", "volume") or (kind == "image") != (data.ndim == 2):
        raise ShapeError(f"cannot write data of shape {data.shape} as kind {kind!r} (image: 2D; stack/volume: 3D)")
    dt = _output_dtype(dtype)
    if not np.isfinite(data).all():
        raise ParameterError(f"refusing to write {path}: data contain NaN/Inf")
    with atomic_path(path, force=force, inputs=inputs, size=1024 + data.size * dt.itemsize) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=dt))
            _set_header(mrc, voxel_size, kind)
    return Path(path)


class StackWriter:
    """Write a stack batch by batch into a memory-mapped file, atomically.

    The output file appears under its final name only when the ``with`` block finishes without
    error; on an exception the partial file is deleted.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple, voxel_size: float | None = None, *,
                 kind: str | None = None, dtype: str = "float32", force: bool = False, inputs: tuple = ()):
        if len(shape) not in (2, 3) or min(shape) <= 0:
            raise ShapeError(f"invalid output shape {shape}")
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.voxel_size = voxel_size
        self.kind = kind or ("image" if len(shape) == 2 else "stack")
        self.dtype = _output_dtype(dtype)
        self._nbytes = 1024 + int(np.prod(self.shape)) * self.dtype.itemsize  # header + data
        self._ctx = atomic_path(path, force=force, inputs=inputs, size=self._nbytes)
        self._mrc = None
        self.stats = RunningStats()  # header statistics, accumulated batch by batch (as stored)
        self._written = np.zeros(1 if len(self.shape) == 2 else self.shape[0], dtype=bool)

    def __enter__(self) -> "StackWriter":
        tmp = self._ctx.__enter__()
        mode = {np.dtype(np.float32): 2, np.dtype(np.float16): 12}[self.dtype]
        try:
            self._mrc = mrcfile.new_mmap(tmp, shape=self.shape, mrc_mode=mode, overwrite=True)
            # allocate the blocks now: a memory map meeting a full disk later dies of SIGBUS
            reserve_space(tmp, os.path.getsize(tmp), final=self.path)
        except BaseException as exc:
            if self._mrc is not None:
                with contextlib.suppress(Exception):
                    self._mrc.close()
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def write(self, start: int, images: np.ndarray) -> None:
        images = np.asarray(images)
        if not np.isfinite(images).all():
            raise ParameterError(f"refusing to write {self.path}: output batch at {start} contains NaN/Inf")
        if len(self.shape) == 2:
            stored = np.ascontiguousarray(images.reshape(self.shape), dtype=self.dtype)
            self._mrc.data[...] = stored
            self.stats = RunningStats()
            self.stats.add(stored)
            self._written[:] = True
            return
        if images.ndim == 2:
            images = images[None]
        if start < 0 or start + len(images) > self.shape[0] or images.shape[1:] != self.shape[1:]:
            raise ShapeError(f"{self.path}: batch of shape {images.shape} at {start} does not fit the stack {self.shape}")
        done = self._written[start:start + len(images)]
        if done.any():  # header statistics are accumulated once per image
            raise ShapeError(f"{self.path}: image {start + int(np.argmax(done))} was already written")
        stored = images.astype(self.dtype, copy=False)
        view = self._mrc.data[start:start + len(images)]
        view[...] = stored
        self.stats.add(stored)
        _drop_pages(view)  # written: RSS stays one batch, whatever the stack length
        del view
        self._written[start:start + len(images)] = True

    def __exit__(self, exc_type, exc, tb):
        error = None
        try:
            if exc_type is None:
                if not self._written.all():
                    missing = int((~self._written).sum())
                    raise ShapeError(f"{self.path}: {missing} image(s) of the stack were never written; output discarded")
                _set_header(self._mrc, self.voxel_size, self.kind, self.stats)
                self._mrc.flush()
        except BaseException as e:  # noqa: BLE001 - re-raised below after cleaning up
            error = e
        finally:
            with contextlib.suppress(Exception):
                self._mrc.close()
        if error is not None:
            self._ctx.__exit__(type(error), error, error.__traceback__)
            raise error
        return self._ctx.__exit__(exc_type, exc, tb)


def validate(path: str | os.PathLike) -> bool:
    """True when ``mrcfile.validate`` accepts the file (its report is printed to a string)."""
    import io

    buf = io.StringIO()
    return bool(mrcfile.validate(str(path), print_file=buf))


class RunningStats:
    """Min, max, mean and standard deviation accumulated batch by batch.

    Each batch's mean and sum of squared deviations are computed in float64 and merged with the
    running ones by the pairwise update of Chan, Golub & LeVeque (Welford's for batches), so the
    result does not lose precision when the mean is large against the spread or the stack long;
    memory is one batch.  ``std`` is the population standard deviation (the MRC header ``rms``).
    """

    def __init__(self):
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.lo, self.hi = np.inf, -np.inf

    def add(self, b: np.ndarray) -> None:
        b = np.asarray(b)
        nb = int(b.size)
        if nb == 0:
            return
        mb = float(np.mean(b, dtype=np.float64))
        d = np.subtract(b, mb, dtype=np.float64)
        m2b = float(np.dot(d.ravel(), d.ravel()))
        n = self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.n = n
        self.lo, self.hi = min(self.lo, float(np.min(b))), max(self.hi, float(np.max(b)))

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.n)) if self.n else 0.0

    def result(self) -> dict:
        return {"min": self.lo, "max": self.hi, "mean": self.mean, "std": self.std, "n_pixels": self.n}

    def to_header(self, header) -> None:
        """Write ``dmin``, ``dmax``, ``dmean`` and ``rms`` of an MRC header (unset values when empty)."""
        if self.n == 0:
            header.dmin, header.dmax, header.dmean, header.rms = 0.0, -1.0, -2.0, -1.0  # MRC2014: unset
            return
        header.dmin, header.dmax = np.float32(self.lo), np.float32(self.hi)
        header.dmean, header.rms = np.float32(self.mean), np.float32(self.std)


def stack_stats(path: str | os.PathLike, batch_size: int = 256, permissive: bool = False,
                stack: bool | None = None) -> dict:
    """Min, max, mean and standard deviation of all pixels of an image, stack or volume, computed
    batch by batch from the memory map (bounded memory; float64 accumulation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FileQuirkWarning)  # the caller has sniffed (and been warned)
        with ImageStack(path, permissive=permissive, allow_volume=True, stack=stack) as st:
            acc = RunningStats()
            for _, b in st.batches(batch_size):
                acc.add(b)
            kind = st.info.kind
    return dict(acc.result(), kind=kind)
