"""MRC I/O: round trips, dtype policy, voxel size, stack vs volume, malformed inputs, atomic writes."""
import hashlib
import struct
import warnings

import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.errors import InputFileError, OutputExistsError, ParameterError, ShapeError
from cryoxplain.io.mrc import StackWriter, open_stack, read_mrc, sniff, validate, write_mrc

MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stack(tmp_path):
    data = np.random.default_rng(0).standard_normal((7, 12, 10)).astype(np.float32)
    path = write_mrc(tmp_path / "in.mrcs", data, 1.31)
    return path, data


# ---------------------------------------------------------------- round trips

def test_stack_round_trip_keeps_data_voxel_size_and_is_valid(stack):
    path, data = stack
    assert validate(path)
    info = sniff(path)
    assert (info.kind, info.shape, info.mode) == ("stack", (7, 12, 10), 2)
    out, vs = read_mrc(path)
    assert np.array_equal(out, data) and out.dtype == np.float32
    assert vs == pytest.approx(1.31, abs=1e-5)
    with mrcfile.open(path, header_only=True) as m:
        assert int(m.header.ispg) == 0


def test_volume_and_image_round_trip(tmp_path):
    vol = np.random.default_rng(1).random((9, 9, 9)).astype(np.float32)
    p = write_mrc(tmp_path / "v.mrc", vol, 2.5, kind="volume")
    assert validate(p) and sniff(p).kind == "volume"
    with mrcfile.open(p, header_only=True) as m:
        assert int(m.header.ispg) == 1
    assert np.array_equal(read_mrc(p)[0], vol)
    with pytest.raises(InputFileError, match="3D volume"):
        open_stack(p)
    with open_stack(p, allow_volume=True) as st:
        assert len(st) == 9
    img = vol[0]
    q = write_mrc(tmp_path / "i.mrc", img, None)
    assert validate(q) and sniff(q).kind == "image"
    out, vs = read_mrc(q)
    assert out.shape == (9, 9) and np.array_equal(out, img) and vs is None
    # a one-image .mrcs stays a stack
    r = write_mrc(tmp_path / "one.mrcs", vol[:1], 1.0)
    assert read_mrc(r)[0].shape == (1, 9, 9)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_input_modes_read_as_float32(tmp_path, mode):
    vals = (np.arange(60).reshape(3, 4, 5) - (0 if mode == 6 else 30)).astype(MODES[mode])
    p = tmp_path / f"m{mode}.mrcs"
    with mrcfile.new(p) as m:
        m.set_data(vals)
        m.voxel_size = 3.0
    assert sniff(p).mode == mode
    out, vs = read_mrc(p)
    assert out.dtype == np.float32 and np.array_equal(out, vals.astype(np.float32)) and vs == 3.0
    out16, _ = read_mrc(p, dtype="float16")
    assert out16.dtype == np.float16 and np.array_equal(out16.astype(np.float32), vals.astype(np.float32))


def test_float16_output_and_dtype_policy(tmp_path, stack):
    _, data = stack
    p = write_mrc(tmp_path / "h.mrcs", data, 1.0, dtype="float16")
    with mrcfile.open(p, header_only=True) as m:
        assert int(m.header.mode) == 12
    assert validate(p)
    out, _ = read_mrc(p)
    assert out.dtype == np.float32 and np.allclose(out, data, atol=2e-3)
    with pytest.raises(ParameterError, match="float32 or float16"):
        write_mrc(tmp_path / "x.mrcs", data, dtype="float64")
    with pytest.raises(ParameterError, match="float32 or float16"):
        read_mrc(p, dtype="int8")
    big = write_mrc(tmp_path / "big.mrcs", data * 1e6, 1.0)
    with pytest.raises(ParameterError, match="float16 range"):
        read_mrc(big, dtype="float16")


def test_batched_memory_mapped_reading(stack):
    path, data = stack
    with open_stack(path) as st:
        assert isinstance(st._data, np.memmap)
        assert len(st) == 7 and st.image_shape == (12, 10) and st.voxel_size == pytest.approx(1.31, abs=1e-5)
        parts = list(st.batches(3))
        assert [s for s, _ in parts] == [0, 3, 6]
        assert np.array_equal(np.concatenate([b for _, b in parts]), data)
        assert np.array_equal(st[4], data[4])
        with pytest.raises(ParameterError):
            next(st.batches(0))


