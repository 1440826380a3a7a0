"""Particle classifier: training on particles labelled by their source, classify CLI, explanations."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from classify_helpers import labelled_particles
from cryoxplain.cli.main import cli
from cryoxplain.errors import ParameterError
from cryoxplain.io.mrc import write_mrc
from cryoxplain.models.classifier import ParticleClassifier
from cryoxplain.models.registry import load_model, read_model_info
from cryoxplain.classify.train import stratified_split, train_classifier
from cryoxplain.imaging.normalize import normalize_images


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cls")
    a, b = labelled_particles(64, 32, snr=1.0, seed=0)
    write_mrc(d / "complexA.mrcs", a)
    write_mrc(d / "complexB.mrcs", b)
    res = train_classifier([d / "complexA.mrcs", d / "complexB.mrcs"], epochs=25, batch_size=8, lr=3e-3,
                           device="cpu", seed=0, out=d / "cls.safetensors", arch_config={"width": 8})
    return d, res


def test_training_learns_the_source(trained):
    d, res = trained
    assert res.class_names == ["complexA", "complexB"]
    assert res.val_accuracy >= 0.75 and res.train_accuracy >= 0.75  # chance is 0.5
    assert res.confusion.sum() == 26 and np.trace(res.confusion) == round(res.val_accuracy * 26)
    info = read_model_info(d / "cls.safetensors")
    assert info.task == "classify" and info.config["n_classes"] == 2
    assert info.training["class_names"] == ["complexA", "complexB"]
    assert info.training["val_accuracy"] == pytest.approx(res.val_accuracy)
    # one loop, one history convention: row 0 is epoch 0, measured before training (was: 25 rows)
    assert len(res.history["val_accuracy"]) == 26 and res.history["epoch"][0] == 0


def test_fresh_data_accuracy_and_classify_cli(trained, tmp_path):
    d, _ = trained
    a, b = labelled_particles(32, 32, snr=1.0, seed=5)  # particles never seen in training
    write_mrc(tmp_path / "newB.mrcs", b)
    r = CliRunner().invoke(cli, ["classify", "--model", str(d / "cls.safetensors"), str(tmp_path / "newB.mrcs"),
                                 "-o", str(tmp_path / "pred.csv"), "--true-label", "complexB", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    acc = float(r.output.split("accuracy against complexB: ")[1].split(" %")[0])
    assert acc >= 70
    rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert rows[0] == "index,predicted,class_name,p_complexA,p_complexB" and len(rows) == 33
    r = CliRunner().invoke(cli, ["classify", "--model", str(d / "cls.safetensors"), str(tmp_path / "newB.mrcs"),
                                 "--true-label", "complexC"])
    assert r.exit_code == 2 and "neither a class name" in r.output
    write_mrc(tmp_path / "big.mrcs", np.zeros((2, 40, 40), np.float32))
    r = CliRunner().invoke(cli, ["classify", "--model", str(d / "cls.safetensors"), str(tmp_path / "big.mrcs")])
    assert r.exit_code == 2 and "trained on 32×32 particles" in r.output
    r = CliRunner().invoke(cli, ["explain", "--model", str(d / "cls.safetensors"), "--method", "gradient",
                                 str(tmp_path / "big.mrcs"), "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "expects 32×32 particles" in r.output


def test_explain_trained_classifier(trained, tmp_path):
    from cryoxplain.explain import explain_stack, read_attributions

    d, _ = trained
    res = explain_stack(d / "cls.safetensors", d / "complexB.mrcs", tmp_path / "a.h5", method="integrated_gradients",
                        params={"steps": "32"}, target="class:1", batch_size=16, device="cpu")
    maps, extras, prov = read_attributions(tmp_path / "a.h5")
    assert maps.shape == (64, 32, 32) and prov["target"] == "class:1"
    fx_fb = np.abs(extras["target_value"] - extras["baseline_value"])
    assert np.median(np.abs(extras["completeness_gap"]) / fx_fb) < 0.05


def test_training_errors(tmp_path):
    a, b = labelled_particles(4, 16, seed=0)
    with pytest.raises(ParameterError, match="at least two classes"):
        train_classifier([a], epochs=1)
    from cryoxplain.models.registry import ArchitectureSpec, register_architecture

    register_architecture(ArchitectureSpec("_test_cls_denoiser", "denoise", lambda: torch.nn.Identity()))
    with pytest.raises(ParameterError, match="not a classifier"):
        train_classifier([a, b], arch="_test_cls_denoiser", epochs=1)
    with pytest.raises(ParameterError, match="unknown architecture"):
        train_classifier([a, b], arch="nosuch", epochs=1)
    with pytest.raises(ParameterError, match="resume needs the output path"):  # classifiers resume now (tests/training)
        train_classifier([a, b], resume=True)
    with pytest.raises(ParameterError, match="augment"):
        train_classifier([a, b], augment="mirror")
    tr, va = stratified_split(np.array([0] * 10 + [1] * 5), 0.2, seed=1)
    assert len(va) == 3 and set(np.r_[tr, va]) == set(range(15))
    # logits for its particle size; other sizes are refused
    m = ParticleClassifier(n_classes=3, width=4, depth=2, image_shape=(20, 24))
    assert m(torch.randn(2, 1, 20, 24)).shape == (2, 3) and m.input_shape == (20, 24)
    with pytest.raises(ValueError):
        m(torch.randn(2, 1, 24, 20))
    with pytest.raises(ParameterError, match="too small"):
        ParticleClassifier(depth=4, image_shape=(12, 12))


def test_simulated_sources_from_the_simulator():
    sim = pytest.importorskip("cryoxplain.sim.simulate", reason="cryoxplain.sim not merged yet")
    from cryoxplain.sim import phantom
    from cryoxplain.classify.train import simulate_labelled

    results, names = simulate_labelled([phantom(32, seed=0), phantom(32, seed=1)], 64, snr=1.0, seed=0)
    assert len(results) == 2 and results[0].noisy.shape == (64, 32, 32) and len(set(names)) == 2
    res = train_classifier(results, class_names=names, epochs=25, batch_size=8, lr=3e-3, device="cpu",
                           arch_config={"width": 8})
    assert res.val_accuracy >= 0.7  # two different simulated structures, SNR 1; chance is 0.5


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "smoothgrad"])
def test_attributions_point_at_the_distinguishing_arms(trained, method):
    """Complex B differs from A by two extra arms: explaining logit B must light up the arms."""
    import classify_helpers as ch
    from cryoxplain.explain import create_explainer
    from cryoxplain.explain.targets import ClassLogit

    d, _ = trained
    model, _ = load_model(d / "cls.safetensors")
    n, seed = 32, 11  # fresh particles with known arm positions
    clean = ch.project(ch.DOMAINS_B, n, 32, seed=seed)
    arms = ch.project(ch.DOMAINS_B[5:], n, 32, seed=seed)
    core = ch.project(ch.DOMAINS_B[:5], n, 32, seed=seed)
    noisy = clean + np.random.default_rng(3).normal(scale=clean.std(), size=clean.shape)
    x = normalize_images(torch.from_numpy(noisy.astype(np.float32))[:, None])
    att = create_explainer(method).attribute(model, x, ClassLogit(1)).maps
    on_arms = att[(arms > 0.3) & (core < 0.1)].mean()
    assert on_arms > 0  # raising the arms' density raises "complex B"
    assert on_arms > 2 * abs(att[core > 0.3].mean()) and on_arms > 2 * abs(att[clean < 0.05].mean())


def test_train_cli_classify(trained, tmp_path):
    d, _ = trained
    out = tmp_path / "c.safetensors"
    r = CliRunner().invoke(cli, ["train", "--task", "classify", "--class-stack", str(d / "complexA.mrcs"),
                                 "--class-stack", str(d / "complexB.mrcs"), "--class-name", "A", "--class-name", "B",
                                 "--epochs", "3", "--device", "cpu", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "epoch   3:" in r.output and "final accuracy: train" in r.output and "validation confusion" in r.output
    assert read_model_info(out).training["class_names"] == ["A", "B"]
    r = CliRunner().invoke(cli, ["train", "--task", "classify", "--class-stack", str(d / "complexA.mrcs"), "-o",
                                 str(tmp_path / "d.safetensors")])
    assert r.exit_code == 2 and "at least two classes" in r.output and not (tmp_path / "d.safetensors").exists()
    r = CliRunner().invoke(cli, ["train", "--task", "classify", "--class-stack", str(d / "complexA.mrcs"),
                                 "--class-stack", str(d / "complexB.mrcs"), "-o", str(out)])
    assert r.exit_code == 2 and "exists" in r.output


def test_train_cli_classify_resume(tmp_path):
    a, b = labelled_particles(10, 16, seed=1)
    write_mrc(tmp_path / "A.mrcs", a)
    write_mrc(tmp_path / "B.mrcs", b)
    out = tmp_path / "c.safetensors"
    base = ["train", "--task", "classify", "--class-stack", str(tmp_path / "A.mrcs"), "--class-stack",
            str(tmp_path / "B.mrcs"), "--config", "width=4", "--config", "depth=2", "-b", "8", "--device", "cpu",
            "--lr-schedule", "constant", "-o", str(out)]
    r = CliRunner().invoke(cli, base + ["--epochs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, base + ["--epochs", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert "epoch   2:" in r.output and "epoch   1:" not in r.output  # continued from the checkpoint
    r = CliRunner().invoke(cli, base + ["--epochs", "3", "--resume", "--seed", "1"])
    assert r.exit_code == 2 and "different settings" in r.output
