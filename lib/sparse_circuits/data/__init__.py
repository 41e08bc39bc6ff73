"""Layer 2, data: the pretraining corpus, the word-level tokenizer, and reproducible token batches.

- ``words``: names, genders, task phrase lists and the templates of the synthetic stories (pure data);
- ``generator``: ``StoryGenerator``, the seeded synthetic story streams;
- ``statistics``: word splitting, the generator's vocabulary, construct rates;
- ``sources``: ``CorpusConfig`` and the text streams of either source (synthetic or SimpleStories);
- ``tokenizer``: the word-level tokenizer; ``batches``: token rows for training, reproducible per step.
"""

from .. import _compat

# ``sparse_circuits.data`` was the batches module before 0.2: its names resolve with a DeprecationWarning.
__getattr__ = _compat.module_getattr("data")
