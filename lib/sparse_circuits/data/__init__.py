"""Layer 2, data: the pretraining corpus (synthetic generator and word lists, real sources), the word-level
tokenizer, and reproducible token batches."""

from .. import _compat

# ``sparse_circuits.data`` was the batches module before 0.2: its names resolve with a DeprecationWarning.
__getattr__ = _compat.module_getattr("data")
