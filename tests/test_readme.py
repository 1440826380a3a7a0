"""The README's two set-up commands stay true: the main job runs on the shipped sample data."""
import re
import shlex
import subprocess
import sys

from conftest import REPO


def _blocks():
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)]


def test_ci_runs_the_readme_test_command():
    tests = [b for b in _blocks() if "pytest" in b]
    assert tests, "README has no test command"
    ci = (REPO / ".ci" / "run").read_text()
    assert "README.md" in ci and "pytest" in tests[0]


def test_readme_main_job_runs_on_sample_data(tmp_path):
    setup = _blocks()[0]
    parts = [p.strip() for p in setup.split("&&")]
    assert parts[0].startswith("pip install"), parts[0]
    # run every cryoxplain step of the set-up command (the install step is what CI itself does)
    for step in parts[1:]:
        argv = shlex.split(step)
        assert argv[0] == "cryoxplain"
        argv = [a if not a.startswith("sample_data/") else str(REPO / a) for a in argv]
        r = subprocess.run([sys.executable, "-m", "cryoxplain", *argv[1:]], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "denoised.mrcs").exists()
    assert "SNR_out" in r.stdout
