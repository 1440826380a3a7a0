"""A corpus of malformed inputs for the fuzz test (issue 18): broken MRC headers, truncated files,
NaN/Inf images, wrong dimensions, bad STAR files and corrupt model files.

``generate(folder)`` writes every case into ``folder`` and returns ``{name: Case}``; each case says
which role it plays (``"mrc"``: an image/stack file, ``"star"``: a particle file, ``"model"``: a
model file).  Run ``python tests/fuzz/fuzz_corpus.py DIR`` to write the corpus for manual use.
"""
from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOX = 16


@dataclass(frozen=True)
class Case:
    name: str
    role: str  # "mrc", "star" or "model"
    filename: str
    note: str


def _header(nx, ny, nz, mode=2, ispg=0, mapc=(1, 2, 3), magic=b"MAP ", machst=b"\x44\x44\x00\x00",
            voxel=5.0, nsymbt=0) -> bytearray:
    h = bytearray(1024)
    struct.pack_into("<3i", h, 0, nx, ny, nz)
    struct.pack_into("<i", h, 12, mode)
    struct.pack_into("<3i", h, 28, nx, ny, nz)  # mx, my, mz
    struct.pack_into("<3f", h, 40, nx * voxel, ny * voxel, nz * voxel)  # cella
    struct.pack_into("<3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, *mapc)
    struct.pack_into("<i", h, 88, ispg)
    struct.pack_into("<i", h, 92, nsymbt)
    struct.pack_into("<i", h, 196, 20140)  # nversion
    h[208:212] = magic
    h[212:216] = machst
    return h


def _stack_bytes(data: np.ndarray, **kw) -> bytes:
    n, h, w = data.shape
    return bytes(_header(w, h, n, **kw)) + data.astype("<f4").tobytes()


def _images(n=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, BOX, BOX)).astype(np.float32)


def _star(stack: str, rows: list[str], labels=("rlnImageName", "rlnOpticsGroup"), px="5.0") -> str:
    optics = ("# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n"
              f"_rlnImagePixelSize #3\n_rlnImageSize #4\n_rlnImageDimensionality #5\n1 opticsGroup1 {px} {BOX} 2\n\n")
    parts = "# version 30001\n\ndata_particles\n\nloop_\n" + "".join(f"_{l} #{i + 1}\n" for i, l in enumerate(labels))
    return optics + parts + "".join(r + "\n" for r in rows) + "\n"


