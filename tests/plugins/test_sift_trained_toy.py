"""sift_ablation §11.5.3: the trained TinyCNN toy (evidence blob in a known disc).

As shipped the toy's images hold one structure on pure noise, which leaves too few keypoints
(the degenerate case of §6.8); with a fixed distractor blob added to every image of both
classes the SIFT path localises the evidence like the pixel plugin does.  The model is trained with
the toy's recipe (ablation_toy.fit_toy); the numbers are one trained model's (docs/sift_ablation.md,
"A trained toy", has other seeds and benchmarks/sift_trained_toy.py measures them).
"""
import numpy as np
import pytest
import torch

from cryoxplain.explain.targets import ClassLogit

DISTRACTOR = (22.0, 22.0, 3.0, 2.0)      # row, column, s, amplitude


def _with_distractor(imgs):
    yy, xx = np.mgrid[:imgs.shape[-2], :imgs.shape[-1]]
    r, c, s, a = DISTRACTOR
    return imgs + (a * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s * s))).astype(np.float32)


def _in_disc(r, c, dilate=2.0):
    from ablation_toy import DISC_CENTRE, DISC_RADIUS

    return np.hypot(r - DISC_CENTRE[0], c - DISC_CENTRE[1]) <= DISC_RADIUS + dilate


@pytest.mark.slow
def test_shipped_toy_is_degenerate():
    from ablation_toy import train_toy
    from cryoxplain_plugins.sift_ablation import SiftAblation

    model, pos, _ = train_toy()
    a = SiftAblation(max_iters=4).attribute(model, torch.as_tensor(pos)[:, None], ClassLogit(1))
    assert a.extras["too_few_keypoints"].sum() >= 4


def test_toy_recipe_draws_minibatches_from_the_initialising_stream():
    """§11.5.3 trains "as in the file": torch.manual_seed(0), build TinyCNN, then 150 Adam steps whose
    minibatches continue the same torch stream.  fit_toy_classifier(seed=None) is that loop, bit for
    bit; an integer seed re-seeds after the initialisation (other minibatches, another model: on the
    modified toy that one gets 5/8 with Θ_clt instead of the spec's 8/8)."""
    from ablation_toy import TinyCNN, fit_toy

    from cryoxplain.testing import fit_toy_classifier

    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 32, 32)).astype(np.float32)
    y = (np.arange(64) % 2).astype(np.int64)
    torch.manual_seed(0)
    ref = TinyCNN()
    opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
    for _ in range(2):                       # the loop of the original tests/ablation_toy.py
        idx = torch.randint(0, len(xt), (64,))
        loss = torch.nn.functional.cross_entropy(ref(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    got = fit_toy(x, y, seed=0, steps=2)
    for a, b in zip(ref.parameters(), got.parameters()):
        assert torch.equal(a.detach(), b)
    torch.manual_seed(0)
    reseeded = fit_toy_classifier(TinyCNN(), x, y, steps=2, batch_size=64, seed=0)
    assert not all(torch.equal(a.detach(), b) for a, b in zip(ref.parameters(), reseeded.parameters()))


@pytest.mark.slow
def test_modified_toy_localises_the_evidence():
    from ablation_toy import fit_toy, make_images, training_set
    from cryoxplain_plugins.ablation_path import AblationPath
    from cryoxplain_plugins.sift_ablation import SiftAblation

    x, y, rng = training_set(0, _with_distractor)
    model = fit_toy(x, y, seed=0)                       # the spec's recipe (see the test above)
    pos = torch.as_tensor(_with_distractor(make_images(8, 1, rng)))[:, None]
    assert (model(pos).argmax(1) == 1).all()
    # the spec's setting: contrastive, c = 4, η = 4, s = 0.05, keep_below = 0, Θ_clt
    a = SiftAblation(objective="contrastive", keep_below=0.0, reducer="clt").attribute(model, pos, ClassLogit(1))
    assert list(a.extras["n_keypoints"]) == [3, 2, 3, 2, 3, 4, 4, 2]     # spec: K = 3, 2, 3, 2, 3, 4, 4, 2
    hits_map = hits_kp = 0
    for b in range(8):
        r, c = np.unravel_index(np.argmax(a.maps[b]), a.maps[b].shape)
        hits_map += _in_disc(r, c)
        K = a.extras["n_features"][b]
        if not a.extras["too_few_keypoints"][b]:
            k = a.extras["keypoints"][b, int(np.nanargmax(a.extras["feature_attribution"][b, :K]))]
            hits_kp += _in_disc(k[1], k[0])
    # measured: heatmap 8/8, top keypoint 7/8 (the spec prototype's numbers; the miss is image 3,
    # whose top feature sits on a σ ≈ 3.6 extremum next to the evidence)
    assert hits_map >= 7
    assert hits_kp >= 6
    p = AblationPath().attribute(model, pos, ClassLogit(1))
    assert sum(_in_disc(*np.unravel_index(np.argmax(m), m.shape)) for m in p.maps) >= 7
