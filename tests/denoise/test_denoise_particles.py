"""`cryoxplain denoise particles.star -o out/` (and .cs, and --stack): the shipped default model on
the real STAR files in ../shared/data/real, run as RELION would (cwd = project directory); the
output STAR is the input except rlnImageName; bad input exits 2 and writes nothing."""
import hashlib
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import assert_star_same_except_image_names
from cryoxplain.cli.main import cli
from cryoxplain.denoise import Denoiser, denoise_particles
from cryoxplain.errors import FileQuirkWarning
from cryoxplain.io.mrc import read_mrc, write_mrc
from cryoxplain.io.particles import open_particles

FEI = ("real/fei-extended_picked105_bin6_box64.star", "real/fei-extended_picked105_bin6_box64.mrcs",
       "fei-extended_picked105_bin6_box64.mrcs")
DRGN = ("real/cryodrgn_relion31.star", "real/cryodrgn_relion31.mrcs", "relion31.mrcs")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project(tmp_path, shared_data, which=FEI):
    star, stack, name = which
    proj = tmp_path / "proj"
    (proj / "Select" / "job007").mkdir(parents=True)
    shutil.copy(shared_data / star, proj / "Select" / "job007" / "particles.star")
    shutil.copy(shared_data / stack, proj / name)
    return proj, proj / "Select" / "job007" / "particles.star"


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def default_denoiser():
    return Denoiser("default", device="cpu")


def test_cli_denoises_a_real_star_like_relion(tmp_path, shared_data, monkeypatch, default_denoiser):
    pytest.importorskip("starfile")
    proj, star = project(tmp_path, shared_data)
    monkeypatch.chdir(proj)
    before = {p: digest(p) for p in proj.rglob("*") if p.is_file()}
    r = CliRunner().invoke(cli, ["denoise", "Select/job007/particles.star", "-o", "Denoise/job001", "-d", "cpu"])
    assert r.exit_code == 0, r.output
    out = proj / "Denoise" / "job001" / "particles_denoised.star"
    assert f"wrote {out.relative_to(proj)}" in r.output
    assert {p: digest(p) for p in before} == before  # inputs untouched
    # the images: the default model applied per particle, in the new stack
    ps = open_particles(star)
    new = open_particles(out)
    assert new.stacks == (proj / "Denoise" / "job001" / "fei-extended_picked105_bin6_box64_denoised.mrcs",)
    some = [0, 1, 50, 103, 104]  # each particle is normalised on its own: a subset is enough
    expected = default_denoiser.denoise_images(ps.read(some))
    np.testing.assert_allclose(new.read(some), expected, rtol=1e-5, atol=1e-5)
    assert new.pixel_size == pytest.approx(ps.pixel_size)
    assert read_mrc(new.stacks[0])[1] == pytest.approx(ps.pixel_size, rel=1e-5)
    # the STAR: identical except rlnImageName (compared with the starfile package and as text)
    b = assert_star_same_except_image_names(star, out, 105)  # text level: only the image names changed
    names = b["particles"]["rlnImageName"].tolist()
    assert names[0] == "000001@Denoise/job001/fei-extended_picked105_bin6_box64_denoised.mrcs"
    assert len(names) == 105


