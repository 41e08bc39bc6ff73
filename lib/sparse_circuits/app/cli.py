"""Command line: ``sparse-circuits {train,sample,info,evaluate,prune,sweep,export-html,faithfulness,import}`` (also
``python -m sparse_circuits``).

Every command is a thin wrapper: it parses options, calls the library function that does the work and prints
the result. Options that set a config field (training, pruning) are generated from the config dataclass, so a
default is written once, next to the field it belongs to.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path

import torch

from ..analysis.suite import FaithfulnessConfig, faithfulness_report
from ..circuits.ablation import ABLATIONS
from ..circuits.circuit import Circuit
from ..core import storage
from ..core.config import add_config_arguments, config_fields, given_arguments
from ..core.device import default_device
from ..model import sparse_exec
from ..model.inference import load, model_info, sample
from ..model.reference import DRORI_PATHS, FORMATS, import_model
from ..pruning.pruner import ADVERSARY_LOSSES, OBJECTIVES, STOCHASTIC_Z, PruneConfig, prune
from ..pruning.sweep import SEARCH_SPACE, sweep
from ..pruning.tuned import (
    IDENTITY,
    PRUNING_CONFIGS_DIR,
    tuned_config_from_sweep,
    tuned_config_path,
    tuned_prune_config,
    write_tuned_config,
)
from ..tasks import SPLITS, evaluate, get_task, task_names
from ..training.trainer import RunConfig, TrainConfig, Trainer
from ..viz.html import circuit_to_html


def _device(name: str | None) -> torch.device:
    if not name:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return device


def _count(text: str) -> int:
    """An option's value that counts something: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _print_result(res: dict, as_json: bool) -> None:
    """One JSON line (``--json``), else the same object indented for reading."""
    print(json.dumps(res) if as_json else json.dumps(res, indent=2))


def _circuit_summary(circuit: Circuit, *meta: str) -> dict:
    """Size and loss of a pruned circuit (and the named ``meta`` entries first), as the commands print them."""
    return {
        **{key: circuit.meta[key] for key in meta},
        "nodes": circuit.n_nodes,
        "edges": circuit.n_edges,
        "loss": circuit.meta["loss"],
        "reached_target": circuit.meta["reached_target"],
    }


# ------------------------------------------------------------------------------------------ commands


def cmd_train(args) -> int:
    run = RunConfig.load(args.config)
    run.train = dataclasses.replace(run.train, **given_arguments(args, TrainConfig))
    res = Trainer(run, args.out, _device(args.device), execution=args.execution).run(progress=not args.quiet)
    print(json.dumps(res))
    return 0


def cmd_sample(args) -> int:
    model, tok, _ = load(args.model_dir, _device(args.device))
    for i in range(args.n):
        print(sample(model, tok, args.prompt, args.max_new_tokens, args.temperature, seed=args.seed + i))
    return 0


def cmd_info(args) -> int:
    info = model_info(args.model_dir, val_batches=args.val_batches)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {v}")
    return 0


def cmd_evaluate(args) -> int:
    model, tok, _ = load(args.model_dir)
    task = get_task(args.task)
    res = {"task": task.name, "split": args.split, **evaluate(model, task.data(args.split, tok, args.n), task.loss)}
    print(json.dumps(res) if args.json else "\n".join(f"{k:>15}: {v}" for k, v in res.items()))
    return 0


def cmd_prune(args) -> int:
    with _output_dir(args.out):
        return _prune(args)


def _output_dir(out: str | None):
    """The lock of a fresh ``--out`` directory (refused at once if busy, a file or already holding files)."""
    return storage.output_lock(out, fresh=True) if out else contextlib.nullcontext()


def _model_name(args, config: dict) -> str:
    """The model's recorded name (its directory's name if it has none): what tuned configs are filed under."""
    return config.get("name") or Path(args.model_dir).resolve().name


