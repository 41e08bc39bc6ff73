"""Training throughput, dense vs weight-sparse at the same shapes, measured side by side in one run.

For each width: a dense model (no AbsTopK, L0 = 1) and a sparse one (AbsTopK at every node site, L0 at a
target of 1/16, so the projection runs every step) take alternating blocks of steps; the ratio of their
median step times is the sparse overhead. Achieved GFLOP/s counts 6 x (matmul parameters) per token plus
attention, against a matmul peak measured in the same run.

    python bench/bench_train.py [--widths 256 512] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import matmul_peak_gflops, write
from sparse_circuits.data.batches import BatchStream
from sparse_circuits.data.sources import CorpusConfig
from sparse_circuits.data.tokenizer import build_tokenizer
from sparse_circuits.model.gpt import NODE_SITES, ModelConfig, SparseGPT
from sparse_circuits.model.inference import lm_loss
from sparse_circuits.training.sparsity import normalize_grad_rms_, project_


def flops_per_token(cfg: ModelConfig, T: int) -> float:
    D, F, V, L = cfg.d_model, cfg.d_mlp, cfg.vocab_size, cfg.n_layer
    matmul_params = L * (4 * D * D + 2 * D * F) + D * V
    attention = L * 2 * 2 * T * D / 2  # scores and values, causal half, per token
    return 6 * matmul_params + 3 * attention


def make(d: int, sparse: bool, V: int, T: int):
    cfg = ModelConfig(vocab_size=V, d_model=d, n_ctx=T, abstopk_sites=NODE_SITES if sparse else ())
    torch.manual_seed(0)
    model = SparseGPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=0.1, weight_decay=0.1)
    weights = list(model.sparsifiable_weights().values())

    def step(rows):
        loss = lm_loss(model, rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        normalize_grad_rms_(model.parameters())
        opt.step()
        if sparse:
            for w, axis in weights:
                project_(w.data, 1 / 16, axis)

    return cfg, step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    p.add_argument("--steps", type=int, default=12, help="timed steps per model (in blocks of 3, alternating)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-ctx", type=int, default=64)
    args = p.parse_args()
    tok = build_tokenizer()
    stream = BatchStream(CorpusConfig(), tok, args.n_ctx, args.batch_size)
    batches = [stream.batch(i) for i in range(4)]
    peak = matmul_peak_gflops()
    out = {"matmul_peak_gflops": peak, "batch_size": args.batch_size, "n_ctx": args.n_ctx, "widths": {}}
    for d in args.widths:
        runs = {kind: make(d, kind == "sparse", tok.get_vocab_size(), args.n_ctx) for kind in ("dense", "sparse")}
        times = {"dense": [], "sparse": []}
        for _, step in runs.values():  # warm-up
            step(batches[0])
        for block in range(max(1, args.steps // 3)):
            for kind, (_, step) in runs.items():
                for i in range(3):
                    t = time.perf_counter()
                    step(batches[(block + i) % 4])
                    times[kind].append(time.perf_counter() - t)
        tokens = args.batch_size * args.n_ctx
        row = {}
        for kind, ts in times.items():
            med = statistics.median(ts)
            gflops = flops_per_token(runs[kind][0], args.n_ctx) * tokens / med / 1e9
            row[kind] = {
                "step_ms": med * 1e3,
                "tokens_per_s": tokens / med,
                "gflops": gflops,
                "fraction_of_matmul_peak": gflops / peak,
            }
        row["sparse_over_dense_step_time"] = row["sparse"]["step_ms"] / row["dense"]["step_ms"]
        out["widths"][str(d)] = row
        print(
            f"d_model {d}: dense {row['dense']['tokens_per_s']:.0f} tok/s ({row['dense']['fraction_of_matmul_peak']:.0%} "
            f"of peak), sparse {row['sparse']['tokens_per_s']:.0f} tok/s ({row['sparse']['fraction_of_matmul_peak']:.0%}), "
            f"sparse/dense step time {row['sparse_over_dense_step_time']:.2f}"
        )
    print(f"matmul peak {peak:.0f} GFLOP/s")
    write("train", out)


if __name__ == "__main__":
    main()
