"""Tuned pruning configs: the best hyperparameters of a sweep (``pruning.sweep``) per (model, task, ablation),
stored as YAML under ``configs/pruning/`` and loaded back as a ``PruneConfig`` (docs/pruning-configs.md).

One file per (model, task, ablation, frozen norm): ``<root>/<model>/<task>-<ablation>[-frozen].yaml``. It holds
the searched fields with their best values (``tuned``), every other ``PruneConfig`` field as the sweep ran it
(``fixed``) and the sweep's provenance (``sweep``: trials, best objective, wall time, date, version). Reading is
strict: an unknown key, a wrong type or a file made for another model, task or ablation is an error naming the
file. A loaded config is ``PruneConfig(**fixed, **tuned, **overrides)``: explicit overrides win.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.config import PYTHON_ONLY, check_numbers, config_fields, strict_from_dict
from ..core.paths import CONFIGS_DIR
from ..core.storage import atomic_write_text, git_commit
from ..core.version import __version__
from ..tasks import ALIASES
from .pruner import PruneConfig
from .sweep import SEARCH_SPACE, trial_seed

PRUNING_CONFIGS_DIR = CONFIGS_DIR / "pruning"
"""Where tuned pruning configs live unless a ``root`` is given (``configs/pruning`` of the repository)."""
IDENTITY = ("ablation", "frozen_ln")
"""PruneConfig fields that choose the file (with model and task), so neither ``fixed`` nor an override sets them."""
SUFFIX = ".yaml"


class TunedConfigError(ValueError):
    """A tuned pruning config file is malformed, holds unknown keys or was made for another (model, task, ablation)."""


@dataclass
class TrialRecord:
    """One trial of the sweep, as the file lists it."""

    trial: int
    k_coef: float
    lr: float
    nodes: int
    reached_target: bool
    objective: float

    def __post_init__(self) -> None:
        check_numbers(self, integers=("trial", "nodes"), positive=("lr",), non_negative=("k_coef", "objective"))


@dataclass
class SweepRecord:
    """Where the tuned values came from."""

    n_trials: int
    parallel: int
    seed: int
    """Seed of the sampler; trial t prunes with seed ``sweep.trial_seed(seed, t)`` (seed * 100000 + t)."""
    sampler: str
    search_space: dict
    best_trial: int
    best_objective: float
    """Nodes of the best circuit when it reached the target loss, else total_nodes * (1 + loss)."""
    best_nodes: int
    best_loss: float
    reached_target: bool
    total_nodes: int
    wall_time_s: float
    """Wall time of the sweep's pruning runs (model loading excluded)."""
    date: str
    package_version: str
    git_commit: str | None = None
    trials: list = field(default_factory=list)

    @property
    def best_seed(self) -> int:
        """The pruning seed of the best trial: pruning with it and the tuned values re-finds the best circuit (up to
        float rounding: the sweep pruned it in a batch of ``parallel`` runs)."""
        return trial_seed(self.seed, self.best_trial)

    def __post_init__(self) -> None:
        check_numbers(
            self,
            counts=("n_trials", "parallel", "total_nodes"),
            integers=("best_trial", "best_nodes"),
            non_negative=("best_objective", "best_loss", "wall_time_s"),
        )
        if not isinstance(self.trials, list):
            raise ValueError(f"sweep.trials must be a list, got {type(self.trials).__name__}")
        self.trials = [
            dataclasses.asdict(strict_from_dict(TrialRecord, t, what=f"sweep.trials[{i}]"))
            for i, t in enumerate(self.trials)
        ]