def _config_root(flag: bool, directory: str | None) -> str | None:
    """Where tuned configs are read or written: ``directory`` if given, the repository's ``configs/pruning`` when
    only the flag was, None for neither. (A flag with an optional value would swallow a following positional.)"""
    return directory or (str(PRUNING_CONFIGS_DIR) if flag else None)


def _prune_config(args, model_name: str, task) -> PruneConfig:
    """The PruneConfig of ``prune``: the options; with ``--tuned`` the tuned config of (model, task, ablation,
    frozen_ln), with the options given on the command line overriding it."""
    options = given_arguments(args, PruneConfig)
    root = _config_root(args.tuned, args.tuned_dir)
    if root is None:
        return PruneConfig(**options)
    explicit = {k: v for k, v in options.items() if k in args.given_fields and k not in IDENTITY}
    return tuned_prune_config(
        model_name, task.name, args.ablation, args.frozen_ln, root=root, required=True, **explicit
    )


def _prune(args) -> int:
    model, tok, config = load(args.model_dir)
    task = get_task(args.task)
    name = _model_name(args, config)
    cfg = _prune_config(args, name, task)
    seeds = list(range(args.seed, args.seed + args.seeds))
    start = time.perf_counter()
    circuits = prune(model, tok, task, cfg, seeds=seeds, progress=not args.json, model_name=name)
    wall_time = time.perf_counter() - start
    if args.out:
        for c in circuits:
            c.save(Path(args.out) / f"seed{c.meta['seed']}", model)
    res = {
        "task": task.name,
        "ablation": cfg.ablation,
        "frozen_ln": cfg.frozen_ln,
        "tuned": _config_root(args.tuned, args.tuned_dir) is not None,
        "k_coef": cfg.k_coef,
        "lr": cfg.lr,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "total_nodes": circuits[0].total_nodes,
        "target_loss": cfg.target_loss,
        "wall_time_s": round(wall_time, 3),
        "seeds": [_circuit_summary(c, "seed") for c in circuits],
    }
    _print_result(res, args.json)
    return 0


def cmd_sweep(args) -> int:
    with _output_dir(args.out):
        return _sweep(args)


