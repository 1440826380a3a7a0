"""Networks (cartesian and spiral denoisers, particle classifier) and the model file format."""
from .registry import (ModelInfo, architectures, build_model, load_model, read_model_info,
                       register_architecture, resolve_model_path, save_model, shipped_models)

__all__ = ["ModelInfo", "architectures", "build_model", "load_model", "read_model_info",
           "register_architecture", "resolve_model_path", "save_model", "shipped_models"]