@dataclass
class TunedConfig:
    """The contents of one tuned pruning config file."""

    model: str
    task: str
    ablation: str
    frozen_ln: bool
    tuned: dict
    """The searched PruneConfig fields with their best values (k_coef, lr)."""
    fixed: dict
    """Every other PruneConfig field (but ablation and frozen_ln) as the sweep ran it."""
    sweep: SweepRecord
    path: Path | None = field(default=None, metadata=PYTHON_ONLY)

    def __post_init__(self) -> None:
        for name in ("model", "task"):
            _check_name(getattr(self, name), name)
        if not isinstance(self.frozen_ln, bool):
            raise ValueError(f"frozen_ln must be true or false, got {self.frozen_ln!r}")
        for name, allowed in (("tuned", set(SEARCH_SPACE)), ("fixed", _fixed_fields())):
            section = getattr(self, name)
            if not isinstance(section, dict):
                raise ValueError(f"{name} must be a mapping, got {type(section).__name__}")
            unknown = sorted(set(section) - allowed)
            if unknown:
                raise ValueError(f"unknown {name} fields {unknown}; allowed: {sorted(allowed)}")
        if not isinstance(self.sweep, SweepRecord):
            raise ValueError(f"sweep must be a mapping, got {type(self.sweep).__name__}")
        self.prune_config()  # the values themselves are PruneConfig's to check

    def prune_config(self, **overrides) -> PruneConfig:
        """The PruneConfig the sweep found best; ``overrides`` (any field but ablation and frozen_ln) win."""
        fixed_identity = sorted(set(overrides) & set(IDENTITY))
        if fixed_identity:
            raise ValueError(f"{fixed_identity} choose the tuned config and cannot be overridden")
        d = {"ablation": self.ablation, "frozen_ln": self.frozen_ln, **self.fixed, **self.tuned, **overrides}
        return strict_from_dict(PruneConfig, d)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in config_fields(TunedConfig) if f.name != "sweep"} | {
            "sweep": dataclasses.asdict(self.sweep)
        }


def _fixed_fields() -> set[str]:
    return {f.name for f in config_fields(PruneConfig)} - set(IDENTITY) - set(SEARCH_SPACE)


def _check_name(value, what: str) -> str:
    """A model or task name that can be one part of a path."""
    if not isinstance(value, str) or not value or value.startswith(".") or "/" in value or "\\" in value:
        raise ValueError(f"{what} name {value!r} cannot name a tuned config file (empty, dotted or a path)")
    return value


def _task_name(task) -> str:
    name = task if isinstance(task, str) else task.name
    return ALIASES.get(name, name)


def tuned_config_path(model: str, task, ablation: str, frozen_ln: bool = False, root: str | Path | None = None) -> Path:
    """``<root>/<model>/<task>-<ablation>[-frozen].yaml``; ``task`` is a name or a Task, ``root`` defaults to
    ``PRUNING_CONFIGS_DIR``."""
    root = Path(root) if root is not None else PRUNING_CONFIGS_DIR
    stem = f"{_check_name(_task_name(task), 'task')}-{_check_name(ablation, 'ablation')}" + (
        "-frozen" if frozen_ln else ""
    )
    return root / _check_name(model, "model") / (stem + SUFFIX)


