"""Particle sets from RELION STAR and cryoSPARC .cs files: reading rules, streaming, the writer
(identical particle file except image names), errors; round trips against the starfile package on
the real STAR files in ../shared/data."""
import hashlib
import shutil
import warnings

import numpy as np
import pytest

from conftest import assert_star_same_except_image_names
from cryoxplain.errors import FileQuirkWarning, InputFileError, OutputExistsError, ParameterError, ShapeError
from cryoxplain.io.mrc import read_mrc, sniff, write_mrc
from cryoxplain.io.particles import ParticleSetWriter, open_particles, write_particle_set

# real STAR file → (where its stack must be, relative to the project directory; stack file;
#                   particles, box, pixel size)
REAL = {
    "real/aspire_sample_particles_relion31.star": ("sample.mrcs", "real/aspire_sample.mrcs", 17, 200, 1.4),
    "aspire_sample_relion_data.star": ("sample.mrcs", "real/aspire_sample.mrcs", 17, 200, 5.0 * 1e4 / 37369.207031),
    "real/fei-extended_picked105_bin6_box64.star": ("fei-extended_picked105_bin6_box64.mrcs",
                                                    "real/fei-extended_picked105_bin6_box64.mrcs", 105, 64, 5.122653),
    "real/cryodrgn_relion31.star": ("relion31.mrcs", "real/cryodrgn_relion31.mrcs", 5, 256, 2.806),
}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FileQuirkWarning)
        return fn(*a, **k)


def relion_project(tmp_path, shared_data, star):
    """A RELION project: the STAR in a job folder, its stack where rlnImageName says (relative to
    the project directory), as RELION would run from the project directory."""
    stack_name, stack_file, *_ = REAL[star]
    proj = tmp_path / "proj"
    (proj / "Select" / "job007").mkdir(parents=True)
    dst = proj / "Select" / "job007" / "particles.star"
    shutil.copy(shared_data / star, dst)
    shutil.copy(shared_data / stack_file, proj / stack_name)
    return proj, dst


@pytest.mark.parametrize("star", sorted(REAL))
def test_real_star_files_read_and_round_trip_like_starfile(tmp_path, shared_data, star, monkeypatch):
    pytest.importorskip("starfile")
    _, _, n, box, px = REAL[star]
    proj, path = relion_project(tmp_path, shared_data, star)
    monkeypatch.chdir(proj)  # RELION runs in the project directory: the default project_dir
    ps = _quiet(open_particles, path)
    assert len(ps) == n and ps.box == box and ps.image_shape == (box, box)
    assert ps.pixel_size == pytest.approx(px, rel=1e-6)
    assert ps.stacks == (proj / REAL[star][0],) and ps.index_in_stack.tolist() == list(range(n))
    imgs = _quiet(read_mrc, shared_data / REAL[star][1], stack=True)[0]
    assert np.array_equal(ps.read(), imgs)
    before = {p: digest(p) for p in (path, ps.stacks[0])}

    out = write_particle_set(ps, proj / "Denoise" / "job008", ((p, -x) for p, x in ps.batches(6)))
    assert out == proj / "Denoise" / "job008" / "particles_denoised.star"
    assert {p: digest(p) for p in before} == before  # inputs untouched
    # the new STAR is the input except rlnImageName, byte for byte elsewhere
    ref_out = assert_star_same_except_image_names(path, out, n)
    names = ref_out[ps.particles_block or ""]["rlnImageName"].tolist()
    assert names == [f"{k:06d}@Denoise/job008/{REAL[star][0].rsplit('.', 1)[0]}_denoised.mrcs" for k in range(1, n + 1)]
    # RELION-relative names resolve from the project directory; the images are what was written
    back = open_particles(out)
    assert len(back) == n and back.pixel_size == pytest.approx(px, rel=1e-6)
    assert np.array_equal(back.read(), -imgs)
    assert sniff(back.stacks[0]).voxel_size == pytest.approx(px, rel=1e-5)


