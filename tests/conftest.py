import pytest
import torch
from sparse_circuits.training.trainer import RunConfig, TrainConfig


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        default="cpu",
        help="device for the exactness tests that take the `device` fixture (cpu or cuda; default cpu)",
    )


def pytest_collection_modifyitems(config, items):
    device = config.getoption("--device")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        skip = pytest.mark.skip(reason=f"--device {device}: torch sees no CUDA device here, so nothing runs")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device of ``--device`` (cpu unless asked): where the exactness tests build their models and tensors."""
    return torch.device(pytestconfig.getoption("--device"))


def cpu_only(device: torch.device, why: str) -> None:
    """Skip the calling test on any device but CPU (``why``: what makes it CPU-only by design)."""
    if device.type != "cpu":
        pytest.skip(f"CPU only: {why}")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny_run(name: str = "tiny", steps: int = 6, l0: float = 0.5, **train_kw) -> RunConfig:
    """A model small enough to train for a few steps in a second."""
    kw = dict(steps=steps, batch_size=4, l0_target=l0, eval_every=3, eval_batches=1, log_every=1, checkpoint_every=2)
    kw.update(train_kw)
    return RunConfig(name=name, model={"n_layer": 2, "d_model": 32, "n_ctx": 16}, train=TrainConfig(**kw))


def random_circuit(model, frac: float = 0.4, seed: int = 0, **meta):
    """A circuit keeping a random fraction of the model's nodes (zero ablation unless meta says otherwise)."""
    from sparse_circuits.circuits.circuit import Circuit
    from sparse_circuits.circuits.masking import NodeLayout

    nodes = torch.rand(NodeLayout(model).n_nodes, generator=torch.Generator().manual_seed(seed)) < frac
    return Circuit(nodes=nodes, tau=nodes.float(), meta={"ablation": "zero", **meta})


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A trained (a few steps) tiny sparse model directory shared by tests that only read it."""
    from sparse_circuits.training.trainer import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    train(tiny_run(steps=8), out, device="cpu", progress=False)
    return out


def synthetic_data(tokens, last):
    """TaskData with given [n, T] token ids and answer positions (texts and answers unused)."""
    from sparse_circuits.tasks import TaskData

    n = tokens.shape[0]
    return TaskData(
        tokens,
        torch.tensor(last),
        torch.zeros(n, dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
        [""] * n,
        [{}] * n,
    )
