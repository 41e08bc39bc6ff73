"""Weight-sparse transformers, task circuits found by pruning, and tests of their faithfulness."""

__version__ = "0.1.0"

from .model import ABSTOPK_SITES, NODE_SITES, ModelConfig, SparseGPT  # noqa: E402

__all__ = ["ABSTOPK_SITES", "NODE_SITES", "ModelConfig", "SparseGPT", "__version__"]