def test_project_dir_then_star_folder_and_above(tmp_path, shared_data):
    proj, path = relion_project(tmp_path, shared_data, "real/cryodrgn_relion31.star")
    elsewhere, store = tmp_path / "elsewhere", tmp_path / "store"
    elsewhere.mkdir()
    store.mkdir()
    # run from elsewhere: the project is found two folders above the STAR (Select/job007/)
    assert _quiet(open_particles, path, project_dir=elsewhere).stacks == (proj / "relion31.mrcs",)
    shutil.move(proj / "relion31.mrcs", store / "relion31.mrcs")
    with pytest.raises(InputFileError, match=r"particles\.star: stack relion31\.mrcs \(listed for 5 particle\(s\)\) "
                                             r"not found \(looked in .*elsewhere, .*job007, .*\); give project_dir="):
        _quiet(open_particles, path, project_dir=elsewhere)
    assert _quiet(open_particles, path, project_dir=store).stacks == (store / "relion31.mrcs",)
    # a stack next to the STAR file
    shutil.move(store / "relion31.mrcs", path.parent / "relion31.mrcs")
    assert _quiet(open_particles, path, project_dir=elsewhere).stacks == (path.parent / "relion31.mrcs",)
    with pytest.raises(ParameterError, match="project_dir=.* is not a directory"):
        open_particles(path, project_dir=tmp_path / "nope")


def test_quirks_reported_once_per_set(tmp_path, shared_data):
    proj, path = relion_project(tmp_path, shared_data, "real/cryodrgn_relion31.star")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ps = open_particles(path, project_dir=proj)
        list(ps.batches(2))
    msgs = [str(w.message) for w in rec if issubclass(w.category, FileQuirkWarning)]
    assert len(msgs) == 2, msgs
    assert "1 Å in the header, 2.806 Å listed); using the listed value" in msgs[0]
    assert "read despite known quirks: no 'MAP ' identifier; zero machine stamp" in msgs[1]
    # the ASPIRE stack: voxel size 0 in the header is not reported when the STAR gives it
    proj2, path2 = relion_project(tmp_path / "b", shared_data, "real/aspire_sample_particles_relion31.star")
    with pytest.warns(FileQuirkWarning) as rec:
        open_particles(path2, project_dir=proj2)
    text = " ".join(str(w.message) for w in rec)
    assert "voxel size 0" not in text and "read as a particle stack (listed in particles.star)" in text


def _toy_stacks(tmp_path, shapes=((5, 12, 12), (4, 12, 12)), names=("a.mrcs", "b.mrc")):
    rng = np.random.default_rng(3)
    out = []
    for shape, name in zip(shapes, names):
        d = rng.standard_normal(shape).astype(np.float32)
        # b.mrc: a cryoSPARC-style .mrc stack with ispg=1
        write_mrc(tmp_path / name, d, 2.0, kind="volume" if name.endswith(".mrc") else "stack")
        out.append(d)
    return out


def _star(path, entries, optics_px=2.0, box=12, version="3.1"):
    if version == "3.1":
        head = ("\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnOpticsGroupName #2\n"
                f"_rlnImagePixelSize #3\n_rlnImageSize #4\n   1 opticsGroup1 {optics_px} {box}\n\n"
                "# version 30001\n\ndata_particles\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n_rlnOpticsGroup #3\n")
        rows = "".join(f"{e}   {10.5 * i:.3f} 1\n" for i, e in enumerate(entries))
    else:
        head = "data_\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n"
        rows = "".join(f"{e} {10.5 * i:.3f}\n" for i, e in enumerate(entries))
    path.write_text(head + rows)
    return path


def test_subsets_out_of_order_streaming_and_writing(tmp_path):
    a, b = _toy_stacks(tmp_path)
    entries = ["3@b.mrc", "000002@a.mrcs", "5@a.mrcs", "1@b.mrc", "1@a.mrcs"]
    path = _star(tmp_path / "sel.star", entries)
    ps = _quiet(open_particles, path, project_dir=tmp_path)
    assert len(ps) == 5 and [s.name for s in ps.stacks] == ["b.mrc", "a.mrcs"]
    assert ps.index_in_stack.tolist() == [2, 1, 4, 0, 0] and ps.pixel_size == 2.0
    expect = np.stack([b[2], a[1], a[4], b[0], a[0]])
    seen = []
    for pos, imgs in ps.batches(2):
        assert len(pos) <= 2 and len(set(ps.stack_of[pos])) == 1
        assert np.array_equal(imgs, expect[pos])
        seen += pos.tolist()
    assert sorted(seen) == list(range(5))
    assert np.array_equal(ps[2], a[4]) and np.array_equal(ps.read([4, 0]), expect[[4, 0]])
    st = ps.stats()
    assert st["n_pixels"] == 5 * 144 and st["mean"] == pytest.approx(float(expect.astype(np.float64).mean()))
    # write in an arbitrary order, one particle at a time
    out_dir = tmp_path / "out"
    with ParticleSetWriter(ps, out_dir) as w:
        for i in [4, 1, 0, 3, 2]:
            w.write([i], expect[i:i + 1] * 2)
    back = open_particles(out_dir / "sel_denoised.star")
    assert np.array_equal(back.read(), expect * 2)
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_denoised.mrcs", "b_denoised.mrcs", "sel_denoised.star"]
    assert len(read_mrc(out_dir / "a_denoised.mrcs")[0]) == 3  # only the listed particles
    # RELION 3.0 single table, pixel size from the headers
    p30 = _star(tmp_path / "old.star", entries[:2], version="3.0")
    ps30 = _quiet(open_particles, p30, project_dir=tmp_path)
    assert ps30.relion_version == "3.0" and ps30.pixel_size == pytest.approx(2.0) and ps30.optics_groups == ()


