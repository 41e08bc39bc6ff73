"""Where pretraining text comes from (``CorpusConfig``): the synthetic generator, or SimpleStories (or any
dataset with a text column) through Hugging Face ``datasets``, from the hub or from local files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from .generator import TRAIN_STREAM, VAL_STREAM, VARIANTS, StoryGenerator

SOURCES = ("synthetic", "simplestories")


@dataclass
class CorpusConfig:
    """Where the pretraining text comes from."""

    source: str = "synthetic"
    """``"synthetic"``: the procedural generator of this module (offline, unbounded); ``"simplestories"``:
    the SimpleStories dataset through Hugging Face ``datasets``."""

    seed: int = 0
    """Seed of the synthetic stream; the "val" stream derives a disjoint generator from it."""

    variant: str = "basic"
    """Synthetic corpus variant: ``"basic"``, the corpus the shipped models were trained on (and what a config
    without this field means), or ``"rich"``, the same constructs in more frames, with longer gaps and
    distractor characters, so the task prompts cannot be solved by recall or by position (docs/corpus.md)."""

    dataset: str = "SimpleStories/SimpleStories"
    """Hugging Face hub name, or a local file or directory of json/jsonl/parquet/csv files (simplestories)."""

    text_column: str = "story"
    """Column holding the text (simplestories)."""

    split: str = "train"
    """Dataset split used for training (simplestories)."""

    val_split: str = "test"
    """Dataset split used for held-out evaluation (simplestories); must differ from ``split``."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"corpus.source must be one of {SOURCES}, got {self.source!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"corpus.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.source != "synthetic" and self.variant != "basic":
            raise ValueError(
                f"corpus.variant {self.variant!r} applies to the synthetic source only, not {self.source!r}"
            )
        if self.source == "simplestories" and self.split == self.val_split:
            raise ValueError(
                f"corpus.split and corpus.val_split are both {self.split!r}: validation would repeat the training text"
            )


_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
DataFiles = str | list[str] | dict[str, str | list[str]] | None


def _load_dataset(dataset: str, split: str, streaming: bool, data_files: DataFiles):
    """``datasets.load_dataset`` for a hub name, a local directory, or a single local data file."""
    import datasets

    looks_local = dataset.startswith((".", "/", "~")) or dataset.endswith(tuple(_LOCAL_FORMATS))
    if looks_local and not os.path.exists(os.path.expanduser(dataset)):
        raise FileNotFoundError(f"local dataset {dataset!r} does not exist (or use `source: synthetic`)")
    dataset = os.path.expanduser(dataset) if looks_local else dataset
    if data_files is None and os.path.isfile(dataset):
        ext = os.path.splitext(dataset)[1].lower()
        if ext not in _LOCAL_FORMATS:
            raise ValueError(f"cannot read {dataset!r}: expected one of {sorted(_LOCAL_FORMATS)}")
        return datasets.load_dataset(_LOCAL_FORMATS[ext], data_files={split: dataset}, split=split, streaming=streaming)
    return datasets.load_dataset(dataset, data_files=data_files, split=split, streaming=streaming)


def load_simplestories(
    dataset: str = "SimpleStories/SimpleStories",
    split: str = "train",
    text_column: str = "story",
    streaming: bool = True,
    data_files: DataFiles = None,
) -> Iterator[str]:
    """The lowercased texts of one split of SimpleStories (or any dataset with a text column).

    ``dataset`` is a hub name, or a local directory (split names taken from file names, e.g.
    ``train.jsonl`` / ``test.jsonl``) or a single local file (which is then the requested split).
    """
    try:
        ds = _load_dataset(dataset, split, streaming, data_files)
    except FileNotFoundError as e:
        if "local dataset" in str(e):
            raise
        raise RuntimeError(_unreachable(dataset, split, e)) from e
    except (ValueError, KeyError) as e:
        if "split" in str(e).lower():
            raise ValueError(f"dataset {dataset!r} has no split {split!r}: {e}") from e
        raise
    except Exception as e:  # network, missing repo, missing files: all mean "cannot reach it"
        raise RuntimeError(_unreachable(dataset, split, e)) from e
    columns = getattr(ds, "column_names", None)
    if columns is not None and text_column not in columns:
        raise ValueError(f"dataset {dataset!r} has no text column {text_column!r}; its columns are {columns}")
    return _texts(ds, dataset, text_column)


def _unreachable(dataset: str, split: str, e: Exception) -> str:
    return (
        f"could not load dataset {dataset!r} (split {split!r}): {type(e).__name__}: {e}. Without network "
        "access use the offline procedural corpus (`source: synthetic` in the corpus config) or point "
        "`dataset` at a local copy."
    )


def _texts(ds, dataset: str, text_column: str) -> Iterator[str]:
    for row in ds:
        if text_column not in row:  # streaming datasets may not know their columns before the first row
            raise ValueError(f"dataset {dataset!r} has no text column {text_column!r}; its columns are {sorted(row)}")
        if row[text_column]:  # a missing text (None) is skipped, not an error
            yield row[text_column].lower()


def iter_texts(cfg: CorpusConfig, stream: str = "train") -> Iterator[str]:
    """Unbounded stream of training ("train") or held-out ("val") texts for ``cfg``.

    Synthetic: the generator's train or val stream for ``cfg.seed`` and ``cfg.variant``. SimpleStories: ``cfg.split`` or
    ``cfg.val_split``, read in order and started again from the beginning when it ends.
    """
    if stream not in (TRAIN_STREAM, VAL_STREAM):
        raise ValueError(f"stream must be 'train' or 'val', got {stream!r}")
    if cfg.source == "synthetic":
        yield from StoryGenerator(cfg.seed, stream=stream, variant=cfg.variant)
        return
    split = cfg.split if stream == TRAIN_STREAM else cfg.val_split
    while True:
        n = 0
        for text in load_simplestories(cfg.dataset, split, cfg.text_column):
            n += 1
            yield text
        if n == 0:
            raise ValueError(f"dataset {cfg.dataset!r} split {split!r} has no texts")
