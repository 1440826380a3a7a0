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