def test_binned_output_updates_pixel_size_and_box(tmp_path):
    _toy_stacks(tmp_path)
    path = _star(tmp_path / "p.star", ["1@a.mrcs", "2@a.mrcs"])
    ps = _quiet(open_particles, path, project_dir=tmp_path)
    with pytest.raises(ParameterError, match=r"give pixel_size=\.\.\. for the output"):
        ParticleSetWriter(ps, tmp_path / "o", image_shape=(6, 6))
    out = write_particle_set(ps, tmp_path / "o", ((p, x[:, ::2, ::2]) for p, x in ps.batches()),
                             image_shape=(6, 6), pixel_size=4.0)
    text = out.read_text()
    assert "   1 opticsGroup1 4.0 6\n" in text
    old = path.read_text().splitlines()
    new = text.splitlines()
    diff = [(x, y) for x, y in zip(old, new) if x != y]
    assert len(old) == len(new) and diff == [
        ("   1 opticsGroup1 2.0 12", "   1 opticsGroup1 4.0 6"),
        ("1@a.mrcs   0.000 1", "000001@o/a_denoised.mrcs   0.000 1"),
        ("2@a.mrcs   10.500 1", "000002@o/a_denoised.mrcs   10.500 1")]
    back = open_particles(out)
    assert back.pixel_size == 4.0 and back.box == 6 and sniff(back.stacks[0]).voxel_size == pytest.approx(4.0)


def _cs(tmp_path, n=6):
    """A cryoSPARC extract job: J5/extract/x_particles.mrc (.mrc, ispg=1) and J5/particles.cs."""
    proj = tmp_path / "P1"
    (proj / "J5" / "extract").mkdir(parents=True)
    data = np.random.default_rng(4).standard_normal((n, 10, 10)).astype(np.float32)
    write_mrc(proj / "J5" / "extract" / "x_particles.mrc", data, 1.7, kind="volume")
    dt = [("uid", "<u8"), ("blob/path", "S40"), ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
          ("blob/psize_A", "<f4"), ("blob/sign", "<f4"), ("ctf/df1_A", "<f4")]
    rec = np.zeros(n - 1, dtype=dt)
    rec["uid"] = np.arange(100, 100 + n - 1)
    rec["blob/path"] = b"J5/extract/x_particles.mrc"
    rec["blob/idx"] = np.arange(n - 1)[::-1] + 1  # 0-based; image 0 not listed, reverse order
    rec["blob/shape"] = (10, 10)
    rec["blob/psize_A"] = 1.7
    rec["blob/sign"] = -1
    rec["ctf/df1_A"] = np.linspace(9000, 12000, n - 1)
    cs = proj / "J5" / "particles.cs"
    with open(cs, "wb") as f:
        np.save(f, rec)
    return proj, cs, data, rec


def test_cryosparc_cs_read_and_write(tmp_path):
    proj, cs, data, rec = _cs(tmp_path)
    ps = _quiet(open_particles, cs)  # relative paths: the .cs folder's parent is the project
    assert ps.format == "cs" and len(ps) == 5 and ps.box == 10 and ps.pixel_size == pytest.approx(1.7)
    assert np.array_equal(ps.read(), data[rec["blob/idx"]])
    assert _quiet(open_particles, cs, project_dir=proj).stacks == (proj / "J5/extract/x_particles.mrc",)
    out = write_particle_set(ps, proj / "J6", ((p, x + 1) for p, x in ps.batches(2)))
    assert out == proj / "J6" / "particles_denoised.cs"
    new = np.load(out)
    assert new.dtype.names == rec.dtype.names
    for name in rec.dtype.names:
        if name not in ("blob/path", "blob/idx"):
            assert np.array_equal(new[name], rec[name]), name
    assert new["blob/idx"].tolist() == list(range(5))
    back = _quiet(open_particles, out, project_dir=proj)
    assert np.array_equal(back.read(), data[rec["blob/idx"]] + 1)
    # a passthrough file has no blob fields
    pt = proj / "J5" / "passthrough.cs"
    with open(pt, "wb") as f:
        np.save(f, rec[["uid", "ctf/df1_A"]])
    with pytest.raises(InputFileError, match=r"passthrough\.cs: cryoSPARC file has no blob/path field"):
        open_particles(pt)


