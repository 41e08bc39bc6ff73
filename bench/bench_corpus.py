"""Throughput of the synthetic corpus: story generation and tokenization (encode_batch), in tokens/s.

    python bench/bench_corpus.py [--seconds S] [--out bench/results/corpus.json]

Each measurement runs for about S seconds on one process. Generation speed counts the words and
punctuation marks of the stories (the tokens of the word-level tokenizer); counting is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _import_package():
    """Import from an installed package, or from the checkout's lib/ when it is not installed."""
    try:
        import sparse_circuits  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "lib"))
    from sparse_circuits.data import generator, statistics, tokenizer

    return generator, statistics, tokenizer


def bench_generation(generator, statistics, seconds: float, seed: int = 0) -> dict:
    gen = generator.StoryGenerator(seed)
    stories: list[str] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        stories.extend(gen.story() for _ in range(200))
    elapsed = time.perf_counter() - start
    n_tokens = sum(len(statistics.tokenize_words(s)) for s in stories)
    return {
        "stories": len(stories),
        "tokens": n_tokens,
        "seconds": elapsed,
        "stories_per_s": len(stories) / elapsed,
        "tokens_per_s": n_tokens / elapsed,
        "_stories": stories,
    }


def bench_tokenization(tokenizer, tok, stories: list[str], seconds: float, chunk: int = 64) -> dict:
    n_tokens = n_texts = 0
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        batch = stories[i : i + chunk] or stories[:chunk]
        i = (i + chunk) % max(1, len(stories))
        n_tokens += sum(map(len, tokenizer.encode_batch(tok, batch)))
        n_texts += len(batch)
    elapsed = time.perf_counter() - start
    return {
        "chunk": chunk,
        "texts": n_texts,
        "tokens": n_tokens,
        "seconds": elapsed,
        "tokens_per_s": n_tokens / elapsed,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "corpus.json")
    args = parser.parse_args(argv)

    generator, statistics, tokenizer = _import_package()
    tok = tokenizer.build_tokenizer()
    gen = bench_generation(generator, statistics, args.seconds)
    stories = gen.pop("_stories")
    enc = bench_tokenization(tokenizer, tok, stories, args.seconds)
    result = {
        "generation": gen,
        "tokenization_encode_batch": enc,
        "vocabulary_size": tok.get_vocab_size(),
        "mean_story_tokens": gen["tokens"] / gen["stories"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "unset"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }

    rows = [
        ("generation (1 core, pure Python)", gen["tokens_per_s"], f"{gen['stories_per_s']:,.0f} stories/s"),
        ("tokenization (encode_batch)", enc["tokens_per_s"], f"batches of {enc['chunk']}"),
    ]
    print(f"{'measurement':<36} {'tokens/s':>12}  note")
    for name, rate, note in rows:
        print(f"{name:<36} {rate:>12,.0f}  {note}")
    print(f"vocabulary {result['vocabulary_size']} tokens, {result['mean_story_tokens']:.1f} tokens/story")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
