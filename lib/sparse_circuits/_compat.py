"""Old import paths keep working for one release, with a warning that names the new home.

Up to 0.1 the package was 31 flat modules (``sparse_circuits.prune``, ``sparse_circuits.inspector``, ...). They
now live in subpackages that read as the pipeline (see docs/architecture.md). ``MOVED`` lists, for every old
module, the modules its names went to; importing the old module gives a stand-in whose ``__getattr__`` finds
the name there and warns (a ``DeprecationWarning``), so users' notebooks keep running while they update.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

PACKAGE = __name__.rpartition(".")[0]

# old module -> new modules (relative to the package) that hold its names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "paths": ("core.paths",),
    "checkpoint": ("model.checkpoint", "core.storage"),
    "data": ("data.batches", "core.seeds"),
    "corpus": ("data.words", "data.generator", "data.statistics", "data.sources"),
    "tokenizer": ("data.tokenizer",),
    "hooks": ("model.hooks",),
    "model": ("model.gpt", "core.config"),
    "inference": ("model.inference",),
    "sparsity": ("training.sparsity", "model.inference"),
    "train": ("training.trainer", "model.inference", "core.device"),
    "masking": ("circuits.masking", "circuits.layout"),
    "ablation": ("circuits.ablation",),
    "circuit": ("circuits.circuit", "circuits.graph"),
    "prune": ("pruning.pruner", "circuits.masking", "app.cli"),
    "sweep": ("pruning.sweep", "app.cli"),
    "pareto": ("pruning.frontier",),
    "faithfulness": ("analysis.faithfulness", "analysis.compare"),
    "generalization": ("analysis.generalization", "analysis.faithfulness"),
    "controls": ("analysis.controls",),
    "mechanism": ("analysis.mechanism", "viz.mechanism_figures", "app.experiments", "app.verdicts"),
    "walkthrough": ("analysis.walkthrough", "viz.walkthrough_figures", "app.verdicts"),
    "inspector": (
        "viz.inspector",
        "viz.graph_plot",
        "analysis.compare",
        "analysis.inspection",
        "circuits.graph",
        "circuits.layout",
        "circuits.ablation",
        "circuits.evaluate",
        "viz.html",
        "viz.graph_layout",
        "app.cli",
    ),
    "graph_plot": ("viz.graph_plot", "viz.html"),
    "widgets": ("viz.widgets",),
    "plots": ("viz.figures",),
    "cli": ("app.cli",),
    "notebooks": ("app.notebooks",),
    "report": ("app.report",),
}


def resolve(old: str, name: str, stacklevel: int = 3):
    """The object ``name`` of the old module ``old``, from its new home (with a DeprecationWarning)."""
    if name.startswith("__"):
        raise AttributeError(name)
    for new in MOVED[old]:
        module = importlib.import_module(f"{PACKAGE}.{new}")
        if name in vars(module):
            warnings.warn(
                f"{PACKAGE}.{old}.{name} moved to {PACKAGE}.{new}.{name}; the old path will be removed in the next release",
                DeprecationWarning,
                stacklevel=stacklevel,
            )
            return vars(module)[name]
    homes = ", ".join(f"{PACKAGE}.{m}" for m in MOVED[old])
    raise AttributeError(f"module '{PACKAGE}.{old}' has no attribute {name!r} (its names moved to {homes})")


def module_getattr(old: str):
    """A module-level ``__getattr__`` resolving the names that left module ``old``."""
    return lambda name: resolve(old, name)


class _OldModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import sparse_circuits.prune`` give a stand-in module that forwards to the new homes."""

    def find_spec(self, fullname, path=None, target=None):
        parent, _, leaf = fullname.rpartition(".")
        if parent == PACKAGE and leaf in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module) -> None:
        old = module.__name__.rpartition(".")[2]
        module.__doc__ = f"Moved: the names of {module.__name__} now live in " + ", ".join(
            f"{PACKAGE}.{m}" for m in MOVED[old]
        )
        module.__getattr__ = module_getattr(old)


def install() -> None:
    """Register the finder once, after the regular ones, so real modules always win."""
    if not any(isinstance(f, _OldModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_OldModuleFinder())
