"""Toy models and conformance suites for plugin authors (``check_explainer``)."""
from .explainers import check_explainer

__all__ = ["check_explainer"]
