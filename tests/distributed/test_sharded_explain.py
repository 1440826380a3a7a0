"""Sharded explanation (2 processes, gloo): the merged file holds exactly the single-process maps and
extras; finished units are kept with skip_existing; world size 1 unchanged."""
import h5py
import numpy as np
import pytest
import torch

from cryoxplain.explain.stack import explain_stack, read_attributions
from cryoxplain.io.mrc import write_mrc
from cryoxplain.testing.distributed import spawn_world
from dist_workers import explain_run, tiny_net

IG = dict(method="integrated_gradients", params={"steps": "4"}, batch_size=3)
SMOOTH = dict(method="smoothgrad", params={"n_samples": "3"}, batch_size=3, seed=5)


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "parts.mrcs"
    write_mrc(p, rng.normal(size=(14, 16, 16)).astype(np.float32), 2.0, kind="stack")
    return p


def single(model, stack, out, **kw):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return explain_stack(model, stack, out, device="cpu", **kw)
    finally:
        torch.set_num_threads(n)


def same_file(a, b):
    ma, ea, pa = read_attributions(a)
    mb, eb, pb = read_attributions(b)
    assert np.array_equal(ma, mb)
    assert ea.keys() == eb.keys()
    for k in ea:
        np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)
    pa.pop("created"), pb.pop("created")
    assert pa == pb


def test_two_ranks_merge_to_the_single_process_file(tmp_path, stack):
    net = tiny_net()
    # unit_size 4 → 2 batches of 3 per unit: units of 6, 6, 2 images over 2 ranks
    spawn_world(explain_run, 2, net, stack, tmp_path / "ig2.h5", dict(IG, unit_size=4))
    single(net, stack, tmp_path / "ig1.h5", **IG)
    same_file(tmp_path / "ig2.h5", tmp_path / "ig1.h5")  # incl. the per-image completeness gaps
    with h5py.File(tmp_path / "ig2.h5") as f:
        assert f["attribution/extras/completeness_gap"].shape == (14,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ig1.h5", "ig2.h5", "parts.mrcs"]  # parts removed


def test_skip_existing_redoes_only_missing_units(tmp_path, stack):
    """A run that fails in its 3rd unit keeps units 1–2; the re-run explains only the 3rd."""
    calls = []

    class Failing(torch.nn.Module):
        def __init__(self, fail_at):
            super().__init__()
            self.net, self.fail_at = tiny_net(), fail_at

        def forward(self, x):
            calls.append(x.shape[0])
            if len(calls) == self.fail_at:
                raise RuntimeError("node lost")
            return self.net(x)

    out = tmp_path / "sg.h5"
    kw = dict(SMOOTH, unit_size=6, skip_existing=True)
    # forward calls per unit: one shape check, then one per batch of 3 images × 3 noisy copies
    with pytest.raises(RuntimeError, match="node lost"):
        single(Failing(fail_at=3 + 3 + 2), stack, out, **kw)  # in unit 2's first batch
    parts = next(tmp_path.glob(".sg.h5.parts-*"))
    assert sorted(p.name for p in parts.iterdir()) == ["000000.h5", "000001.h5"]  # no partial part
    assert not out.exists()
    calls.clear()
    res = single(Failing(fail_at=10 ** 6), stack, out, **kw)
    assert res.n_images == 14 and calls == [1, 2 * 3]  # only unit 2 (images 12, 13; 3 noisy copies each)
    single(Failing(fail_at=10 ** 6), stack, tmp_path / "ref.h5", **SMOOTH)  # same model description
    same_file(out, tmp_path / "ref.h5")
    assert not parts.exists()
