"""Importing the reference implementations' checkpoints (OpenAI circuit_sparsity, Drori sparse_pretrain).

The fixtures (tests/fixtures/reference_models, see its README) are tiny random checkpoints in each reference's
on-disk format with the logits that reference's own code computes; an imported model must reproduce them.
"""

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sparse_circuits.app.cli import main
from sparse_circuits.circuits.layout import NodeLayout
from sparse_circuits.core.storage import CheckpointError
from sparse_circuits.data.tokenizer import decode, encode, eos_id, load_tokenizer, unk_id
from sparse_circuits.model.checkpoint import load_model
from sparse_circuits.model.gpt import ModelConfig, SparseGPT, abs_topk, abstopk_k
from sparse_circuits.model.inference import load
from sparse_circuits.model.reference import import_drori, import_model, import_openai, read_tokenizer
from sparse_circuits.pruning.pruner import PruneConfig, prune
from sparse_circuits.tasks import Task, TaskSpec
from sparse_circuits.tasks.spec import TaskSpecError

FIXTURES = Path(__file__).parent / "fixtures" / "reference_models"
OPENAI_TOK, DRORI_TOK = FIXTURES / "openai" / "tokenizer", FIXTURES / "drori" / "tokenizer"

# (format, fixture, Drori forward path, expected logits tensor)
CASES = [
    ("openai", "openai/a_sparse_sink_bigram", "forward", "logits"),
    ("openai", "openai/b_dense", "forward", "logits"),
    ("drori", "drori/d_dense", "forward", "logits_forward"),
    ("drori", "drori/c_sparse_bridges", "forward", "logits_forward"),
    ("drori", "drori/c_sparse_bridges", "train", "logits_train_path"),
    ("drori", "drori/c_sparse_bridges", "loader", "logits_forward_loader"),
]


def _import(tmp_path, fmt, fixture, path="forward"):
    out = tmp_path / f"{fixture.replace('/', '_')}_{path}"
    tokenizer = OPENAI_TOK if fmt == "openai" else DRORI_TOK
    import_model(fmt, FIXTURES / fixture, out, tokenizer=tokenizer, drori_path=path)
    return out


@pytest.mark.parametrize("fmt,fixture,path,key", CASES)
def test_imported_model_reproduces_reference_logits(tmp_path, fmt, fixture, path, key):
    expected = load_file(FIXTURES / fixture / "expected.safetensors")
    model, tok, _ = load(_import(tmp_path, fmt, fixture, path))
    ids = expected["input_ids"]  # [4, 24]
    with torch.no_grad():
        logits = model(ids)  # [4, 24, 320]
        at = torch.tensor([23, 5, 0, 13])
        at_logits = model(ids, at=at)[:, 0]  # the answer-position path tasks use
    assert logits.dtype == torch.float32
    assert (logits - expected[key]).abs().max() < 1e-4
    assert (at_logits - logits[torch.arange(4), at]).abs().max() < 1e-4


def test_float64_matches_reference_float64(tmp_path):
    expected = load_file(FIXTURES / "openai/a_sparse_sink_bigram/expected.safetensors")
    model = import_openai(FIXTURES / "openai/a_sparse_sink_bigram").build().double()
    with torch.no_grad():
        assert (model(expected["input_ids"]) - expected["logits_f64"]).abs().max() < 1e-10


def test_reference_options_matter():
    """The imported options are what makes the logits match: this project's defaults do not."""
    expected = load_file(FIXTURES / "drori/c_sparse_bridges/expected.safetensors")
    imported = import_drori(FIXTURES / "drori/c_sparse_bridges")
    imported.config.norm_eps = 1e-5
    with torch.no_grad():
        off = imported.build()(expected["input_ids"])
    assert (off - expected["logits_forward"]).abs().max() > 0.1
    # The three Drori paths differ from each other by more than the tolerance.
    assert (expected["logits_train_path"] - expected["logits_forward"]).abs().max() > 0.1
    assert (expected["logits_forward_loader"] - expected["logits_forward"]).abs().max() > 0.1


