"""Files as real tools write them: each known quirk is read with one FileQuirkWarning naming the
file; what is really broken keeps its one-line refusal.  Each quirk is reproduced on a small file,
then checked on the real files in ../shared/data/real."""
import json
import warnings

import mrcfile
import numpy as np
import pytest

from cryoxplain.errors import FileQuirkWarning, InputFileError
from cryoxplain.io.mrc import open_stack, read_mrc, sniff, stack_stats, write_mrc


def _stack(tmp_path, name="s.mrcs", n=3, voxel=1.5, kind="stack"):
    data = np.random.default_rng(5).standard_normal((n, 8, 6)).astype(np.float32)
    return write_mrc(tmp_path / name, data, voxel, kind=kind), data


def _patch(path, offset, raw: bytes):
    b = bytearray(path.read_bytes())
    b[offset:offset + len(raw)] = raw
    path.write_bytes(bytes(b))


def _no_quirk_warning(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FileQuirkWarning)
        return fn(*args, **kwargs)


def test_standard_file_gives_no_quirk_warning(tmp_path):
    p, data = _stack(tmp_path)
    out, vs = _no_quirk_warning(read_mrc, p)
    assert np.array_equal(out, data) and sniff(p).quirks == ()


def test_missing_map_id_and_zero_machine_stamp_warn_not_refuse(tmp_path):
    p, data = _stack(tmp_path)
    _patch(p, 208, b"\0" * 8)  # map ID (208..211) and machine stamp (212..215), as old RELION wrote
    with pytest.warns(FileQuirkWarning, match=r"s\.mrcs: read despite known quirks: no 'MAP ' identifier; "
                                              r"zero machine stamp"):
        out, vs = read_mrc(p)
    assert np.array_equal(out, data) and vs == pytest.approx(1.5)
    with pytest.warns(FileQuirkWarning):
        with open_stack(p) as st:
            assert np.array_equal(np.concatenate([b for _, b in st.batches(2)]), data)
    # only the stamp missing
    q, _ = _stack(tmp_path, "t.mrcs")
    _patch(q, 212, b"\0" * 4)
    with pytest.warns(FileQuirkWarning, match="zero machine stamp") as rec:
        read_mrc(q)
    assert "MAP" not in str(rec[0].message)


def test_missing_map_id_on_an_inconsistent_file_is_refused(tmp_path):
    p, _ = _stack(tmp_path)
    _patch(p, 208, b"\0" * 8)
    p.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(InputFileError, match=r"not an MRC file \(header has no 'MAP ' identifier, and truncated"):
        read_mrc(p)
    g = tmp_path / "garbage.mrc"
    g.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(InputFileError, match="not an MRC file"):
        read_mrc(g)


def test_mrc_particle_stack_with_ispg1(tmp_path):
    # cryoSPARC / cryoDRGN: a particle stack written as .mrc with ispg=1 (a volume, says the header)
    p, data = _stack(tmp_path, "particles.mrc", n=4, kind="volume")
    assert sniff(p).kind == "volume"
    with pytest.raises(InputFileError, match=r"particles\.mrc: header says 3D volume.*pass stack=True"):
        open_stack(p)
    with pytest.warns(FileQuirkWarning, match=r"header says volume \(ispg=1\); read as a particle stack \(stack=True\)"):
        info = sniff(p, stack=True)
    assert info.kind == "stack" and info.shape == (4, 8, 6)
    with pytest.warns(FileQuirkWarning):
        with open_stack(p, stack=True) as st:
            assert len(st) == 4 and np.array_equal(st[3], data[3])
    # a .mrcs with ispg=1 (ASPIRE) is a stack by its name, with the same warning
    q, _ = _stack(tmp_path, "aspire.mrcs", kind="volume")
    with pytest.warns(FileQuirkWarning, match=r"ispg=1\); read as a particle stack \(the name ends in \.mrcs\)"):
        assert sniff(q).kind == "stack"
    # stack=True on a single image: a stack of one
    img = write_mrc(tmp_path / "one.mrc", data[0], 1.0)
    out, _ = read_mrc(img, stack=True)
    assert out.shape == (1, 8, 6)
    # stack=False: an ispg=0 .mrc read as a volume (the ngl betaGal map)
    v, _ = _stack(tmp_path, "map.mrc", n=8)
    with pytest.warns(FileQuirkWarning, match=r"ispg=0\); read as a volume \(stack=False\)"):
        assert sniff(v, stack=False).kind == "volume"


def test_nversion_zero(tmp_path):
    p, data = _stack(tmp_path)
    with mrcfile.open(p, mode="r+") as m:
        m.header.nversion = 0
    with pytest.warns(FileQuirkWarning, match=r"nversion 0 \(pre-MRC2014 writer\)"):
        out, _ = read_mrc(p)
    assert np.array_equal(out, data)


@pytest.mark.parametrize("mode,dtype", [(0, np.int8), (1, np.int16), (6, np.uint16), (12, np.float16)])
def test_integer_and_half_modes_warn_and_read_as_float32(tmp_path, mode, dtype):
    vals = (np.arange(48).reshape(2, 4, 6) + (0 if mode == 6 else -20)).astype(dtype)
    p = tmp_path / f"m{mode}.mrcs"
    with mrcfile.new(p) as m:
        m.set_data(vals)
        m.voxel_size = 2.0
    with pytest.warns(FileQuirkWarning, match=rf"mode {mode} \("):
        out, vs = read_mrc(p)
    assert out.dtype == np.float32 and np.array_equal(out, vals.astype(np.float32)) and vs == 2.0


