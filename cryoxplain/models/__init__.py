"""Networks (cartesian and spiral denoisers, particle classifier), the model protocol, the
architecture registry (entry-point group ``cryoxplain.architectures``) and the model file format."""
from .protocol import CryoxplainModel, ModelBase
from .registry import (ArchitectureSpec, ModelInfo, architectures, build_model, get_architecture,
                       list_architectures, load_model, read_model_info, register_architecture,
                       resolve_model_path, save_model, shipped_models)

__all__ = ["ArchitectureSpec", "CryoxplainModel", "ModelBase", "ModelInfo", "architectures", "build_model",
           "get_architecture", "list_architectures", "load_model", "read_model_info", "register_architecture",
           "resolve_model_path", "save_model", "shipped_models"]
