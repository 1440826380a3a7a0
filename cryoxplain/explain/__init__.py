"""Explanations: the explainer protocol, Attribution results, targets and the plugin registry."""
from .base import API_VERSION, Attribution, Explainer, Param, Target, explained_function, gradient
from .paths import PathIntegral, StraightLinePath, completeness_gap, integrate_path, quadrature
from .registry import GROUP, create_explainer, get_explainer, list_plugins
from .stack import ExplainResult, explain_stack, read_attributions
from .targets import parse_target

__all__ = ["API_VERSION", "Attribution", "Explainer", "GROUP", "Param", "Target", "create_explainer",
           "explained_function", "get_explainer", "gradient", "list_plugins",
           "PathIntegral", "StraightLinePath", "completeness_gap", "integrate_path", "quadrature",
           "ExplainResult", "explain_stack", "read_attributions", "parse_target"]