# ---------------------------------------------------------------- bad input: one line, nothing written

def test_errors_name_the_file(tmp_path):
    _toy_stacks(tmp_path, shapes=((5, 12, 12), (4, 10, 10)))
    with pytest.raises(InputFileError, match=r"m\.star: stack nope\.mrcs \(listed for 1 particle\(s\)\) not found"):
        open_particles(_star(tmp_path / "m.star", ["1@a.mrcs", "1@nope.mrcs"]), project_dir=tmp_path)
    with pytest.raises(InputFileError, match=r"e\.star: particle 2 \(6@a\.mrcs\) is past the end of .*a\.mrcs, "
                                             r"which holds 5 image\(s\)"):
        _quiet(open_particles, _star(tmp_path / "e.star", ["5@a.mrcs", "6@a.mrcs"]), project_dir=tmp_path)
    with pytest.raises(InputFileError, match=r"x\.star: mixed box sizes: .*a\.mrcs holds 12×12 images, .*b\.mrc 10×10"):
        _quiet(open_particles, _star(tmp_path / "x.star", ["1@a.mrcs", "1@b.mrc"]), project_dir=tmp_path)
    with pytest.raises(InputFileError, match="RELION indices start at 1"):
        open_particles(_star(tmp_path / "z.star", ["0@a.mrcs"]), project_dir=tmp_path)
    (tmp_path / "t.star").write_text("data_\nloop_\n_rlnAngleRot\n1.0\n")
    with pytest.raises(InputFileError, match=r"t\.star: no particle table"):
        open_particles(tmp_path / "t.star")
    with pytest.raises(InputFileError, match="not a particle file"):
        open_particles(tmp_path / "a.mrcs")


def test_writer_never_overwrites_and_leaves_nothing_on_failure(tmp_path):
    a, _ = _toy_stacks(tmp_path)
    path = _star(tmp_path / "p.star", ["1@a.mrcs", "2@a.mrcs", "3@a.mrcs"])
    ps = _quiet(open_particles, path, project_dir=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    digests = {p: digest(p) for p in (path, tmp_path / "a.mrcs")}
    # outputs that would be an input: the STAR, or a stack (same folder, no suffix)
    with pytest.raises(ParameterError, match=r"output .*p\.star is also an input; inputs are never modified"):
        ParticleSetWriter(ps, tmp_path, name="p.star")
    with pytest.raises(ParameterError, match=r"output .*a\.mrcs is also an input"):
        ParticleSetWriter(ps, tmp_path, suffix="")
    # an exception half-way: nothing is left, not even the output folder it created
    with pytest.raises(RuntimeError, match="boom"):
        with ParticleSetWriter(ps, tmp_path / "out") as w:
            w.write([0], a[:1])
            raise RuntimeError("boom")
    # particles never written
    with pytest.raises(ShapeError, match=r"1 of 3 particle\(s\) were never written"):
        with ParticleSetWriter(ps, tmp_path / "out") as w:
            w.write([0, 1], a[:2])
    with pytest.raises(ShapeError, match="got images of shape"):
        with ParticleSetWriter(ps, tmp_path / "out") as w:
            w.write([0, 1], a[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert {p: digest(p) for p in digests} == digests
    # existing outputs: refused without force, replaced with it
    out = write_particle_set(ps, tmp_path / "out", ps.batches())
    with pytest.raises(OutputExistsError, match=r"a_denoised\.mrcs exists; pass force=True"):
        write_particle_set(ps, tmp_path / "out", ps.batches())
    write_particle_set(ps, tmp_path / "out", ((p, x * 0) for p, x in ps.batches()), force=True)
    assert not open_particles(out).read().any()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_denoised.mrcs", "p_denoised.star"]