def _fei_file(path, voxel, exttyp=b"FEI1"):
    ext_dtype = mrcfile.dtypes.get_ext_header_dtype(exttyp)
    ext = np.zeros(1, dtype=ext_dtype)
    ext["Metadata size"] = ext_dtype.itemsize
    ext["Pixel size X"] = ext["Pixel size Y"] = 1.25e-10
    ext["Dose"] = 40.0e20
    ext["Defocus"] = -1.5e-6
    ext["HT"] = 300000.0
    ext["Application"] = b"Fei EPU"
    data = (np.arange(12 * 10).reshape(12, 10) % 7).astype(np.uint16)
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.set_extended_header(ext)
        m.header.exttyp = exttyp
        m.voxel_size = voxel
    return data


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_fei_extended_header_metadata(tmp_path, exttyp):
    p = tmp_path / "epu.mrc"
    data = _fei_file(p, 1.25, exttyp)
    with pytest.warns(FileQuirkWarning, match=rf"{exttyp.decode()} extended header \(pixel size 1.25 Å, "
                                              r"dose 40 e/Å², defocus 15000 Å\)"):
        info = sniff(p)
    m = info.metadata
    assert m["type"] == exttyp.decode() and m["pixel_size"] == pytest.approx(1.25)
    assert m["dose"] == pytest.approx(40.0) and m["defocus"] == pytest.approx(15000.0)  # Å, underfocus > 0
    assert m["voltage"] == pytest.approx(300.0) and m["application"] == "Fei EPU"
    out, vs = read_mrc(p)
    assert np.array_equal(out, data.astype(np.float32)) and vs == pytest.approx(1.25)
    # header voxel size 0: the extended header's pixel size is used, and said so
    q = tmp_path / "epu0.mrc"
    _fei_file(q, 0.0, exttyp)
    with pytest.warns(FileQuirkWarning, match=rf"voxel size 0 in the header; using the {exttyp.decode()} pixel size 1.25"):
        assert read_mrc(q)[1] == pytest.approx(1.25)


def test_voxel_size_zero_is_none_and_names_the_parameter(tmp_path):
    p, _ = _stack(tmp_path, voxel=None)
    with pytest.warns(FileQuirkWarning, match=r"voxel size 0 \(unknown\): give pixel_size=\.\.\."):
        assert read_mrc(p)[1] is None


# ---------------------------------------------------------------- the real files

def test_real_relion31_stack_without_map_id(shared_data):
    p = shared_data / "real" / "cryodrgn_relion31.mrcs"
    with pytest.warns(FileQuirkWarning, match="no 'MAP ' identifier; zero machine stamp.*nversion 0"):
        info = sniff(p)
    assert info.kind == "stack" and info.shape == (5, 256, 256) and info.header_quirk
    st = _no_quirk_warning(stack_stats, p)  # the caller has sniffed and been warned once
    assert st["n_pixels"] == 5 * 256 * 256 and np.isfinite(st["std"]) and st["std"] > 0


def test_real_epu_micrograph_fei1_header(shared_data):
    p = shared_data / "real" / "mrcfile_fei-extended.mrc"
    ref = json.loads((shared_data / "real" / "mrcfile_fei-extended.json").read_text())
    with pytest.warns(FileQuirkWarning, match=r"mode 6 \(uint16\).*FEI1 extended header \(pixel size 0.8538 Å, "
                                              r"dose 47.6 e/Å², defocus 9066 Å\)"):
        info = sniff(p)
    assert info.kind == "image" and info.shape == tuple(ref["shape"]) and info.mode == 6
    assert info.voxel_size == pytest.approx(ref["pixel_size_A"], rel=1e-6)
    fei = ref["fei1_extended_header_frame0"]
    assert info.metadata["pixel_size"] == pytest.approx(fei["Pixel size X"] * 1e10)
    assert info.metadata["dose"] == pytest.approx(fei["Dose"] * 1e-20)
    assert info.metadata["defocus"] == pytest.approx(-fei["Defocus"] * 1e10)
    assert info.metadata["voltage"] == pytest.approx(fei["HT"] / 1000)
    with pytest.warns(FileQuirkWarning):
        with open_stack(p) as st:
            assert st.shape == (1, 3838, 3710)
            assert st[0][:4, :4].dtype == np.float32


def test_real_aspire_stack_ispg1_voxel0_and_betagal_map(shared_data):
    real = shared_data / "real"
    with pytest.warns(FileQuirkWarning, match=r"voxel size 0 \(unknown\).*ispg=1\); read as a particle stack"):
        info = sniff(real / "aspire_sample.mrcs")
    assert info.kind == "stack" and info.shape == (17, 200, 200) and info.voxel_size is None
    with pytest.warns(FileQuirkWarning, match="nversion 0"):
        assert sniff(real / "ngl_betaGal.mrc", stack=False).kind == "volume"
