"""Command line: ``sparse-circuits {train,sample,info,...}`` (also ``python -m sparse_circuits``)."""

from __future__ import annotations

import argparse
import json
import sys

import torch


def _device(name: str | None) -> torch.device:
    from ..core.device import default_device

    return torch.device(name) if name else default_device()


def cmd_train(args) -> int:
    from ..training.trainer import RunConfig, Trainer

    run = RunConfig.load(args.config)
    if args.steps is not None:
        run.train.steps = args.steps
    res = Trainer(run, args.out, _device(args.device)).run(progress=not args.quiet)
    print(json.dumps(res))
    return 0


def cmd_sample(args) -> int:
    from ..model.inference import load, sample

    model, tok, _ = load(args.model_dir, _device(args.device))
    for i in range(args.n):
        text = sample(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      seed=args.seed + i)  # fmt: skip
        print(text)
    return 0


def cmd_info(args) -> int:
    from ..model.inference import model_info

    info = model_info(args.model_dir, val_batches=args.val_batches)
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparse-circuits", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a model from a config file")
    t.add_argument("--config", required=True, help="run config (YAML or JSON), e.g. configs/sparse-d128.yaml")
    t.add_argument("--out", required=True, help="model directory to write (resumes if it holds a checkpoint)")
    t.add_argument("--steps", type=int, help="override train.steps")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="sample continuations of a prompt")
    s.add_argument("model_dir")
    s.add_argument("--prompt", required=True)
    s.add_argument("--n", type=int, default=1)
    s.add_argument("--max-new-tokens", type=int, default=40)
    s.add_argument("--temperature", type=float, default=0.8, help="0 for greedy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.set_defaults(fn=cmd_sample)

    i = sub.add_parser("info", help="describe a model directory (held-out loss recomputed)")
    i.add_argument("model_dir")
    i.add_argument("--json", action="store_true", help="one JSON object")
    i.add_argument("--val-batches", type=int, default=8)
    i.set_defaults(fn=cmd_info)

    for extra in _extra_commands():
        extra(sub)
    return p


def _extra_commands():
    """Subcommands defined next to their logic register here."""
    from .. import tasks
    from ..pruning import pruner as prune
    from ..pruning import sweep
    from ..viz import inspector

    return [tasks.add_cli, prune.add_cli, sweep.add_cli, inspector.add_cli]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"sparse-circuits {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
