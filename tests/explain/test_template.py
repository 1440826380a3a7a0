"""The explainer template (Explainer.attribute): deprecated parameter names, target strings,
result validation, and plugins written before the template (overriding attribute) still work."""
import numpy as np
import pytest
import torch

from cryoxplain.errors import ParameterError, PluginError
from cryoxplain.explain import Explainer, Param, check_inputs, create_explainer, explained_function, gradient
from cryoxplain.testing import check_explainer
from cryoxplain.testing.toys import toy_classifier, toy_images


@pytest.mark.parametrize("method,old,new,value", [
    ("smoothgrad", "samples", "n_samples", 3), ("spectral_lens", "samples", "n_samples", 3),
    ("integrated_gradients", "blur_sigma", "baseline_sigma", 2.0), ("lowpass_gradient", "ig_steps", "steps", 7),
    ("lowpass_gradient", "ig_rule", "rule", "riemann_left"), ("lowpass_gradient", "sg_samples", "n_samples", 5),
    ("lowpass_gradient", "sg_noise", "noise_level", 0.1), ("ablation_path", "eval_batch", "internal_batch_size", 8),
])
def test_renamed_parameters_still_accepted(method, old, new, value):
    with pytest.warns(DeprecationWarning, match=old):
        ex = create_explainer(method, **{old: value})
    assert ex.config[new] == value and old not in ex.config
    with pytest.raises(ParameterError, match="deprecated"), pytest.warns(DeprecationWarning):
        create_explainer(method, **{old: value, new: value})


def test_target_string_and_stack_inputs():
    model, x = toy_classifier(), toy_images(2)
    a = create_explainer("gradient").attribute(model, x, "class:1")
    b = create_explainer("gradient").attribute(model, x[:, 0].numpy(), "class:1")  # a numpy stack
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-6)
    assert a.target == b.target
    with pytest.raises(ParameterError):
        create_explainer("gradient").attribute(model, x, "class:7")  # the toy has 3 classes


def test_hook_result_is_validated():
    class Wrong(Explainer):
        """Returns maps of the wrong size."""

        name, reference = "wrong", "none"

        def _attribute(self, f, inputs, ctx):
            return inputs[..., :-1]

    with pytest.raises(PluginError, match="returned maps"):
        Wrong().attribute(toy_classifier(), toy_images(1), "predicted")


class Legacy(Explainer):
    """Gradient, written as plugins were before the template (overrides attribute)."""

    name, reference = "legacy_gradient", "Simonyan et al. 2014"
    params = (Param("scale", float, 1.0, "factor"),)

    def attribute(self, model, inputs, target):
        check_inputs(model, inputs)
        target = target.bind(model, inputs)
        value, grad = gradient(explained_function(model, target), inputs)
        return self.make_attribution(self.scale * grad, target, model, target_value=value)


def test_legacy_plugin_passes_check_explainer():
    assert "user errors" in check_explainer(Legacy)["checks"]