def test_bf16_source_becomes_exact_fp32(tmp_path):
    out = _import(tmp_path, "drori", "drori/c_sparse_bridges")
    model, _ = load_model(out)
    src = torch.load(FIXTURES / "drori/c_sparse_bridges/sparse_model.bin", weights_only=True)
    assert src["wte.weight"].dtype == torch.bfloat16
    assert model.embed.weight.dtype == torch.float32
    assert torch.equal(model.embed.weight, src["wte.weight"].float())
    q, k, v = src["blocks.1.attn.c_attn.weight"].float().chunk(3)
    assert torch.equal(model.blocks[1].attn.W_K.weight, k) and torch.equal(model.blocks[1].attn.W_V.weight, v)


def test_every_source_key_used_or_reported(tmp_path):
    report = import_openai(FIXTURES / "openai/a_sparse_sink_bigram").source
    assert report["dropped"] == {} and report["notes"] == []
    report = import_drori(FIXTURES / "drori/c_sparse_bridges").source
    bridges = torch.load(FIXTURES / "drori/c_sparse_bridges/bridges.bin", weights_only=True)
    assert set(report["dropped"]) == {f"bridges.bin:{k}" for k in bridges}
    dense = import_openai(FIXTURES / "openai/b_dense")
    assert any("final_logits_bias" in n for n in dense.source["notes"])
    assert not dense.config.abstopk_sites and dense.config.unembed_bias == "buffer"
    # The buffer is saved and loaded, but is not a parameter.
    model = dense.build()
    assert "unembed.bias" in model.state_dict() and "unembed.bias" not in dict(model.named_parameters())


def _copy(tmp_path, fixture):
    dst = tmp_path / "src"
    shutil.copytree(FIXTURES / fixture, dst)
    return dst


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_openai_errors_name_the_fault(tmp_path):
    src = _copy(tmp_path, "openai/b_dense")
    cfg = src / "beeg_config.json"
    _edit_json(cfg, lambda c: c.update(residual_activation_type="relu"))
    with pytest.raises(CheckpointError, match="residual_activation_type"):
        import_openai(src)
    _edit_json(cfg, lambda c: c.update(residual_activation_type="identity", rms_norm=False))
    with pytest.raises(CheckpointError, match="rms_norm"):
        import_openai(src)
    _edit_json(cfg, lambda c: c.update(rms_norm=True, frobnicate=1))
    with pytest.raises(CheckpointError, match="frobnicate"):
        import_openai(src)
    _edit_json(cfg, lambda c: (c.pop("frobnicate"), c.update(afrac=0.5, afrac_loctypes="attn_in,resid_delta")))
    with pytest.raises(CheckpointError, match="resid_delta"):
        import_openai(src)
    _edit_json(cfg, lambda c: c.update(afrac=None, d_mlp=96))
    with pytest.raises(CheckpointError, match=r"mlp\.c_fc\.weight has shape \(128, 32\)"):
        import_openai(src)
    _edit_json(cfg, lambda c: c.update(d_mlp=128))
    sd = torch.load(src / "final_model.pt", weights_only=True)
    del sd["transformer.h.1.ln_2.weight"]
    torch.save(sd, src / "final_model.pt")
    with pytest.raises(CheckpointError, match="transformer.h.1.ln_2.weight"):
        import_openai(src)
    (src / "final_model.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="final_model.pt"):
        import_openai(src)
    cfg.unlink()
    with pytest.raises(CheckpointError, match="beeg_config.json"):
        import_openai(src)


def test_drori_errors_name_the_fault(tmp_path):
    src = _copy(tmp_path, "drori/c_sparse_bridges")
    cfg = src / "config.json"
    _edit_json(cfg, lambda c: c["model_config"].update(use_rms_norm=False))
    with pytest.raises(CheckpointError, match="use_rms_norm"):
        import_drori(src)
    _edit_json(cfg, lambda c: c["model_config"].update(use_rms_norm=True, activation="swish"))
    with pytest.raises(CheckpointError, match="activation"):
        import_drori(src)
    _edit_json(cfg, lambda c: c["model_config"].update(activation="gelu"))
    _edit_json(cfg, lambda c: c["sparsity_config"].update(activation_topk_mode="per_token"))
    with pytest.raises(CheckpointError, match="activation_topk_mode"):
        import_drori(src)
    _edit_json(cfg, lambda c: c["sparsity_config"].pop("activation_topk_mode"))
    sd = torch.load(src / "sparse_model.bin", weights_only=True)
    sd["extra.weight"] = torch.zeros(2)
    torch.save(sd, src / "sparse_model.bin")
    with pytest.raises(CheckpointError, match="extra.weight"):
        import_drori(src)
    shutil.copy(FIXTURES / "drori/c_sparse_bridges/sparse_model.bin", src)
    (src / "training_config.yaml").unlink()
    with pytest.raises(CheckpointError, match="training_config.yaml"):
        import_drori(src)
    import_drori(src, "loader")  # his loaders need only config.json
    (src / "sparse_model.bin").unlink()
    with pytest.raises(CheckpointError, match="sparse_model.bin"):
        import_drori(src, "loader")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        import_model("drori", FIXTURES / "drori/d_dense", tmp_path / "o", tokenizer=OPENAI_TOK / "missing.json")


def test_tokenizer_size_must_match(tmp_path):
    src = _copy(tmp_path, "drori/d_dense")
    _edit_json(src / "config.json", lambda c: c["model_config"].update(vocab_size=321))
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    sd["wte.weight"] = torch.zeros(321, 32)
    sd["lm_head.weight"] = torch.zeros(321, 32)
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="321"):
        import_model("drori", src, tmp_path / "out", tokenizer=DRORI_TOK)