def _sweep(args) -> int:
    model, tok, config = load(args.model_dir)
    cfg = PruneConfig(**given_arguments(args, PruneConfig))
    task = get_task(args.task)
    name, quiet = _model_name(args, config), args.json
    root = _config_root(args.write_config, args.config_dir)
    if root is not None:  # refuse an unusable target before the compute, not after
        target = tuned_config_path(name, task.name, cfg.ablation, cfg.frozen_ln, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not target.is_file():
            raise IsADirectoryError(f"--write-config: {target} exists and is not a file")
    best = sweep(
        model,
        tok,
        task,
        cfg,
        args.trials,
        args.parallel,
        args.seed,
        model_name=name,
        progress=not quiet,
        checkpoint_dir=args.checkpoint_dir,
    )
    if args.out:
        best.save(Path(args.out), model)
    found = best.meta["sweep"]
    res = {
        "task": task.name,
        "ablation": cfg.ablation,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "best_params": found["best_params"],
        **_circuit_summary(best),
        "n_trials": found["n_trials"],
        "wall_time_s": round(found["wall_time_s"], 3),
    }
    if root is not None:
        res["config"] = str(write_tuned_config(tuned_config_from_sweep(best, name), root))
    _print_result(res, args.json)
    return 0


def cmd_export_html(args) -> int:
    model, tok, _ = load(args.model)
    circuit = Circuit.load(args.circuit_dir)
    # the circuit's recorded ablation; mean values come from the model's own corpus (``load`` records it)
    print(
        circuit_to_html(
            model, tok, circuit, args.out, split=args.split, n_prompts=args.n_prompts, initial_node=args.initial_node
        )
    )
    return 0


def cmd_faithfulness(args) -> int:
    model, tok, _ = load(args.model)
    circuit = Circuit.load(args.circuit_dir)
    _print_result(
        faithfulness_report(model, tok, circuit, FaithfulnessConfig(**given_arguments(args, FaithfulnessConfig))),
        args.json,
    )
    return 0


# --------------------------------------------------------------------------------------------- parser


def cmd_import(args) -> int:
    source = import_model(args.format, args.src_dir, args.out, tokenizer=args.tokenizer, drori_path=args.drori_path)
    _print_result({"out": args.out, **source}, args.json)
    return 0


class _GivenValue(argparse.Action):
    """Stores an option's value and notes its field in ``given_fields``: set on the command line, not defaulted."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given_fields = namespace.given_fields | {self.dest}


class _GivenFlag(argparse.BooleanOptionalAction):
    """``--x/--no-x``, noting its field in ``given_fields`` as ``_GivenValue`` does."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        namespace.given_fields = namespace.given_fields | {self.dest}


def _add_prune_options(p: argparse.ArgumentParser, searched: tuple[str, ...] = ()) -> None:
    """Options shared by ``prune`` and ``sweep``: the model, the task, and every PruneConfig field not searched
    (each noted in ``args.given_fields`` when given, so that ``prune --tuned`` knows which ones override)."""
    p.add_argument("model_dir")
    p.add_argument(
        "--task", required=True, help=f"one of {task_names()} or the path of a task spec file (YAML or JSON)"
    )
    choices = {name: {"choices": SPLITS} for name in ("train_split", "eval_split")}
    choices.update(
        ablation={"choices": ABLATIONS},
        objective={"choices": OBJECTIVES},
        stochastic_z={"choices": STOCHASTIC_Z},
        adversary_loss={"choices": ADVERSARY_LOSSES},
    )
    for f in config_fields(PruneConfig):
        action = _GivenFlag if typing.get_type_hints(PruneConfig)[f.name] is bool else _GivenValue
        choices[f.name] = {**choices.get(f.name, {}), "action": action}
    add_config_arguments(p, PruneConfig, exclude=searched, overrides=choices)
    p.set_defaults(given_fields=frozenset())
    p.add_argument("--out", help="directory to save the circuit(s) in")
    p.add_argument("--json", action="store_true", help="one JSON object, no progress bar")


def build_parser() -> argparse.ArgumentParser:
    description = "Train weight-sparse transformers, prune them to task circuits, inspect them."
    p = argparse.ArgumentParser(prog="sparse-circuits", description=description)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a model from a config file")
    t.add_argument("--config", required=True, help="run config (YAML or JSON), e.g. configs/sparse-d128.yaml")
    t.add_argument("--out", required=True, help="model directory to write (resumes if it holds a checkpoint)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--execution",
        choices=sparse_exec.MODES,
        default="auto",
        help="sparse matmuls for the sparsified weights: auto (where the measured rule says they pay), dense, sparse",
    )
    overrides = t.add_argument_group("overrides of the config file's train section")
    add_config_arguments(overrides, TrainConfig, keep_unset=True)
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="sample continuations of a prompt")
    s.add_argument("model_dir")
    s.add_argument("--prompt", required=True)
    s.add_argument("--n", type=_count, default=1)
    s.add_argument("--max-new-tokens", type=_count, default=40)
    s.add_argument("--temperature", type=float, default=0.8, help="0 for greedy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.set_defaults(fn=cmd_sample)

    i = sub.add_parser("info", help="describe a model directory (held-out loss recomputed)")
    i.add_argument("model_dir")
    i.add_argument("--json", action="store_true", help="one JSON object")
    i.add_argument("--val-batches", type=_count, default=8)
    i.set_defaults(fn=cmd_info)

    e = sub.add_parser("evaluate", help="accuracy, p_correct and loss of a model on a task split")
    e.add_argument("model_dir")
    e.add_argument(
        "--task", required=True, help=f"one of {task_names()} or the path of a task spec file (YAML or JSON)"
    )
    e.add_argument("--split", default="test", choices=SPLITS)
    e.add_argument("--n", type=_count, default=None, help="number of prompts (default: the whole split pool)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=cmd_evaluate)

    pr = sub.add_parser("prune", help="prune a model to task circuits (several seeds in one batched run)")
    _add_prune_options(pr)
    pr.add_argument("--seed", type=int, default=0, help="first seed")
    pr.add_argument("--seeds", type=_count, default=1, help="number of seeds, pruned together")
    pr.add_argument(
        "--tuned",
        action="store_true",
        help="start from the tuned config of (model, task, ablation, frozen-ln) (an error if there is none); options "
        "given here override it (docs/pruning-configs.md)",
    )
    pr.add_argument(
        "--tuned-dir",
        metavar="DIR",
        help=f"read tuned configs from DIR instead of {PRUNING_CONFIGS_DIR} (implies --tuned)",
    )
    pr.set_defaults(fn=cmd_prune)

    sw = sub.add_parser("sweep", help="Optuna search of pruning hyperparameters (objective: nodes at the target loss)")
    _add_prune_options(sw, searched=tuple(SEARCH_SPACE))
    sw.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the runs' seeds")
    sw.add_argument("--trials", type=_count, default=32)
    sw.add_argument("--parallel", type=_count, default=8, help="trials evaluated together in one batched run")
    sw.add_argument(
        "--write-config",
        action="store_true",
        help="write the best values as a tuned config, <dir>/<model>/<task>-<ablation>[-frozen].yaml (replaces an "
        "older one; docs/pruning-configs.md)",
    )
    sw.add_argument(
        "--config-dir",
        metavar="DIR",
        help=f"write the tuned config under DIR instead of {PRUNING_CONFIGS_DIR} (implies --write-config)",
    )
    sw.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="keep every finished round of trials in DIR and resume from it after a kill: the same command "
        "again prunes only the rounds that never finished (a checkpoint of other settings is refused)",
    )
    sw.set_defaults(fn=cmd_sweep)

    x = sub.add_parser("export-html", help="write a circuit's inspector as one self-contained HTML file")
    x.add_argument("circuit_dir", help="directory written by circuit.save (circuit.json, circuit.safetensors)")
    x.add_argument("--model", required=True, help="model directory the circuit was pruned from")
    x.add_argument("--out", required=True, help="HTML file to write")
    x.add_argument("--split", default="test", choices=SPLITS, help="task prompts to show")
    x.add_argument("--n-prompts", type=_count, default=8)
    x.add_argument("--initial-node", default=None, help="node label the page opens on, e.g. L1.attn_out.12")
    x.set_defaults(fn=cmd_export_html)

    fa = sub.add_parser("faithfulness", help="the faithfulness metric suite of a circuit, as one report")
    fa.add_argument("circuit_dir", help="directory written by circuit.save (circuit.json, circuit.safetensors)")
    fa.add_argument("--model", required=True, help="model directory the circuit was pruned from")
    fa.add_argument("--json", action="store_true", help="one JSON line")
    ablation_choices = {"ablation": {"choices": ABLATIONS}, "ablations": {"choices": ABLATIONS}}
    add_config_arguments(fa, FaithfulnessConfig, overrides=ablation_choices)
    fa.set_defaults(fn=cmd_faithfulness)

    im = sub.add_parser("import", help="convert a released reference checkpoint into a model directory")
    im.add_argument("format", choices=FORMATS, help="openai (circuit_sparsity) or drori (sparse_pretrain)")
    im.add_argument("src_dir", help="the reference's model directory")
    im.add_argument("--out", required=True, help="model directory to write")
    im.add_argument(
        "--tokenizer",
        help="tokenizer.json (or its directory), or a directory with vocab.bpe + encoder.json; needed by every "
        "command that reads text",
    )
    im.add_argument(
        "--drori-path",
        default="forward",
        choices=DRORI_PATHS,
        help="which of Drori's forward passes to reproduce: forward, train (forward_with_bridge_sites) or loader",
    )
    im.add_argument("--json", action="store_true", help="one JSON line")
    im.set_defaults(fn=cmd_import)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (OSError, ValueError, KeyError) as e:  # OSError: missing file, permission denied (with the path), disk full
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) would add quotes
        print(f"sparse-circuits {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
