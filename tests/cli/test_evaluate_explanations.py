"""``cryoxplain evaluate explanations`` (spec saliency_evaluation.md §10.4 item 12)."""
import json

import numpy as np
from click.testing import CliRunner

from cryoxplain.cli.main import cli as main
from cryoxplain.io.hdf5 import read_h5
from cryoxplain.sim.groundtruth import planted_disc, write_design


def test_cli_p1_json_table_and_h5(tmp_path):
    out = tmp_path / "ev.h5"
    r = CliRunner().invoke(main, ["evaluate", "explanations", "--design", "p1", "--method", "gradient",
                                  "--n-subsets", "20", "--json", "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    row = d["rows"]["gradient"]
    for k in ("pg0", "pg4", "energy", "rank", "auc", "deletion_zero", "insertion_noise", "mufidelity", "gini", "e_grid"):
        assert k in row
    assert row["pg4"] == 1.0 and abs(row["e_grid"] - np.sqrt(2)) < 1e-6
    for ref in ("random", "smooth_random", "centre", "sobel", "intensity", "oracle"):
        assert f"ref:{ref}" in d["rows"]
    ds, attrs = read_h5(out)
    assert ds["maps/gradient"].shape == (1, 64, 64) and "metrics/ref_sobel/pg4" in ds
    t = CliRunner().invoke(main, ["evaluate", "explanations", "--design", "p1", "--method", "gradient",
                                  "--n-subsets", "20", "--no-references", "--device", "cpu"])
    assert t.exit_code == 0 and "gradient" in t.output and "pg4" in t.output


def test_cli_gt_size_mismatch_exit_2(tmp_path):
    d = planted_disc()
    d.gt = np.zeros((1, 32, 32), bool)
    d.gt[0, 3, 3] = True
    p = tmp_path / "bad.h5"
    write_design(d, p)
    r = CliRunner().invoke(main, ["evaluate", "explanations", "--design", str(p), "--method", "gradient",
                                  "--device", "cpu", "-o", str(tmp_path / "out.h5")])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "ground truth" in r.output
    assert not (tmp_path / "out.h5").exists()


def test_design_file_round_trip(tmp_path):
    from cryoxplain.sim.groundtruth import read_design

    d = planted_disc()
    write_design(d, tmp_path / "p1.h5")
    e = read_design(tmp_path / "p1.h5")
    assert e.name == "P1" and np.array_equal(e.gt, d.gt) and np.allclose(e.params["w"], d.params["w"])


def test_library_run_on_small_d1_with_a_classifier():
    """evaluate_explanations on a 2-particle D1 with an (untrained) 2-class classifier: class:1 target,
    per-image normalisation, the Diff column, probability scores in [0, 1] and the sanity cascade."""
    import torch

    from cryoxplain.evaluate import evaluate_explanations
    from cryoxplain.sim.groundtruth import conformation_pair
    from cryoxplain.testing.toys import TinyClassifier

    torch.manual_seed(0)
    model = TinyClassifier(2, 2, (64, 64))
    d = conformation_pair(n_test=2)
    res = evaluate_explanations(model, d, ["gradient"], n_subsets=10, sanity=True, device="cpu",
                                tolerances=(4,), baselines=("zero",))
    assert res["info"]["target"] == "class:1" and res["info"]["faithfulness_score"] == "probability"
    row = res["rows"]["gradient"]
    assert 0 <= row["deletion_zero"] <= 1 and 0 <= row["insertion_zero"] <= 1
    assert "pg4_diff" in res["per_image"]["gradient"] and res["sanity"]["gradient"]["layers"] == ["head", "conv"]
    assert res["rows"]["ref:oracle"]["pg4"] == 1.0
    fin = evaluate_explanations(model, d, ["gradient"], n_subsets=10, sanity="final", device="cpu",
                                tolerances=(4,), baselines=("zero",), references=False, equivariance=False)
    assert fin["sanity"]["gradient"]["layers"] == ["head+conv"]
    assert fin["rows"]["gradient"]["sanity_rho"] == row["sanity_rho"]


def test_cli_sanity_final(tmp_path):
    import torch

    from cryoxplain.models.classifier import build_classifier
    from cryoxplain.models.registry import save_model
    from cryoxplain.sim.groundtruth import conformation_pair

    torch.manual_seed(0)
    net = build_classifier(width=2, depth=1)
    m = save_model(tmp_path / "c.safetensors", net, "classifier", net.config(), training={"task": "classify"})
    write_design(conformation_pair(n_test=2, n_train=0), tmp_path / "d1.h5")
    r = CliRunner().invoke(main, ["evaluate", "explanations", "--design", str(tmp_path / "d1.h5"), "--model", str(m),
                                  "--method", "gradient", "--n-subsets", "10", "--json", "--sanity-final",
                                  "--no-references", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert len(d["sanity"]["gradient"]["layers"]) == 1 and "sanity_rho" in d["rows"]["gradient"]