def test_openai_bpe_tokenizer_examples():
    examples = json.loads((OPENAI_TOK / "examples.json").read_text())
    tok = read_tokenizer(OPENAI_TOK)
    assert tok.get_vocab_size() == examples["n_vocab"] and eos_id(tok) == 319 and unk_id(tok) is None
    for ex in examples["examples"]:
        assert encode(tok, ex["text"]) == ex["ids"]
        assert decode(tok, ex["ids"]) == ex["text"]


def test_drori_wordpiece_tokenizer_examples():
    examples = json.loads((DRORI_TOK / "examples.json").read_text())
    tok = read_tokenizer(DRORI_TOK)
    assert eos_id(tok) == examples["eos_token_id"] == 1 and unk_id(tok) == examples["unk_token_id"] == 0
    for ex in examples["examples"]:
        assert encode(tok, ex["text"]) == ex["ids"]
        assert tok.encode(ex["text"]).ids == ex["ids_add_special_tokens"]


def test_tokenizer_written_with_the_model_loads_back(tmp_path):
    out = _import(tmp_path, "openai", "openai/a_sparse_sink_bigram")
    tok = load_tokenizer(out / "tokenizer.json")
    text = "def add(a, b):\n    return a + b\n"
    assert encode(tok, text) == encode(read_tokenizer(OPENAI_TOK), text)


PRONOUN = {
    "name": "pronoun_ss",
    "template": "when {name} {action},",
    "slots": {
        "name": ["leo", "mia", "alex", "kim", "peter", "rita"],
        "action": ["ran to the beach", "saw the moon", "found the map", "climbed the tree"],
    },
    "target": {
        "slot": "name",
        "map": {"leo": "he", "mia": "she", "alex": "he", "kim": "she", "peter": "he", "rita": "she"},
    },
}


def test_prune_and_html_on_imported_model(tmp_path, capsys):
    out = _import(tmp_path, "drori", "drori/c_sparse_bridges")
    model, tok, _ = load(out)
    task = Task(TaskSpec.from_dict(PRONOUN))
    data = task.data("train", tok)
    assert data.correct.tolist()[0] in (tok.token_to_id("he"), tok.token_to_id("she"))
    cfg = PruneConfig(ablation="zero", steps=2, batch_size=4, eval_n=4, train_split="train", eval_split="train")
    circuits = prune(model, tok, task, cfg, seeds=1, progress=False)
    circuit_dir = tmp_path / "circuit"
    circuits[0].save(circuit_dir, model)
    html = tmp_path / "c.html"
    argv = ["export-html", str(circuit_dir), "--model", str(out), "--out", str(html), "--n-prompts", "2"]
    assert main(argv) == 0 and html.stat().st_size > 1000


