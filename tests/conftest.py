import os
from pathlib import Path

import pytest

# keep the suite light on the 2-core CI machine
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


def assert_star_same_except_image_names(original, rewritten, n_changed: int) -> dict:
    """A rewritten STAR equals ``original`` except ``rlnImageName``: same blocks, columns and every
    other value (read with the ``starfile`` package), and exactly ``n_changed`` lines differ as text.
    Returns the rewritten file's blocks (``starfile.read(..., always_dict=True)``)."""
    import starfile

    old_lines, new_lines = Path(original).read_text().splitlines(), Path(rewritten).read_text().splitlines()
    assert len(old_lines) == len(new_lines)
    assert sum(a != b for a, b in zip(old_lines, new_lines)) == n_changed
    ref_in, ref_out = starfile.read(original, always_dict=True), starfile.read(rewritten, always_dict=True)
    assert list(ref_in) == list(ref_out)
    for block in ref_in:
        a, b = ref_in[block], ref_out[block]
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            if col != "rlnImageName":
                assert a[col].equals(b[col]), (block, col)
    return ref_out
