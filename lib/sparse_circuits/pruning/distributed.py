"""Pruning seeds sharded across processes: each rank prunes a contiguous share of the seeds, then all ranks
gather every circuit, in seed order.

Runs are independent (each seed has its own batches, initial logits and optimizer group), so a share pruned
alone gives the circuits the whole list would give; with ``seed_chunk=1`` the passes are even the same matmuls,
and the mask logits are bitwise those of one process. Launch with ``torchrun --nproc-per-node N`` (gloo on CPU,
nccl on GPUs) after ``torch.distributed.init_process_group``; without an initialized process group it is plain
``prune``.
"""

from __future__ import annotations

import torch.distributed as dist

from .pruner import prune


def rank_share(n: int, rank: int, world: int) -> range:
    """Indices of the contiguous share of ``n`` items for ``rank`` of ``world`` (sizes differ by at most one)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world} processes")
    return range(rank * n // world, (rank + 1) * n // world)


def prune_sharded(model, tokenizer, task, cfg, seeds, k_coefs=None, lrs=None, **kwargs) -> list:
    """``prune`` with the seeds (and their k_coefs and lrs) split across the ranks of the default process group;
    every rank returns all circuits, in the order of ``seeds``. ``kwargs`` go to ``prune``."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not (dist.is_available() and dist.is_initialized()):
        return prune(model, tokenizer, task, cfg, seeds, k_coefs, lrs, **kwargs)
    share = rank_share(len(seeds), dist.get_rank(), dist.get_world_size())

    def pick(values):
        return None if values is None else [values[i] for i in share]

    part = prune(model, tokenizer, task, cfg, pick(seeds), pick(k_coefs), pick(lrs), **kwargs) if share else []
    for c in part:  # as one process pruning every seed records it
        c.meta["n_seeds_in_run"] = len(seeds)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, part)
    return [c for circuits in gathered for c in circuits]