def test_subword_task_answers_must_be_single_tokens():
    tok = read_tokenizer(OPENAI_TOK)  # a 320-token BPE: " a" and " b" are tokens, " add" is not
    spec = {
        "name": "ret",
        "template": "def f({var}):\n    return",
        "slots": {"var": ["a", "b", "add"]},
        "target": {"slot": "var", "map": {"a": "a", "b": "b", "add": "add"}},
        "incorrect": {"slot": "var", "map": {"a": "b", "b": "a", "add": "a"}},
    }
    with pytest.warns(UserWarning, match="add"):
        data = Task(TaskSpec.from_dict(spec)).data("test", tok)
    assert {a["var"] for a in data.assignments} == {"a", "b"}
    assert sorted(set(data.correct.tolist())) == [encode(tok, " a")[0], encode(tok, " b")[0]]
    # Prompts may span many tokens; the answer position is the last one.
    for row, last, text in zip(data.tokens, data.last, data.texts):
        ids = encode(tok, text)
        assert len(ids) > 5 and row[: last + 1].tolist() == [eos_id(tok), *ids]
    spec.update(target={"constant": "add"}, incorrect={"constant": "a"})
    with pytest.raises(TaskSpecError, match="'add' is not a single token"), warnings.catch_warnings():
        Task(TaskSpec.from_dict(spec)).data("test", tok)


def test_abstopk_rounding_rules():
    assert [abstopk_k(0.25, w, "round") for w in (2, 6, 10)] == [1, 2, 2]  # round half to even, at least 1
    assert [abstopk_k(0.25, w, "floor") for w in (2, 6, 10)] == [0, 1, 2]
    assert [abstopk_k(0.25, w, "floor_min1") for w in (2, 6, 10)] == [1, 1, 2]
    x = torch.tensor([[3.0, -5.0, 1.0, 0.5]])
    assert abs_topk(x, 0.2, "floor").eq(0).all()  # k = 0 keeps nothing, as OpenAI's does
    assert torch.equal(abs_topk(x, 0.2, "floor_min1"), torch.tensor([[0.0, -5.0, 0.0, 0.0]]))


def test_resid_covers_the_four_residual_sites():
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (2, 9))
    base = dict(vocab_size=50, n_layer=2, d_model=32, abstopk_frac=0.5)
    together = SparseGPT(ModelConfig(**base, abstopk_sites=("resid",)))
    split = SparseGPT(ModelConfig(**base, abstopk_sites=("resid_embed", "resid_mid", "resid_post", "resid_final")))
    split.load_state_dict(together.state_dict())
    without_final = SparseGPT(ModelConfig(**base, abstopk_sites=("resid_embed", "resid_mid", "resid_post")))
    without_final.load_state_dict(together.state_dict())
    with torch.no_grad():
        assert torch.equal(together(tokens), split(tokens))
        assert not torch.equal(together(tokens), without_final(tokens))


def test_layout_follows_mlp_width_and_options():
    cfg = ModelConfig(vocab_size=40, n_layer=2, d_model=32, mlp_width=48, activation="relu", unembed_bias="none")
    model = SparseGPT(cfg)
    assert NodeLayout(model).n_nodes == 2 * (7 * 32 + 48)
    assert model.unembed.bias is None and model.blocks[0].mlp.W_in.weight.shape == (48, 32)
    with pytest.raises(ValueError, match="norm_eps"):
        ModelConfig(vocab_size=40, norm_eps="float")
    with pytest.raises(ValueError, match="abstopk_rounding"):
        ModelConfig(vocab_size=40, abstopk_rounding="ceil")