def test_quirky_real_star_and_cryosparc_cs(tmp_path, shared_data, monkeypatch, default_denoiser):
    # cryoDRGN's RELION 3.1 stack (no MAP ID, zero machine stamp): warned about, denoised
    proj, star = project(tmp_path / "a", shared_data, DRGN)
    monkeypatch.chdir(proj)
    with pytest.warns(FileQuirkWarning, match="no 'MAP ' identifier"):
        out = denoise_particles(star, "Denoise/job002", default_denoiser, batch_size=2)
    assert out.absolute() == proj / "Denoise" / "job002" / "particles_denoised.star"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FileQuirkWarning)
        src = open_particles(star).read()
    np.testing.assert_allclose(open_particles(out).read(), default_denoiser.denoise_images(src), rtol=1e-5, atol=1e-5)
    # a cryoSPARC .cs listing an .mrc stack with ispg=1 (the real particles, re-ordered)
    imgs = read_mrc(shared_data / FEI[1])[0][:12]
    cs_proj = tmp_path / "P3"
    (cs_proj / "J9" / "extract").mkdir(parents=True)
    write_mrc(cs_proj / "J9" / "extract" / "p.mrc", imgs, 5.122653, kind="volume")
    dt = [("uid", "<u8"), ("blob/path", "S30"), ("blob/idx", "<u4"), ("blob/psize_A", "<f4"), ("ctf/df1_A", "<f4")]
    rec = np.zeros(8, dtype=dt)
    rec["uid"] = np.arange(8) + 7
    rec["blob/path"] = b"J9/extract/p.mrc"
    rec["blob/idx"] = [11, 3, 5, 0, 1, 2, 9, 8]
    rec["blob/psize_A"] = 5.122653
    rec["ctf/df1_A"] = 9066.0
    cs = cs_proj / "J9" / "particles.cs"
    with open(cs, "wb") as f:
        np.save(f, rec)
    r = CliRunner().invoke(cli, ["denoise", str(cs), "-o", str(cs_proj / "J10"), "--project-dir", str(cs_proj),
                                 "-d", "cpu", "-b", "3"])
    assert r.exit_code == 0, r.output
    new = np.load(cs_proj / "J10" / "particles_denoised.cs")
    for name in ("uid", "blob/psize_A", "ctf/df1_A"):
        assert np.array_equal(new[name], rec[name])
    assert new["blob/idx"].tolist() == list(range(8)) and new["blob/path"][0] == b"J10/J9/extract/p_denoised.mrcs"
    back = open_particles(cs_proj / "J10" / "particles_denoised.cs", project_dir=cs_proj).read()
    np.testing.assert_allclose(back, default_denoiser.denoise_images(imgs[rec["blob/idx"]]), rtol=1e-5, atol=1e-5)


def test_stack_flag_reads_ispg1_mrc_as_a_stack(tmp_path, shared_data, default_denoiser):
    imgs = read_mrc(shared_data / FEI[1])[0][:4]
    src = tmp_path / "cs_stack.mrc"
    write_mrc(src, imgs, 5.12, kind="volume")  # ispg=1: a volume by its header
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(tmp_path / "o.mrc"), "-d", "cpu"])
    assert r.exit_code == 2 and "3D volume" in r.output and not (tmp_path / "o.mrc").exists()
    r = CliRunner().invoke(cli, ["denoise", str(src), "-o", str(tmp_path / "o.mrc"), "--stack", "-d", "cpu"])
    assert r.exit_code == 0, r.output
    out, px = read_mrc(tmp_path / "o.mrc", stack=True)
    assert out.shape == (4, 64, 64) and px == pytest.approx(5.12)
    np.testing.assert_allclose(out, default_denoiser.denoise_images(imgs), rtol=1e-5, atol=1e-5)


def test_bad_particle_input_exits_2_and_writes_nothing(tmp_path, shared_data, monkeypatch):
    proj, star = project(tmp_path, shared_data)
    monkeypatch.chdir(proj)
    before = tree(proj)
    digests = {p: digest(p) for p in proj.rglob("*") if p.is_file()}
    run = lambda *a: CliRunner().invoke(cli, ["denoise", *a, "-d", "cpu"])  # noqa: E731
    # the output STAR would overwrite the input
    r = run("Select/job007/particles.star", "-o", "Select/job007", "--suffix", "")
    assert r.exit_code == 2 and "is also an input; inputs are never modified" in r.output
    assert len(r.output.strip().splitlines()) == 1
    # missing stacks
    (proj / FEI[2]).rename(proj / "elsewhere.mrcs")
    r = run("Select/job007/particles.star", "-o", "Denoise/job001")
    assert r.exit_code == 2 and "fei-extended_picked105_bin6_box64.mrcs (listed for 105 particle(s)) not found" in r.output
    (proj / "elsewhere.mrcs").rename(proj / FEI[2])
    # an index past the end of the stack
    bad = proj / "Select" / "job007" / "bad.star"
    bad.write_text(star.read_text().replace("000105@", "000999@"))
    r = run("Select/job007/bad.star", "-o", "Denoise/job001")
    assert r.exit_code == 2 and "past the end" in r.output
    bad.unlink()
    # particle files and MRC files in one run; a non-MRC output format
    r = run("Select/job007/particles.star", FEI[2], "-o", "Denoise/job001")
    assert r.exit_code == 2 and "separate runs" in r.output
    r = run("Select/job007/particles.star", "-o", "Denoise/job001", "--format", "png")
    assert r.exit_code == 2
    # a bad model fails before anything is written
    r = run("Select/job007/particles.star", "-o", "Denoise/job001", "--model", "no-such-model")
    assert r.exit_code == 2
    assert tree(proj) == before
    assert {p: digest(p) for p in digests} == digests
