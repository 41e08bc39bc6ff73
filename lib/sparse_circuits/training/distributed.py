"""Data-parallel training over several processes (launched by torchrun, or by torch.multiprocessing in tests).

Each rank reads the whole global batch of a step (batches are generated from the step's seed) and trains on its
own contiguous slice of rows; DistributedDataParallel averages the gradients, which equals the gradient of the
global-batch mean loss because every slice has the same number of targets. Everything after the backward pass
(RMS normalization, AdamW, the projection) then runs on identical numbers on every rank, so the weights stay
equal without being broadcast. Only rank 0 writes (tokenizer, metrics, checkpoints, the model) and holds the
output directory's lock; the other ranks only read the checkpoint they resume from.

    torchrun --standalone --nproc_per_node 2 -m sparse_circuits.app.cli train --config configs/sparse-d128.yaml --out ...
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..core import storage

RENDEZVOUS_TIMEOUT_S = 60.0
"""How long a rank waits for the rendezvous address to accept connections before giving up."""
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
"""How long a rank waits in a collective (rank 0 evaluates and writes while the others wait)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    """Index on this machine: the CUDA device this rank uses."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def world_from_env() -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one process when they are unset)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ValueError(f"RANK={world.rank} is not a rank of WORLD_SIZE={world.size}")
    return world


def _wait_for_rendezvous(addr: str, port: int, world: World, timeout_s: float) -> None:
    """Fail fast, with one clear line, when the rendezvous address never accepts a connection."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(1.0, timeout_s))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"rank {world.rank} of {world.size} cannot reach the rendezvous at {addr}:{port} "
                    f"after {timeout_s:g} s ({e.strerror or e}); is rank 0 (or torchrun) running there?"
                ) from None
            time.sleep(0.2)


def init(backend: str | None = None, rendezvous_timeout_s: float = RENDEZVOUS_TIMEOUT_S) -> World:
    """Join the process group the environment describes (NCCL on CUDA, gloo on CPU); a no-op for one process
    or when a group already exists."""
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return world
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        raise RuntimeError(f"WORLD_SIZE={world.size} but MASTER_ADDR / MASTER_PORT are not set; launch with torchrun")
    # Rank 0 hosts the rendezvous store itself unless torchrun's agent already does.
    if not world.is_main or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        _wait_for_rendezvous(addr, _env_int("MASTER_PORT", 0), world, rendezvous_timeout_s)
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=COLLECTIVE_TIMEOUT)
    return world


def rank_rows(batch_size: int, world: World) -> slice:
    """This rank's rows of a global batch of ``batch_size`` rows."""
    if batch_size % world.size:
        raise ValueError(
            f"TrainConfig.batch_size={batch_size} (the global batch) is not divisible by the world size "
            f"{world.size}; choose a multiple of it"
        )
    per_rank = batch_size // world.size
    return slice(world.rank * per_rank, (world.rank + 1) * per_rank)


def mean(x: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a scalar over the ranks (the global-batch loss from the ranks' slice losses)."""
    if not world.distributed:
        return x
    x = x.detach().float().clone()
    dist.all_reduce(x)
    return x / world.size


def all_true(ok: bool, world: World) -> bool:
    """Whether ``ok`` holds on every rank (a collective: every rank must call it)."""
    if not world.distributed:
        return ok
    flag = torch.tensor([int(ok)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier(world: World) -> None:
    if world.distributed:
        all_true(True, world)  # an all-reduce, which every backend orders with the other collectives


@contextmanager
def main_rank_lock(out_dir: str | Path, world: World) -> Iterator[None]:
    """Rank 0 holds ``out_dir``'s one-writer lock for the block; if it cannot, every rank stops (rank 0 with the
    lock's own error), instead of the others waiting for it in the next collective."""
    with ExitStack() as stack:
        if world.is_main:
            try:
                stack.enter_context(storage.output_lock(out_dir))
            except Exception:
                all_true(False, world)
                raise
        if not all_true(True, world):
            raise RuntimeError(f"rank 0 could not take the output directory {out_dir}; see its error")
        yield
