"""Public helpers for testing code built on cryoxplain: toy models and conformance suites.

* :mod:`cryoxplain.testing.toys` – small toy models (a tiny denoiser, a tiny classifier, an
  exactly C4-equivariant blur), their architecture specs, and a toy classifier fit;
* :mod:`cryoxplain.testing.architectures` – :func:`check_architecture`, the conformance suite for
  an architecture (see docs/plugins.md, "Adding an architecture");
* :mod:`cryoxplain.testing.explainers` – :func:`check_explainer`, the conformance suite for an
  explainer plugin (docs/plugins.md).

Everything is re-exported here; import from ``cryoxplain.testing``.
"""
from . import architectures, explainers, toys
from .architectures import check_architecture
from .explainers import check_explainer
from .toys import (TOY_BLUR, TOY_CLASSIFIER, TOY_DENOISER, TOY_SPECS, IsotropicBlur, TinyClassifier, TinyDenoiser,
                   fit_toy_classifier)

__all__ = ["check_architecture", "check_explainer", "TinyDenoiser", "TinyClassifier", "IsotropicBlur",
           "TOY_DENOISER", "TOY_CLASSIFIER", "TOY_BLUR", "TOY_SPECS", "fit_toy_classifier"]
