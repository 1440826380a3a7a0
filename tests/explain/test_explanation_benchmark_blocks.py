"""benchmarks/explanation_evaluation.py --trained-only: the D1/D2 blocks replace only themselves,
so the two designs can be (re)run separately without touching the P1/D3a tables."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("explanation_evaluation_bench",
                                                  ROOT / "benchmarks" / "explanation_evaluation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_trained_blocks_replace_only_themselves(tmp_path, monkeypatch):
    b = _bench()
    calls = []

    def fake_table(design, names, *args, **kw):
        calls.append((design, tuple(names), kw.get("settings")))
        return {"design": design}

    monkeypatch.setattr(b, "trained_table", fake_table)
    monkeypatch.setattr(b, "trained_section", lambda dn, r, s: [f"TABLE {dn} {len(calls)}"])
    out = tmp_path / "bench.md"
    out.write_text("# Benchmark\n\n## P1 table\nkeep me\n")
    b.main(["--trained-only", "--d2", "--cheap", "--methods", "gradient,sift_ablation", "--out", str(out)])
    b.main(["--trained-only", "--d1", "--cheap", "--methods", "gradient", "--out", str(out)])
    b.main(["--trained-only", "--d2", "--cheap", "--methods", "gradient", "--out", str(out)])  # rerun D2
    text = out.read_text()
    assert "keep me" in text
    assert text.count(b.MARK.format("d1", "begin")) == 1 and text.count(b.MARK.format("d2", "begin")) == 1
    assert "TABLE d2 1" not in text and "TABLE d2 3" in text and "TABLE d1 2" in text
    assert text.index(b.MARK.format("d2", "begin")) < text.index(b.MARK.format("d1", "begin"))
    # --cheap gives the slow explainers their cheap settings
    assert calls[0][2]["sift_ablation"] == b.CHEAP["sift_ablation"]


def test_c4_block_replaces_only_itself_and_formats_tiny_errors(tmp_path, monkeypatch):
    b = _bench()
    off = [40.0, 130.0]
    own = {a: {"agreement": 1.0, "kl": 0.0 if a % 90 == 0 else 1e-3} for a in (90.0, 180.0, 270.0, *off)}
    info = {"val_accuracy": 0.9, "n_val": 10, "confusion": [[5, 0], [1, 4]], "n_per_class": [20, 20], "epochs": 1,
            "augment": "none"}
    row = {"e90": 3e-8, "e180": 4e-8, "e270": 3e-8, "e_off_mean": 1.2, "e_off_max": 1.3, "floor": 0.2,
           "seed_floor": float("nan"), "seconds": 1.0}
    fake = {"design": "d2", "n_test": 2, "offgrid": off,
            "models": {t: {"info": info, "rows": {"gradient": row}, "own": own, "test_accuracy_B": 1.0,
                           "logit_e": {a: (2e-8 if a % 90 == 0 else 0.3) for a in own}}
                       for t in ("classifier", "c4_classifier")}}
    monkeypatch.setattr(b, "c4_table", lambda *a, **k: fake)
    out = tmp_path / "bench.md"
    out.write_text("# Benchmark\nkeep me\n")
    b.main(["--c4", "--methods", "gradient", "--out", str(out)])
    b.main(["--c4", "--methods", "gradient", "--out", str(out)])
    text = out.read_text()
    assert "keep me" in text and text.count(b.MARK.format("c4", "begin")) == 1
    assert "| gradient | 3.0e-08 | 4.0e-08 | 3.0e-08 | 1.200 |" in text
    assert "logit E on the grid 2.00e-08" in text
