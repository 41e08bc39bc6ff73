"""Weight-sparse transformers, task circuits found by pruning, and tests of their faithfulness.

The subpackages read as the pipeline, each importing only the ones before it (docs/architecture.md):
core -> data -> model -> training -> tasks -> circuits -> pruning -> analysis -> viz -> app.
"""

import importlib as _importlib

from . import _compat
from .core.version import __version__
from .model.gpt import ABSTOPK_SITES, NODE_SITES, ModelConfig, SparseGPT

_compat.install()

__all__ = ["ABSTOPK_SITES", "NODE_SITES", "ModelConfig", "SparseGPT", "__version__"]


def __getattr__(name: str):
    # ``sparse_circuits.prune`` and other old module names, as attributes (imports go through _compat's finder)
    if name in _compat.MOVED:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
