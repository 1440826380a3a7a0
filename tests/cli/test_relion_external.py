"""`cryoxplain relion-external`, run exactly as RELION runs an External job: cwd = the project
directory, `--o External/jobNNN/ --in_parts … --j N` plus the Params-tab pairs; outputs, the
output node file and the exit markers under the job directory (no RELION binary needed)."""
import shutil
import pytest
import torch
from click.testing import CliRunner

from cryoxplain.cli.main import cli
from cryoxplain.io.mrc import read_mrc
from cryoxplain.io.particles import open_particles
from cryoxplain.io.star import read_star
from cryoxplain.models import build_model, save_model

STAR = "real/fei-extended_picked105_bin6_box64.star"
STACK = "real/fei-extended_picked105_bin6_box64.mrcs"
MIC_STAR = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1 1 5.122653

# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnOpticsGroup #2
_rlnDefocusU #3
MotionCorr/job002/Movies/fei_bin6.mrc 1 9066.0
"""


@pytest.fixture
def project(tmp_path, shared_data, monkeypatch):
    proj = tmp_path / "relion_project"
    (proj / "Select" / "job007").mkdir(parents=True)
    (proj / "MotionCorr" / "job002" / "Movies").mkdir(parents=True)
    (proj / "CtfFind" / "job003").mkdir(parents=True)
    shutil.copy(shared_data / STAR, proj / "Select" / "job007" / "particles.star")
    shutil.copy(shared_data / STACK, proj / "fei-extended_picked105_bin6_box64.mrcs")
    shutil.copy(shared_data / "real" / "mrcfile_fei-extended_bin6.mrc", proj / "MotionCorr/job002/Movies/fei_bin6.mrc")
    (proj / "CtfFind" / "job003" / "micrographs_ctf.star").write_text(MIC_STAR)
    monkeypatch.chdir(proj)  # RELION runs the executable in the project directory
    return proj


def relion(*args):
    return CliRunner().invoke(cli, ["relion-external", *args])


def test_particles_job(project):
    (project / "External" / "job012").mkdir(parents=True)  # RELION makes the job directory
    (project / "External" / "job012" / "RELION_JOB_EXIT_FAILURE").touch()  # a stale marker
    cfg = {"depth": 2, "width": 4, "kernel_size": 3}
    torch.manual_seed(0)
    save_model(project / "tiny.safetensors", build_model("cartesian", **cfg), "cartesian", cfg)
    r = relion("--o", "External/job012/", "--in_parts", "Select/job007/particles.star", "--j", "2",
               "--device", "cpu", "--batch_size", "32", "--model", "tiny.safetensors")
    assert r.exit_code == 0, r.output
    job = project / "External" / "job012"
    assert sorted(p.name for p in job.iterdir()) == [
        "RELION_JOB_EXIT_SUCCESS", "RELION_OUTPUT_NODES.star", "fei-extended_picked105_bin6_box64_denoised.mrcs",
        "particles_denoised.star"]
    nodes = read_star(job / "RELION_OUTPUT_NODES.star")["output_nodes"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job012/particles_denoised.star"]
    assert list(nodes["rlnPipeLineNodeType"]) == [3]
    assert list(nodes["rlnPipeLineNodeTypeLabel"]) == ["ParticleGroupMetadata.star.relion"]
    # the node resolves from the project directory, as RELION's next job will read it
    ps = open_particles("External/job012/particles_denoised.star")
    assert len(ps) == 105 and ps.stacks == (job / "fei-extended_picked105_bin6_box64_denoised.mrcs",)
    assert ps.pixel_size == pytest.approx(5.122653)


def test_micrographs_job(project):
    r = relion("--o", "External/job013/", "--in_mics", "CtfFind/job003/micrographs_ctf.star",
               "--device", "cpu", "--bin", "2", "--j", "2", "--pipeline_control", "External/job013/")
    assert r.exit_code == 0, r.output
    job = project / "External" / "job013"
    assert (job / "RELION_JOB_EXIT_SUCCESS").exists() and not (job / "RELION_JOB_EXIT_FAILURE").exists()
    out = job / "MotionCorr/job002/Movies/fei_bin6_denoised.mrc"
    img, px = read_mrc(out)
    assert img.shape == (319, 309) and px == pytest.approx(2 * 5.122653, rel=1e-5)
    blocks = read_star(job / "micrographs_denoised.star")
    assert list(blocks["micrographs"]["rlnMicrographName"]) == ["External/job013/MotionCorr/job002/Movies/fei_bin6_denoised.mrc"]
    assert float(blocks["optics"]["rlnMicrographPixelSize"][0]) == pytest.approx(2 * 5.122653, rel=1e-5)
    assert float(blocks["micrographs"]["rlnDefocusU"][0]) == 9066.0
    nodes = read_star(job / "RELION_OUTPUT_NODES.star")["output_nodes"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job013/micrographs_denoised.star"]
    assert list(nodes["rlnPipeLineNodeType"]) == [1]


def test_failure_marker_and_nothing_else(project):
    (project / "fei-extended_picked105_bin6_box64.mrcs").rename(project / "moved.mrcs")
    r = relion("--o", "External/job014/", "--in_parts", "Select/job007/particles.star", "--j", "2", "--device", "cpu")
    assert r.exit_code == 2 and "not found" in r.output and len(r.output.strip().splitlines()) == 1
    job = project / "External" / "job014"
    assert sorted(p.name for p in job.iterdir()) == ["RELION_JOB_EXIT_FAILURE"]
    # both inputs given, or a micrograph missing: failure too
    r = relion("--o", "External/job015/", "--in_parts", "a.star", "--in_mics", "b.star")
    assert r.exit_code == 2 and sorted(p.name for p in (project / "External/job015").iterdir()) == ["RELION_JOB_EXIT_FAILURE"]
    (project / "MotionCorr/job002/Movies/fei_bin6.mrc").unlink()
    r = relion("--o", "External/job016/", "--in_mics", "CtfFind/job003/micrographs_ctf.star", "--device", "cpu")
    assert r.exit_code == 2 and "fei_bin6.mrc not found" in r.output
    assert sorted(p.name for p in (project / "External/job016").iterdir()) == ["RELION_JOB_EXIT_FAILURE"]