def generate(folder: str | Path) -> dict[str, Case]:
    """Write the corpus into ``folder``; return ``{name: Case}``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Case] = {}

    def add(name, role, filename, content: bytes | str, note):
        p = d / filename
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        cases[name] = Case(name, role, filename, note)

    good = _images()
    ok = _stack_bytes(good, ispg=0)
    # ---- MRC: headers
    add("empty_file", "mrc", "empty.mrcs", b"", "0 bytes")
    add("random_bytes", "mrc", "random.mrcs", np.random.default_rng(1).bytes(4096), "no MRC header at all")
    add("text_file", "mrc", "text.mrcs", "this is not an MRC file\n" * 50, "a text file named .mrcs")
    add("short_header", "mrc", "short_header.mrcs", ok[:500], "file ends inside the 1024-byte header")
    add("truncated_data", "mrc", "truncated.mrcs", ok[:1024 + good.nbytes // 2], "half the data missing")
    add("truncated_last_image", "mrc", "truncated_last.mrcs", ok[:-7], "last image 7 bytes short")
    add("zero_dims", "mrc", "zero_dims.mrcs", bytes(_header(0, BOX, 4)) + good.tobytes(), "nx = 0")
    add("negative_dims", "mrc", "negative_dims.mrcs", bytes(_header(BOX, -BOX, 4)) + good.tobytes(), "ny < 0")
    add("huge_dims", "mrc", "huge_dims.mrcs", bytes(_header(100_000, 100_000, 1_000_000)) + good.tobytes(),
        "header claims 10^16 pixels")
    add("bad_mode", "mrc", "bad_mode.mrcs", bytes(_header(BOX, BOX, 4, mode=99)) + good.tobytes(), "mode 99")
    add("bad_axis_order", "mrc", "bad_axes.mrcs", bytes(_header(BOX, BOX, 4, mapc=(1, 1, 3))) + good.tobytes(),
        "mapc/mapr/maps not a permutation")
    add("huge_extended_header", "mrc", "huge_ext.mrcs", bytes(_header(BOX, BOX, 4, nsymbt=2**30)) + good.tobytes(),
        "extended header longer than the file")
    # ---- MRC: values and shapes
    nan = good.copy()
    nan[-1, 3, 3] = np.nan
    add("nan_last_image", "mrc", "nan_last.mrcs", _stack_bytes(nan), "NaN in the last image")
    inf = good.copy()
    inf[0] = np.inf
    add("inf_image", "mrc", "inf.mrcs", _stack_bytes(inf), "an all-Inf image")
    add("wrong_box", "mrc", "wrong_box.mrcs", _stack_bytes(_images()[:, :, :9]), "16×9 images (the other stack: 16×16)")
    add("volume", "mrc", "volume.mrc", _stack_bytes(_images(BOX), ispg=1), "a 3-D volume (ispg 1) given as particles")
    # ---- STAR particle files (the stack they list is good)
    (d / "star_stack.mrcs").write_bytes(ok)
    add("star_empty", "star", "empty.star", "", "an empty STAR file")
    add("star_garbage", "star", "garbage.star", "data_\nloop_\n_rlnImageName\n\x00\x01\x02 ???\n@@@\n", "not STAR syntax")
    add("star_no_image_name", "star", "no_image_name.star",
        _star("star_stack.mrcs", ["1", "1"], labels=("rlnOpticsGroup",)), "no rlnImageName column")
    add("star_missing_stack", "star", "missing_stack.star",
        _star("x", ["000001@does_not_exist.mrcs 1", "000002@does_not_exist.mrcs 1"]), "the listed stack is missing")
    add("star_index_past_end", "star", "past_end.star",
        _star("x", ["000001@star_stack.mrcs 1", "000099@star_stack.mrcs 1"]), "image 99 of a 4-image stack")
    add("star_index_zero", "star", "index_zero.star", _star("x", ["000000@star_stack.mrcs 1"]),
        "image index 0 (RELION counts from 1)")
    add("star_bad_name", "star", "bad_name.star", _star("x", ["not-an-image-name 1"]), "rlnImageName without @")
    add("star_nan_pixel_size", "star", "nan_px.star", _star("x", ["000001@star_stack.mrcs 1"], px="nan"),
        "pixel size NaN in the optics table")
    add("star_negative_pixel_size", "star", "neg_px.star", _star("x", ["000001@star_stack.mrcs 1"], px="-2"),
        "negative pixel size")
    # ---- model files
    add("model_random_bytes", "model", "random.safetensors", np.random.default_rng(2).bytes(2048), "not safetensors")
    add("model_empty", "model", "empty.safetensors", b"", "0 bytes")
    hdr = json.dumps({"__metadata__": {"cryoxplain": "{not json"}}).encode()
    add("model_bad_metadata", "model", "bad_meta.safetensors", struct.pack("<Q", len(hdr)) + hdr,
        "metadata that is not JSON")
    add("model_truncated", "model", "truncated.safetensors", _truncated_model(), "the default model cut in half")
    add("model_depth_eight", "model", "depth_eight.safetensors", _model_with_config({"depth": "eight"}),
        'config says "depth": "eight"')
    return cases


def _default_model_bytes() -> bytes:
    import cryoxplain

    return (Path(cryoxplain.__file__).parent / "data" / "models" / "default.safetensors").read_bytes()


def _truncated_model() -> bytes:
    b = _default_model_bytes()
    return b[: len(b) // 2]


def _model_with_config(change: dict) -> bytes:
    b = _default_model_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = json.loads(header["__metadata__"]["cryoxplain"])
    meta["config"] = dict(meta.get("config", {}), **change)
    header["__metadata__"]["cryoxplain"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    return struct.pack("<Q", len(new)) + new + b[8 + n:]


if __name__ == "__main__":  # pragma: no cover
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz_corpus")
    for c in generate(out).values():
        print(f"{c.role:6s} {out / c.filename}  ({c.note})")