def read_tuned_config(path: str | Path) -> TunedConfig:
    """Read and validate one file; any problem is a ``TunedConfigError`` naming it (missing: FileNotFoundError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tuned pruning config not found: {path}")
    try:
        d = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split())
        raise TunedConfigError(f"{path}: not valid YAML: {reason}") from e
    try:
        config = strict_from_dict(TunedConfig, d, what="tuned pruning config")
    except (TypeError, ValueError) as e:
        raise TunedConfigError(f"{path}: {e}") from e
    config.path = path
    return config


def load_tuned_config(
    model: str, task, ablation: str, frozen_ln: bool = False, root: str | Path | None = None
) -> TunedConfig | None:
    """The tuned config of (model, task, ablation, frozen_ln), or None when there is none; a file made for
    another combination (copied or renamed by hand) is refused."""
    path = tuned_config_path(model, task, ablation, frozen_ln, root)
    if not path.exists():
        return None
    config = read_tuned_config(path)
    wanted = (model, _task_name(task), ablation, frozen_ln)
    found = (config.model, config.task, config.ablation, config.frozen_ln)
    if found != wanted:
        keys = ("model", "task", "ablation", "frozen_ln")
        raise TunedConfigError(
            f"{path} is the tuned config of {dict(zip(keys, found))}, not of the requested {dict(zip(keys, wanted))}"
        )
    return config


def tuned_prune_config(
    model: str,
    task,
    ablation: str,
    frozen_ln: bool = False,
    root: str | Path | None = None,
    *,
    required: bool = False,
    **overrides,
) -> PruneConfig | None:
    """The PruneConfig tuned for (model, task, ablation, frozen_ln), with ``overrides`` applied on top.

    Without a file: None, so a caller picks its fallback (``tuned_prune_config(...) or PruneConfig(ablation=...)``);
    with ``required`` a FileNotFoundError naming the expected path instead."""
    config = load_tuned_config(model, task, ablation, frozen_ln, root)
    if config is None:
        if required:
            path = tuned_config_path(model, task, ablation, frozen_ln, root)
            raise FileNotFoundError(
                f"no tuned pruning config for model {model!r}, task {_task_name(task)!r}, ablation {ablation!r}"
                f"{' (frozen_ln)' if frozen_ln else ''}: expected {path} (written by `sparse-circuits sweep ... "
                "--write-config`)"
            )
        return None
    try:
        return config.prune_config(**overrides)
    except (TypeError, ValueError) as e:
        raise ValueError(f"overriding {config.path}: {e}") from e


def has_tuned_config(model: str, task, ablation: str, frozen_ln: bool = False, root: str | Path | None = None) -> bool:
    """Whether a tuned config file exists for the combination (not whether it is valid)."""
    return tuned_config_path(model, task, ablation, frozen_ln, root).is_file()


def list_tuned_configs(root: str | Path | None = None, model: str | None = None) -> list[TunedConfig]:
    """Every tuned config under ``root`` (of one ``model`` if given), read and validated, sorted by path."""
    root = Path(root) if root is not None else PRUNING_CONFIGS_DIR
    pattern = f"{_check_name(model, 'model')}/*{SUFFIX}" if model else f"*/*{SUFFIX}"
    return [read_tuned_config(p) for p in sorted(root.glob(pattern))]


def tuned_config_from_sweep(best, model: str | None = None) -> TunedConfig:
    """The tuned config of a sweep's best circuit (its ``meta["sweep"]`` and ``meta["prune_config"]``)."""
    meta = best.meta
    if "sweep" not in meta:
        raise ValueError("the circuit holds no sweep record (it was not returned by pruning.sweep.sweep)")
    found = meta["sweep"]
    model = model or meta.get("model")
    if not model:
        raise ValueError("the model's name is needed to file its tuned config")
    searched = list(found["search_space"])
    ran = {k: v for k, v in meta["prune_config"].items() if k not in IDENTITY and k not in searched}
    best_trial = min(found["trials"], key=lambda t: t["objective"])  # the first of equals, as sweep keeps
    record = SweepRecord(
        n_trials=found["n_trials"],
        parallel=found["parallel"],
        seed=found["seed"],
        sampler=found["sampler"],
        search_space={k: list(v) for k, v in found["search_space"].items()},
        best_trial=best_trial["trial"],
        best_objective=float(found["best_value"]),
        best_nodes=int(best.n_nodes),
        best_loss=float(meta["loss"]),
        reached_target=bool(meta["reached_target"]),
        total_nodes=int(best.total_nodes),
        wall_time_s=round(float(found["wall_time_s"]), 3),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        package_version=__version__,
        git_commit=git_commit(),
        trials=[{key: t[key] for key in (f.name for f in dataclasses.fields(TrialRecord))} for t in found["trials"]],
    )
    return TunedConfig(
        model=model,
        task=meta["task"],
        ablation=meta["ablation"],
        frozen_ln=bool(meta["frozen_ln"]),
        tuned={k: float(meta[k]) for k in searched},
        fixed=ran,
        sweep=record,
    )


class _Flow:
    """A list or mapping written on one line (a trial, a search range)."""

    def __init__(self, value) -> None:
        self.value = value


class _Dumper(yaml.SafeDumper):
    """Block style, but ``_Flow`` values on one line."""


def _represent_flow(dumper: yaml.SafeDumper, flow: _Flow):
    if isinstance(flow.value, dict):
        return dumper.represent_mapping("tag:yaml.org,2002:map", flow.value, flow_style=True)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", flow.value, flow_style=True)


_Dumper.add_representer(_Flow, _represent_flow)


def write_tuned_config(config: TunedConfig, root: str | Path | None = None) -> Path:
    """Write ``config`` (atomically, replacing an older one) to its path under ``root``; returns the path."""
    path = tuned_config_path(config.model, config.task, config.ablation, config.frozen_ln, root)
    if path.exists() and not path.is_file():
        raise IsADirectoryError(f"{path} exists and is not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Tuned pruning config of {config.model}, task {config.task}, ablation {config.ablation}"
        f"{', frozen norms' if config.frozen_ln else ''}: written by `sparse-circuits sweep --write-config`,\n"
        "# loaded by `sparse-circuits prune --tuned` and pruning.tuned.tuned_prune_config (docs/pruning-configs.md).\n"
    )
    d = config.to_dict()
    d["sweep"]["search_space"] = {k: _Flow(v) for k, v in d["sweep"]["search_space"].items()}
    d["sweep"]["trials"] = [_Flow(t) for t in d["sweep"]["trials"]]
    body = yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=120)
    atomic_write_text(path, header + body)
    config.path = path
    return path
