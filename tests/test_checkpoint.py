import json

import pytest
import torch
from safetensors.torch import load_file
from sparse_circuits.model import checkpoint as ckpt
from sparse_circuits.model.gpt import ModelConfig, SparseGPT
from sparse_circuits.training.sparsity import project_


def test_round_trip_is_bitwise_with_sparse_storage(tmp_path):
    m = SparseGPT(ModelConfig(vocab_size=40, d_model=32))
    for w, axis in m.sparsifiable_weights().values():
        project_(w.data, 0.1, axis)
    ckpt.save_model(m, tmp_path, {"name": "t"})
    loaded, config = ckpt.load_model(tmp_path)
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(
            a.view(torch.int32) if a.is_floating_point() else a, b.view(torch.int32) if b.is_floating_point() else b
        ), k
    assert config["name"] == "t" and config["model"]["d_model"] == 32 and "package_version" in config
    raw = load_file(str(tmp_path / "model.safetensors"))
    assert any(k.endswith("::indices") for k in raw)  # sparse matrices are stored compactly


def test_missing_truncated_and_mismatched_files_fail_clearly(tmp_path):
    m = SparseGPT(ModelConfig(vocab_size=40, d_model=32))
    ckpt.save_model(m, tmp_path, {"name": "t"})
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors"):
        ckpt.load_model(tmp_path)
    weights.unlink()
    with pytest.raises(ckpt.CheckpointError, match="missing file: .*model.safetensors"):
        ckpt.load_model(tmp_path)
    weights.write_bytes(data)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["d_model"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors.*shape"):
        ckpt.load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"model": {"d_model": 3')
    with pytest.raises(ckpt.CheckpointError, match="config.json is not valid JSON"):
        ckpt.load_model(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match="model directory not found"):
        ckpt.load_model(tmp_path / "nothing")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    ckpt.write_json(tmp_path / "a.json", {"x": 1})
    ckpt.save_tensors(tmp_path / "t.safetensors", {"w": torch.zeros(3, 3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "t.safetensors"]
