"""cryoxplain: rotation-equivariant denoising and explainable AI for cryo-EM particle images.

The library is the product; the ``cryoxplain`` command line is a thin layer over it.
"""
from importlib.metadata import PackageNotFoundError, version as _version

from .errors import CryoxplainError

try:
    __version__ = _version("cryoxplain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["CryoxplainError", "__version__"]
