"""The package's shape: a one-way pipeline of subpackages, no import cycles, old import paths still working."""

import importlib
import warnings
from pathlib import Path

import grimp
import pytest
import sparse_circuits
from sparse_circuits import _compat

PACKAGE_DIR = Path(sparse_circuits.__file__).parent
# Pure data (word lists, templates) may be long; code modules stay short enough to read in one sitting.
LONG_DATA_MODULES = {"data/words.py"}
MAX_MODULE_LINES = 550


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("sparse_circuits", cache_dir=None)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    succ = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in modules}
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif nxt not in index:
                index[nxt] = low[nxt] = counter[0]
                counter[0] += 1
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(succ[nxt])))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
    return out


def test_no_import_cycles_among_package_modules(graph):
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    class Fake:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[m]

    assert _cycles(Fake()) == [["a", "b"]]


def test_modules_stay_short():
    long = {
        str(p.relative_to(PACKAGE_DIR)): n
        for p in PACKAGE_DIR.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert set(long) <= LONG_DATA_MODULES, long


@pytest.mark.parametrize("old", sorted(_compat.MOVED))
def test_every_old_module_path_still_imports(old):
    module = importlib.import_module(f"sparse_circuits.{old}")
    assert module is not None


def test_old_import_path_warns_and_gives_the_same_object():
    from sparse_circuits.pruning.pruner import PruneConfig

    with pytest.warns(
        DeprecationWarning, match=r"sparse_circuits\.prune\.PruneConfig moved to sparse_circuits\.pruning"
    ):
        from sparse_circuits.prune import PruneConfig as old  # noqa: F401
    assert old is PruneConfig


def test_old_attribute_access_warns():
    with pytest.warns(DeprecationWarning):
        cls = sparse_circuits.circuit.Circuit
    assert cls.__name__ == "Circuit"


def test_unknown_name_in_old_module_is_a_clear_error():
    old = importlib.import_module("sparse_circuits.prune")
    with pytest.raises(AttributeError, match="moved to sparse_circuits.pruning"):
        old.no_such_name  # noqa: B018


def test_new_paths_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        from sparse_circuits.model import ModelConfig, SparseGPT  # noqa: F401
        from sparse_circuits.tasks import get_task  # noqa: F401
