"""check_explainer over every explainer registered in the entry-point group (so a new plugin is
covered automatically), and the suite catching a broken explainer."""
import numpy as np
import pytest

from cryoxplain.explain import Explainer, Param, list_plugins
from cryoxplain.testing import check_explainer

# cheaper settings for the built-ins whose defaults are slow on the toys (or, for Blur IG, whose
# default σ range is far too coarse for a 16-px toy to meet the completeness bound)
CHEAP = {
    "ablation_path": dict(max_iters=8),
    "blur_ig": dict(max_sigma=6.0, steps=64),
    "spectral_lens": dict(n_samples=16, levels=4, max_noise_std=0.5),
    # 16-px toy images have only a few scale-space bands: at the default contrast (4 noise std) no
    # keypoint survives and every band below 1.6 px is fixed, so nothing is ablatable (all-zero maps)
    "sift_ablation": dict(max_iters=8, contrast=1.0, keep_below=0.0),
}
RECORDS = list_plugins()


@pytest.mark.parametrize("rec", RECORDS, ids=[r.name for r in RECORDS])
def test_registered_explainer_conforms(rec):
    assert rec.ok, rec.error
    report = check_explainer(rec.cls, CHEAP.get(rec.name))
    assert "user errors" in report["checks"]


def test_suite_catches_a_batch_dependent_explainer():
    class BatchMean(Explainer):
        """Subtracts the batch mean (wrong: images must be explained independently)."""

        name = "batch_mean"
        reference = "none"
        params = (Param("scale", float, 1.0, "factor"),)

        def _attribute(self, f, inputs, ctx):
            return self.scale * (inputs - inputs.mean(0, keepdim=True)) + 1e-3

    with pytest.raises(AssertionError, match="alone differs"):
        check_explainer(BatchMean)


def test_suite_checks_declarations():
    class NoHelp(Explainer):
        """x."""

        name, reference = "no_help", "none"
        params = (Param("k", int, 1),)

        def _attribute(self, f, inputs, ctx):
            return inputs

    with pytest.raises(AssertionError, match="no help"):
        check_explainer(NoHelp)
    np.testing.assert_equal(True, True)
