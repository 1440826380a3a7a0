"""Vanilla gradient saliency.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR workshop 2014 (arXiv:1312.6034).

For the explained function ``f(x) = target(model(x))`` the map is the gradient

    A(x) = ∂f/∂x            (``absolute=false``, the default: signed)
    A(x) = |∂f/∂x|          (``absolute=true``: the paper's magnitude map)

Signed maps keep the direction: a positive value means that raising that pixel raises ``f``
(first-order Taylor: ``f(x + εe_i) ≈ f(x) + ε A_i``).  The paper takes the magnitude (maximum
over colour channels; particle images have one channel).  One forward and one backward pass per
batch.
"""
from __future__ import annotations

from cryoxplain.explain.base import Explainer, Param, gradient


class Gradient(Explainer):
    """∂f/∂x, signed or absolute (Simonyan et al. 2014)."""

    name = "gradient"
    reference = "Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR-W 2014, arXiv:1312.6034"
    params = (
        Param("absolute", bool, False, "return |∂f/∂x| instead of the signed gradient"),
    )

    def _attribute(self, f, inputs, ctx):
        value, grad = gradient(f, inputs)
        return (grad.abs() if self.absolute else grad), {"target_value": value}