def test_stack_writer_atomic_and_complete(tmp_path, stack):
    _, data = stack
    out = tmp_path / "w.mrcs"
    with StackWriter(out, data.shape, 1.31) as w:
        for s in range(0, 7, 3):
            w.write(s, data[s:s + 3])
    assert validate(out) and np.array_equal(read_mrc(out)[0], data)
    assert read_mrc(out)[1] == pytest.approx(1.31, abs=1e-5)
    other = tmp_path / "partial.mrcs"
    with pytest.raises(ShapeError, match="never written"):
        with StackWriter(other, data.shape, 1.0) as w:
            w.write(0, data[:3])
    with pytest.raises(RuntimeError):
        with StackWriter(other, data.shape, 1.0) as w:
            w.write(0, data)
            raise RuntimeError("boom")
    with pytest.raises(ShapeError):
        with StackWriter(other, data.shape, 1.0) as w:
            w.write(5, data[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mrcs", "w.mrcs"]


def test_no_overwrite_without_force_and_inputs_untouched(tmp_path, stack):
    path, data = stack
    before = digest(path)
    read_mrc(path)
    with open_stack(path) as st:
        list(st.batches(2))
    assert digest(path) == before
    with pytest.raises(OutputExistsError, match="force=True"):
        write_mrc(path, data * 2)
    assert digest(path) == before
    with pytest.raises(ParameterError, match="also an input"):
        write_mrc(path, data * 2, force=True, inputs=(path,))
    write_mrc(path, data * 2, 1.31, force=True)
    assert np.array_equal(read_mrc(path)[0], data * 2)


def test_refuses_to_write_nan_or_empty(tmp_path):
    bad = np.ones((2, 4, 4), np.float32)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ParameterError, match="NaN/Inf"):
        write_mrc(tmp_path / "a.mrcs", bad)
    with pytest.raises(ShapeError, match="empty"):
        write_mrc(tmp_path / "b.mrcs", np.zeros((0, 4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- malformed inputs

def _patch(raw: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    b[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(b)


def make_bad(tmp_path, kind):
    data = np.random.default_rng(2).standard_normal((4, 8, 8)).astype(np.float32)
    good = write_mrc(tmp_path / "good.mrc", data, 2.0, kind="volume")
    raw = good.read_bytes()
    good.unlink()
    p = tmp_path / f"{kind}.mrc"
    if kind == "truncated":
        p.write_bytes(raw[:-37])
    elif kind == "short_header":
        p.write_bytes(raw[:500])
    elif kind == "garbage":
        p.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "wrong_mode":
        p.write_bytes(_patch(raw, 12, "<i", 4))
    elif kind == "inconsistent":
        p.write_bytes(raw + b"\0" * 100)
    elif kind in ("nan", "inf"):
        d = data.copy()
        d[1, 2, 3] = np.nan if kind == "nan" else np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.new(p) as m:
                m.set_data(d)
    elif kind == "empty":
        with mrcfile.new(p) as m:
            m.set_data(np.zeros((0, 8, 8), np.float32))
    elif kind == "text":
        p.write_text("data_\nloop_\n_rlnImageName\n" * 100)
    return p


MALFORMED = {
    "truncated": "truncated file",
    "short_header": "not an MRC file",
    "garbage": "not an MRC file",
    "text": "not an MRC file",
    "wrong_mode": "unsupported MRC data mode 4",
    "inconsistent": "larger than its header says",
    "nan": "NaN/Inf",
    "inf": "NaN/Inf",
    "empty": "empty stack",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_input_specific_error(tmp_path, kind):
    p = make_bad(tmp_path, kind)
    with pytest.raises(InputFileError, match=MALFORMED[kind]):
        read_mrc(p)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_input_cli_exit_2_no_output(tmp_path, kind):
    p = make_bad(tmp_path, kind)
    before = digest(p)
    res = CliRunner().invoke(cli, ["simulate", str(p), "--pixel-size", "2", "-n", "2", "--box", "8",
                                   "-o", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    err = res.output.strip()
    assert err.startswith("cryoxplain: error:") and MALFORMED[kind] in err and "\n" not in err
    assert "Traceback" not in res.output
    assert sorted(q.name for q in tmp_path.iterdir()) == [p.name]  # nothing written
    assert digest(p) == before


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        sniff(tmp_path / "nope.mrc")
    with pytest.raises(InputFileError, match="directory"):
        sniff(tmp_path)


def test_permissive_fallback_warns(tmp_path):
    p = make_bad(tmp_path, "truncated")
    with pytest.warns(UserWarning, match="permissive"):
        out, _ = read_mrc(p, permissive=True)
    assert out.shape == (3, 8, 8)  # the complete images
    q = make_bad(tmp_path, "inconsistent")
    with pytest.warns(UserWarning, match="permissive"):
        out, _ = read_mrc(q, permissive=True)
    assert out.shape == (4, 8, 8)
    raw = bytearray(q.read_bytes()[:-100])
    raw[212:216] = b"\x12\x34\0\0"  # unknown (non-zero) machine stamp; a zero one is a known quirk
    r = tmp_path / "stamp.mrc"
    r.write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match="machine stamp"):
        read_mrc(r)
    with pytest.warns(UserWarning, match="machine stamp"):
        read_mrc(r, permissive=True)
