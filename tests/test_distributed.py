"""Data-parallel training: two gloo processes on localhost equal one process at the same global batch."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_run
from sparse_circuits.model import checkpoint as ckpt
from sparse_circuits.training import distributed
from sparse_circuits.training import trainer as trainer_module
from sparse_circuits.training.trainer import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refuse(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"a rank other than 0 wrote ({what})")

    return fail


def _worker(rank: int, world: int, port: int, out: str, execution: str, phase: str) -> None:
    """One rank of a job: phase "kill" trains until every rank is killed at step 3 (after the checkpoint at step
    2); phase "resume" is the restarted job, in fresh processes, as after a real kill."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    if rank != 0:  # every way the trainer writes fails on the other ranks
        for name in ("save_checkpoint", "_metrics_append", "_truncate_metrics", "finish"):
            setattr(Trainer, name, _refuse(name))
        trainer_module.save_tokenizer = _refuse("tokenizer")
        trainer_module.storage.output_lock = _refuse("lock")
    trainer = Trainer(tiny_run(), out, "cpu", execution=execution)
    if phase == "kill":
        real_step = trainer.train_step

        def dying_step(step):
            if step == 3:
                raise KeyboardInterrupt("simulated kill")
            return real_step(step)

        trainer.train_step = dying_step
        try:
            trainer.run(progress=False)
            raise AssertionError("the simulated kill did not happen")
        except KeyboardInterrupt:
            pass
    else:
        trainer.run(progress=False)
    dist.destroy_process_group()
    # Done: skip the interpreter's teardown, which aborts now and then after gloo ("terminate called without an
    # active exception", seen in CI); rank 0's files are complete.
    os._exit(0)


@pytest.mark.parametrize("execution", ["auto", "sparse"])  # the tiny model runs dense under auto
def test_two_processes_equal_one_and_resume_after_a_kill(tmp_path, execution):
    one, two = tmp_path / "one", tmp_path / "two"
    Trainer(tiny_run(), one, "cpu", execution=execution).run(progress=False)
    for phase in ("kill", "resume"):
        mp.spawn(_worker, args=(2, _free_port(), str(two), execution, phase), nprocs=2, join=True)
        assert (two / "checkpoint" / "state.json").exists() == (phase == "kill")
    m1, c1 = ckpt.load_model(one)
    m2, c2 = ckpt.load_model(two)
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert c2["results"]["train_tokens"] == c1["results"]["train_tokens"]
    assert c2["results"]["val_loss"] == pytest.approx(c1["results"]["val_loss"], rel=1e-5)
    losses = [
        [json.loads(ln).get("loss") for ln in (d / ckpt.METRICS_FILE).read_text().splitlines()] for d in (one, two)
    ]
    assert len(losses[0]) == len(losses[1])  # rank 0 wrote each record once, resumed lines dropped
    assert [x for x in losses[1] if x] == pytest.approx([x for x in losses[0] if x], rel=1e-5)


def test_global_batch_must_split_evenly():
    assert distributed.rank_rows(8, distributed.World(rank=1, size=2)) == slice(4, 8)
    with pytest.raises(ValueError, match="batch_size=5 .* not divisible by the world size 2"):
        distributed.rank_rows(5, distributed.World(rank=0, size=2))


def test_unreachable_rendezvous_is_one_clear_error(monkeypatch):
    port = _free_port()  # nothing listens there
    for key, value in dict(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match=f"rank 1 of 2 cannot reach the rendezvous at 127.0.0.1:{port}"):
        distributed.init(rendezvous_timeout_s=0.5)
    assert not dist.is_initialized()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is not a rank of WORLD_SIZE=2"):
        distributed.init()
