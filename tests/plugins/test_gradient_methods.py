"""Built-in gradient methods: axioms, sign convention and agreement with Captum."""
import numpy as np
import pytest
import torch

from cryoxplain.errors import ParameterError, ShapeError
from cryoxplain.explain import create_explainer
from cryoxplain.explain.base import explained_function, image_seed
from cryoxplain.explain.targets import ClassLogit, DiscEnergy, PixelOutput, PredictedClass


def _classifier(seed=0, k=3, n=12):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.Softplus(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 6, 3, padding=1), torch.nn.Tanh(),
        torch.nn.Flatten(), torch.nn.Linear(6 * (n // 2) ** 2, k)).eval()


def _denoiser(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Softplus(),
                               torch.nn.Conv2d(8, 1, 3, padding=1)).eval()


@pytest.fixture
def x():
    torch.manual_seed(42)
    return torch.randn(2, 1, 12, 12)


def test_ig_completeness_decreases_with_steps(x):
    model = _classifier()
    gaps = []
    for steps in (2, 8, 32, 128):
        att = create_explainer("integrated_gradients", steps=steps, rule="riemann_middle").attribute(model, x, ClassLogit(1))
        gap = np.abs(att.extras["completeness_gap"]).max()
        # the reported gap is the real one: Σ attributions − (f(x) − f(0))
        f = explained_function(model, ClassLogit(1))
        with torch.no_grad():
            real = att.maps.sum(axis=(1, 2)) - (f(x) - f(torch.zeros_like(x))).numpy()
        assert np.allclose(real, att.extras["completeness_gap"], atol=1e-5)
        gaps.append(gap)
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3], gaps
    scale = np.abs(att.extras["target_value"] - att.extras["baseline_value"]).max()
    assert gaps[-1] < 1e-3 * max(scale, 1e-3)


def test_ig_gauss_legendre_converges_fast_on_denoiser(x):
    att = create_explainer("integrated_gradients", steps=16, baseline="blur", baseline_sigma=2).attribute(
        _denoiser(), x, DiscEnergy())
    fx_fb = np.abs(att.extras["target_value"] - att.extras["baseline_value"])
    assert (np.abs(att.extras["completeness_gap"]) < 1e-4 * fx_fb + 1e-5).all()


@pytest.mark.parametrize("rule,captum_rule", [("gauss_legendre", "gausslegendre"), ("riemann_middle", "riemann_middle"),
                                              ("riemann_left", "riemann_left"), ("riemann_right", "riemann_right")])
def test_ig_matches_captum(x, rule, captum_rule):
    from captum.attr import IntegratedGradients as CaptumIG

    model = _classifier(1)
    torch.manual_seed(0)
    baseline = 0.3 * torch.randn(1, 1, 12, 12)
    ours_baseline = baseline[0, 0].numpy()
    tgt = ClassLogit(2)
    ig = create_explainer("integrated_gradients", steps=20, rule=rule, internal_batch_size=7)
    ig._images = ours_baseline[None]  # a file baseline, without writing the file
    ig.config["baseline"] = "file"
    ours = ig.attribute(model, x, tgt).maps
    ref = CaptumIG(lambda inp: model(inp)[:, 2]).attribute(
        x, baselines=baseline.expand_as(x), n_steps=20, method=captum_rule, internal_batch_size=7)
    assert np.abs(ours - ref[:, 0].detach().numpy()).max() <= 1e-5


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_matches_captum_noise_tunnel(x, squared):
    from captum.attr import NoiseTunnel, Saliency

    model = _classifier(2)
    xi = x[:1]
    sg = create_explainer("smoothgrad", n_samples=16, noise_level=0.2, squared=squared, seed=7, internal_batch_size=5)
    ours = sg.attribute(model, xi, ClassLogit(0)).maps
    sigma = float(0.2 * (xi.max() - xi.min()))
    torch.manual_seed(image_seed(7, 0))  # Captum draws its noise from the global generator: reuse our draws
    ref = NoiseTunnel(Saliency(lambda inp: model(inp)[:, 0])).attribute(
        xi, nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=16, stdevs=sigma, abs=False)
    assert np.abs(ours - ref[:, 0].detach().numpy()).max() <= 1e-5
    if squared:
        assert (ours >= 0).all()


def test_smoothgrad_independent_of_batching(x):
    model = _classifier(3)
    x3 = torch.cat([x, x[:1] * 0.5])
    together = create_explainer("smoothgrad", n_samples=6, internal_batch_size=4).attribute(model, x3, PredictedClass()).maps
    for i in range(3):
        sg = create_explainer("smoothgrad", n_samples=6, internal_batch_size=64)
        sg.index_offset = i
        alone = sg.attribute(model, x3[i:i + 1], PredictedClass()).maps
        assert np.allclose(alone[0], together[i], atol=1e-6)
    other_seed = create_explainer("smoothgrad", n_samples=6, seed=1).attribute(model, x3, PredictedClass()).maps
    assert not np.allclose(other_seed, together)


def test_sign_convention(x):
    # linear model: the gradient is the weight, IG from zero is w ⊙ x; positive ⇒ raising the pixel raises f
    torch.manual_seed(5)
    w = torch.randn(1, 1, 12, 12)

    class Lin(torch.nn.Module):
        def forward(self, inp):
            return (inp * w).sum(dim=(1, 2, 3))[:, None]

    g = create_explainer("gradient").attribute(Lin(), x, ClassLogit(0)).maps
    assert np.allclose(g, w[0, 0].numpy().repeat(1, 0)[None].repeat(2, 0), atol=1e-6)
    ig = create_explainer("integrated_gradients", steps=4).attribute(Lin(), x, ClassLogit(0)).maps
    assert np.allclose(ig, (w * x)[:, 0].numpy(), atol=1e-5)
    ga = create_explainer("gradient", absolute=True).attribute(Lin(), x, ClassLogit(0)).maps
    assert np.allclose(ga, np.abs(g))
    # non-linear CNN: a small step along a pixel with positive gradient raises f, negative lowers it
    model = _classifier(4)
    f = explained_function(model, ClassLogit(1))
    g = create_explainer("gradient").attribute(model, x[:1], ClassLogit(1)).maps[0]
    for idx in (np.unravel_index(np.argmax(g), g.shape), np.unravel_index(np.argmin(g), g.shape)):
        e = torch.zeros_like(x[:1])
        e[0, 0][idx] = 1e-2
        with torch.no_grad():
            delta = (f(x[:1] + e) - f(x[:1])).item()
        assert np.sign(delta) == np.sign(g[idx]) and abs(delta - 1e-2 * g[idx]) < 1e-2 * abs(g[idx]) * 0.2


def test_ig_baselines(x, tmp_path):
    from cryoxplain.io.mrc import write_mrc

    model = _denoiser()
    tgt = PixelOutput(6, 5)
    for b in ("zero", "mean", "blur", "noise"):
        att = create_explainer("integrated_gradients", steps=8, baseline=b).attribute(model, x, tgt)
        assert att.maps.shape == (2, 12, 12) and np.isfinite(att.maps).all()
    ref = np.full((12, 12), 0.25, np.float32)
    write_mrc(tmp_path / "b.mrc", ref)
    ig = create_explainer("integrated_gradients", steps=8, baseline="file", baseline_path=str(tmp_path / "b.mrc"))
    assert torch.allclose(ig.baselines(x), torch.full_like(x, 0.25))
    with pytest.warns(DeprecationWarning, match="baseline=PATH"):  # the old form, for one release
        old = create_explainer("integrated_gradients", steps=8, baseline=str(tmp_path / "b.mrc"))
    assert old.config["baseline"] == "file" and torch.allclose(old.baselines(x), torch.full_like(x, 0.25))
    att = ig.attribute(model, x, tgt)
    assert abs(att.extras["completeness_gap"]).max() < 1e-3
    with pytest.raises(ParameterError, match="neither"):
        create_explainer("integrated_gradients", baseline="nope.mrc")
    write_mrc(tmp_path / "small.mrc", np.zeros((8, 8), np.float32))
    with pytest.raises(ShapeError, match="8×8"):
        create_explainer("integrated_gradients", baseline="file",
                         baseline_path=str(tmp_path / "small.mrc")).attribute(model, x, tgt)
    with pytest.raises(ParameterError, match="unknown quadrature"):
        create_explainer("integrated_gradients", rule="simpson")
    assert create_explainer("integrated_gradients", rule="Gauss-Legendre").config["rule"] == "gauss_legendre"


def test_predicted_class_is_fixed_by_the_input(x):
    model = _classifier(6)
    with torch.no_grad():
        cls = model(x).argmax(1)
    for method in ("gradient", "integrated_gradients", "smoothgrad"):
        pred = create_explainer(method).attribute(model, x, PredictedClass()).maps
        explicit = np.stack([create_explainer(method).attribute(model, x[i:i + 1], ClassLogit(int(c))).maps[0]
                             if method != "smoothgrad" else pred[i] for i, c in enumerate(cls)])
        assert np.allclose(pred, explicit, atol=1e-6)


def test_inputs_checked():
    model = _denoiser()
    with pytest.raises(ShapeError):  # two channels
        create_explainer("gradient").attribute(model, torch.zeros(2, 2, 12, 12), DiscEnergy())
    # an image (H, W) or a stack (B, H, W) is a batch (imaging.as_image_batch), explained as (B, 1, H, W)
    assert create_explainer("gradient").attribute(model, torch.zeros(2, 12, 12), DiscEnergy()).maps.shape == (2, 12, 12)
    assert create_explainer("gradient").attribute(model, np.zeros((12, 12)), "pixel:3,4").maps.shape == (1, 12, 12)
    bad = torch.zeros(1, 1, 12, 12)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ParameterError, match="NaN"):
        create_explainer("gradient").attribute(model, bad, DiscEnergy())
    model.input_shape = (16, 16)
    with pytest.raises(ShapeError, match="16×16"):
        create_explainer("gradient").attribute(model, torch.zeros(1, 1, 12, 12), DiscEnergy())
