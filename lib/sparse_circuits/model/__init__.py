"""Layer 3, model: TransformerLens-style hook points, the sparse GPT, model directories, loading and sampling."""

from .. import _compat
from .gpt import ABSTOPK_SITES, NODE_SITES, ModelConfig, SparseGPT

__all__ = ["ABSTOPK_SITES", "NODE_SITES", "ModelConfig", "SparseGPT"]

# ``sparse_circuits.model`` was the GPT module before 0.2: its other names resolve with a DeprecationWarning.
__getattr__ = _compat.module_getattr("model")
