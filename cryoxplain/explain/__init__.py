"""Explanations: the explainer template and its SDK (sampling, baselines, paths, extras),
Attribution results, targets and the plugin registry (docs/plugins.md)."""
from .base import (API_VERSION, Attribution, ExplainContext, Explainer, Param, Target, batched_gradients,
                   batched_values, bind_target, check_inputs, explained_function, gradient, image_seed,
                   validate_attribution)
from .paths import PathIntegral, StraightLinePath, completeness_gap, integrate_path, integrated_gradients, quadrature
from .registry import GROUP, create_explainer, get_explainer, list_plugins
from .stack import ExplainResult, explain_stack, read_attributions
from .targets import parse_target

__all__ = ["API_VERSION", "Attribution", "ExplainContext", "Explainer", "GROUP", "Param", "Target",
           "batched_gradients", "batched_values", "bind_target", "check_inputs", "create_explainer",
           "explained_function", "get_explainer", "gradient", "image_seed", "list_plugins", "validate_attribution",
           "PathIntegral", "StraightLinePath", "completeness_gap", "integrate_path", "integrated_gradients",
           "quadrature", "ExplainResult", "explain_stack", "read_attributions", "parse_target"]
