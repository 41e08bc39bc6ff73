"""Sparse execution of weight-sparse matrices: each sparsified nn.Linear runs as a CSR matmul where that pays.

A weight-sparse model keeps most weights exactly zero, yet ``nn.Linear`` multiplies by every one of them. With
frozen weights (pruning, mask evaluation, activation caching, analyses) each Linear can instead multiply by a
compressed-sparse-row copy of its weight, taken once:

    Y = X W^T + b   as   Y^T = b + W_csr @ X^T          X [R, in] (leading dims flattened), W [out, in]
    dX = dY W       as   dX^T = (W^T)_csr @ dY^T        the input gradient, through the transpose's own CSR

Whether a Linear runs dense or sparse is a deterministic rule of (density, shape, rows, device) (``use_sparse``),
never a timing at run time, so that a run gives bitwise the same numbers every time. The thresholds come from
``bench/bench_sparse.py`` (numbers in the comment below). ``sparse_execution(model, mode)`` applies it:

    with sparse_execution(model, "auto"):    # or "dense" (the model untouched) or "sparse" (every sparsified Linear)
        loss = model(tokens)                  # weights must stay unchanged inside the block

Sparse and dense agree at fp32 tolerance, not bitwise (the sums run in another order). With "auto" the shipped
models (d_model <= 256, L0 >= 0.2) stay dense, so their results are bitwise those of the plain model. The
embedding is a row lookup, already as cheap as sparse, so only the Linear layers (attention, MLP, unembedding)
take part. ``sparse_linear`` is the variant with a dense weight gradient, for training: ``enable_sparse_training``
swaps it into the Linears the same rule picks at the current L0, through CSR snapshots the trainer renews after
every step (the projection changes the weights every step, so nothing there can be taken once).
"""

from __future__ import annotations

import contextlib
import os
import warnings
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("auto", "dense", "sparse")

# The rule, measured with bench/bench_sparse.py (fp32, W [4D, D], X [R, D], torch 2.13 CPU, 2 cores shared with
# other jobs, so noisy). Speedup of CSR forward + input gradient over dense at rows 256 / 2048, in two runs (dense
# matmul peak 168 and 58 GFLOP/s):
#   density 1/4:  0.1-0.8x at every D and rows (slower: never sparse)
#   D=256:  1/16 0.9/1.2x and 1.4/1.0x, 1/64 1.8/1.8x and 23/1.3x (erratic; dX alone 0.6-1.6x: marginal)
#   D=512:  1/16 1.5/1.3x and 0.5/1.3x, 1/64 2.1/2.9x and 0.7/2.1x (256 rows undecided, 2048 rows a gain)
#   D=1024: 1/16 2.7/2.2x and 1.4/1.5x, 1/64 6.5/4.3x and 1.5/3.9x (forward alone 6.1-6.7x at 1/64, 2048 rows)
#   D=2048: 1/16 3.1/1.5x and 2.4/2.0x, 1/64 1.7/4.2x and 3.4/5.4x
# So: sparse from 1/16 nonzeros down, for matrices whose smaller side is >= 512, on >= 256 rows and at least
# 2^18 (smaller side x rows: D=512 needs 512 rows, D=1024 256). The shipped models (d_model <= 256, L0 >= 0.2)
# fail both of the first two tests.
SPARSE_MAX_DENSITY = 1 / 16
"""Largest fraction of nonzero weights that runs sparse."""
SPARSE_MIN_DIM = 512
"""Smallest min(out, in) of a weight that runs sparse (below it the input gradient is no faster)."""
SPARSE_MIN_ROWS = 256
"""Fewest input rows (leading dims flattened) per call that run sparse."""
SPARSE_MIN_WORK = 2**18
"""Smallest min(out, in) x rows that runs sparse (the CSR overhead needs enough work to pay for itself)."""
SPARSE_ROW_BLOCK = 512
"""Rows per CSR product in ``csr_matmul`` (512-1024 were fastest at d512-d1024, L0 1/32-1/64, on 2 cores)."""
SPARSE_DEVICES = ("cpu",)
"""Devices the rule was measured on; "auto" stays dense elsewhere (mode "sparse" still runs sparse there)."""
SPARSE_DTYPES = (torch.float32, torch.float64)
"""Dtypes whose CSR matmuls torch supports on every device used here (CPU CSR mm lacks float16 and bfloat16)."""


def sparse_supported(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether CSR matmuls run for weights of this dtype on this device."""
    return torch.device(device).type in ("cpu", "cuda") and dtype in SPARSE_DTYPES


def use_sparse(density: float, shape: tuple[int, int], rows: int, device: torch.device | str) -> bool:
    """The "auto" rule: run a weight of ``shape`` (out, in) with this fraction of nonzeros sparse on ``rows``
    input rows on ``device``? Deterministic (thresholds above, no timing)."""
    return (
        torch.device(device).type in SPARSE_DEVICES
        and density <= SPARSE_MAX_DENSITY + 1e-6  # an L0 projection rounds its count up
        and min(shape) >= SPARSE_MIN_DIM
        and rows >= SPARSE_MIN_ROWS
        and min(shape) * rows >= SPARSE_MIN_WORK
    )


@dataclass
class SparseWeight:
    """CSR copies of a weight W [out, in] and of its transpose, and W's fraction of nonzeros."""

    csr: torch.Tensor
    """W as a sparse CSR tensor [out, in] (forward)."""
    csr_t: torch.Tensor
    """W^T as a sparse CSR tensor [in, out] (input gradient)."""
    density: float

    @classmethod
    @torch.no_grad()
    def of(cls, weight: torch.Tensor) -> SparseWeight:
        w = weight.detach()
        with warnings.catch_warnings():  # torch calls its CSR support beta on every first use
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr, csr_t = w.to_sparse_csr(), w.t().contiguous().to_sparse_csr()
        return cls(csr, csr_t, csr.values().numel() / max(1, w.numel()))


# Each weight's CSR copies and density, keyed by the weight's id, with its version counter, storage and shape when
# they were made: reused while the weight is unchanged (in-place writes bump the counter), so entering a context
# again costs nothing; dropped when the weight is freed.
_PACKED: dict[int, tuple] = {}
_DENSITY: dict[int, tuple] = {}


def _cached(store: dict, weight: torch.Tensor, make):
    key = (weight._version, weight.data_ptr(), tuple(weight.shape), weight.dtype)
    hit = store.get(id(weight))
    if hit is None:
        weakref.finalize(weight, store.pop, id(weight), None)
    if hit is None or hit[0] != key:
        hit = (key, make(weight))
        store[id(weight)] = hit
    return hit[1]


def packed(weight: torch.Tensor) -> SparseWeight:
    """``SparseWeight.of(weight)``, cached while the weight is unchanged."""
    return _cached(_PACKED, weight, SparseWeight.of)


def density(weight: torch.Tensor) -> float:
    """Fraction of nonzero entries of ``weight``, cached while it is unchanged."""
    return _cached(_DENSITY, weight, lambda w: int(torch.count_nonzero(w.detach())) / max(1, w.numel()))


def csr_matmul(csr: torch.Tensor, x2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x2 [R, in], csr [out, in] -> x2 @ csr^T + bias [R, out], contiguous.

    The CSR kernel multiplies by a dense [in, R] right-hand side and writes [out, R]. Done on all rows at once, the
    transposed operand and result leave the cache (at d1024, 6k rows: 25 MB each) and the later contiguous copy
    costs as much again. So the rows go in blocks of ``SPARSE_ROW_BLOCK``: each block's product is transposed into
    its rows of the result while it is still cached (bench/bench_sparse.py: 1.5-2.5x the single call at 5-6k rows).
    torch's CPU CSR product barely uses a second thread (2 cores: 1.2-1.3x one thread, where a dense matmul gains
    1.9x), so with more than one torch thread the blocks run on that many worker threads, which torch lets run
    at once (1.4-1.8x at d512-d1024, 4096 rows, 2 cores). Every output entry is the same sum in the same order
    whatever the blocking and whichever thread computes it, so neither changes a bit."""
    rows = x2.shape[0]
    y = torch.empty(rows, csr.shape[0], dtype=x2.dtype, device=x2.device)
    b = None if bias is None else bias.to(x2.dtype)
    starts = range(0, rows, SPARSE_ROW_BLOCK)
    inference = torch.is_inference_mode_enabled()

    def block(lo: int) -> None:
        # grad and inference mode are per thread: a worker takes the caller's, so nothing it does is recorded
        with torch.inference_mode(inference), torch.no_grad():
            part = torch.sparse.mm(csr, x2[lo : lo + SPARSE_ROW_BLOCK].t()).t()  # [block, out], a transposed view
            if b is None:
                y[lo : lo + SPARSE_ROW_BLOCK] = part
            else:
                torch.add(part, b, out=y[lo : lo + SPARSE_ROW_BLOCK])

    pool = _block_pool() if len(starts) > 1 and x2.device.type == "cpu" else None
    if pool is None:
        for lo in starts:
            block(lo)
    else:
        list(pool.map(block, starts))  # re-raises a worker's exception here
    return y


_POOL: tuple[tuple[int, int], ThreadPoolExecutor] | None = None


def _block_pool() -> ThreadPoolExecutor | None:
    """Worker threads for ``csr_matmul``'s row blocks: as many as torch's intra-op threads, None for one. Made
    again in a forked child (threads do not survive a fork) and when the thread count changes."""
    global _POOL
    n = torch.get_num_threads()
    if n < 2:
        return None
    if _POOL is None or _POOL[0] != (os.getpid(), n):
        if _POOL is not None and _POOL[0][0] == os.getpid():
            _POOL[1].shutdown(wait=False)
        _POOL = ((os.getpid(), n), ThreadPoolExecutor(n, thread_name_prefix="csr-blocks"))
    return _POOL[1]


class FrozenSparseLinear(torch.autograd.Function):
    """Y = X W^T + b through W's CSR; backward gives dX = dY W through W^T's CSR (and db), never dW: the weight
    is frozen. Inputs: x2 [R, in], ``SparseWeight`` parts csr and csr_t, bias [out] or None."""

    @staticmethod
    def forward(ctx, x2, csr, csr_t, bias):
        ctx.csr_t = csr_t
        ctx.has_bias = bias is not None
        return csr_matmul(csr, x2, bias)

    @staticmethod
    def backward(ctx, gy):  # gy [R, out]
        gx = csr_matmul(ctx.csr_t, gy, None) if ctx.needs_input_grad[0] else None  # [R, in]
        gb = gy.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return gx, None, None, gb


class SparseLinear(torch.autograd.Function):
    """Y = X W^T + b through a CSR snapshot of W, with a dense weight gradient, for weight-sparse training.

    Contract: ``sw`` must hold exactly the current values of ``weight`` (rebuild it with ``SparseWeight.of``
    after every change of the weight: optimizer step, projection). Forward uses sw.csr; backward gives
    dX = dY W through sw.csr_t, dW = dY^T X dense [out, in] (every entry, zeros included, as weight-sparse
    training's top-k projection needs) and db = sum of dY over rows. Inputs: x2 [R, in], weight [out, in], bias
    [out] or None, sw.
    """

    @staticmethod
    def forward(ctx, x2, weight, bias, sw: SparseWeight):
        ctx.save_for_backward(x2)
        ctx.csr_t = sw.csr_t
        ctx.has_bias = bias is not None
        return csr_matmul(sw.csr, x2, bias)

    @staticmethod
    def backward(ctx, gy):  # gy [R, out]
        (x2,) = ctx.saved_tensors
        gx = csr_matmul(ctx.csr_t, gy, None) if ctx.needs_input_grad[0] else None
        gw = gy.t() @ x2 if ctx.needs_input_grad[1] else None  # [out, in], dense
        gb = gy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def sparse_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, sw: SparseWeight | None = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` through CSR with a dense weight gradient (``SparseLinear``'s contract);
    x [..., in] -> [..., out]. ``sw`` defaults to a fresh (uncached) snapshot of ``weight``."""
    sw = SparseWeight.of(weight) if sw is None else sw
    y2 = SparseLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias, sw)
    return y2.view(*x.shape[:-1], weight.shape[0])


def sparse_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The nn.Linear modules whose weights the model sparsifies (``sparsifiable_weights``), by module name."""
    names = [n.removesuffix(".weight") for n in model.sparsifiable_weights()]
    return {n: m for n in names if isinstance(m := model.get_submodule(n), nn.Linear)}


def _forward(name: str, module: nn.Linear, sw: SparseWeight, forced: bool):
    """A Linear forward running ``sw`` by the rule (``forced``: always); x [..., in] -> [..., out]."""
    weight, shape = module.weight, tuple(module.weight.shape)

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        grad_w = torch.is_grad_enabled() and weight.requires_grad
        if forced and grad_w:
            raise RuntimeError(
                f"sparse execution of {name} needs a frozen weight, but {name}.weight requires grad "
                "(use weights_frozen, torch.no_grad, or sparse_linear for a weight gradient)"
            )
        sparse = forced or (not grad_w and use_sparse(sw.density, shape, rows, x.device))
        if not sparse or x.dtype != weight.dtype:
            return F.linear(x, weight, module.bias)
        y2 = FrozenSparseLinear.apply(x.reshape(rows, shape[1]), sw.csr, sw.csr_t, module.bias)
        return y2.view(*x.shape[:-1], shape[0])

    return forward


@dataclass
class SparseExecution:
    """Handle of the swapped forwards: ``restore()`` puts back what each Linear ran before."""

    mode: str
    swapped: dict[str, nn.Linear] = field(default_factory=dict)
    """Linears whose forward was replaced, by module name."""
    _before: list = field(default_factory=list, repr=False)

    def restore(self) -> None:
        for module, prev in reversed(self._before):
            if prev is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = prev
        self._before.clear()
        self.swapped.clear()


def enable_sparse_execution(model: nn.Module, mode: str = "auto") -> SparseExecution:
    """Swap the forward of each sparsified Linear that may run sparse; returns the handle that restores them.

    mode: "auto" (``use_sparse`` per call: weights too dense or small are not touched at all, and a weight that
    requires grad while grad is enabled runs dense), "dense" (nothing changes) or "sparse" (every sparsified
    Linear, whatever its density; a weight that requires grad while grad is enabled is an error). Where CSR
    matmuls are unsupported (``sparse_supported``) "sparse" falls back to dense with one warning.
    """

    def picks(w: torch.Tensor) -> bool:  # "auto": a weight the rule runs dense at every batch size stays untouched
        return use_sparse(density(w), tuple(w.shape), 2**62, w.device)

    return _swap_forwards(
        model,
        SparseExecution(mode),
        picks,
        lambda name, module: _forward(name, module, packed(module.weight), forced=mode == "sparse"),
        "sparse execution",
    )


def _swap_forwards(model: nn.Module, handle: SparseExecution, picks, make_forward, what: str) -> SparseExecution:
    """In ``handle.mode`` "auto" or "sparse", give each sparsified Linear whose weight ``picks`` selects (every one
    for "sparse") the forward ``make_forward(name, module)``, recorded in ``handle``; "dense" changes nothing.
    Where CSR matmuls are unsupported (``sparse_supported``) the Linear stays dense, with one warning for
    "sparse"."""
    if handle.mode not in MODES:
        raise ValueError(f"unknown sparse execution mode {handle.mode!r}; allowed: {list(MODES)}")
    if handle.mode == "dense":
        return handle
    unsupported = []
    for name, module in sparse_linears(model).items():
        w = module.weight
        if not sparse_supported(w.device, w.dtype):
            unsupported.append((name, w.dtype, w.device))
        elif handle.mode == "sparse" or picks(w):
            handle._before.append((module, module.__dict__.get("forward")))
            module.forward = make_forward(name, module)
            handle.swapped[name] = module
    if unsupported and handle.mode == "sparse":
        name, dtype, device = unsupported[0]
        warnings.warn(
            f"{what}: no CSR matmul for {dtype} on {device}: {len(unsupported)} Linear layers ({name}, ...) run dense",
            stacklevel=3,
        )
    return handle


@dataclass
class SparseTraining(SparseExecution):
    """Handle of weight-sparse training's swapped forwards: the Linears the rule may run sparse go through a CSR
    snapshot of their weight (``sparse_linear``: sparse forward and input gradient, dense weight gradient).

    The weights change every step, so the snapshots are the caller's to renew: ``refresh()`` after every change
    (optimizer step and projection, checkpoint load). A forward through a snapshot older than its weight's last
    in-place update is an error, never a silent use of old weights.
    """

    rows: int = 0
    """Input rows per call that the rule is asked about at ``refresh()`` (batch x context)."""
    snapshots: dict[str, tuple[SparseWeight | None, int]] = field(default_factory=dict)
    """Per swapped Linear: its CSR snapshot (None: dense at the current density) and the weight's version then."""

    @torch.no_grad()
    def refresh(self) -> None:
        """Take each weight's CSR snapshot where the rule says sparse at its current density (the L0 anneals)."""
        for name, module in self.swapped.items():
            w = module.weight
            share = int(torch.count_nonzero(w)) / max(1, w.numel())  # not ``density``: projections skip _version
            sparse = self.mode == "sparse" or use_sparse(share, tuple(w.shape), self.rows, w.device)
            self.snapshots[name] = (SparseWeight.of(w) if sparse else None, w._version)


def _training_forward(name: str, module: nn.Linear, handle: SparseTraining):
    """A Linear forward through ``handle``'s snapshot of its weight where there is one; x [..., in] -> [..., out]."""
    weight = module.weight

    def forward(x: torch.Tensor) -> torch.Tensor:
        sw, version = handle.snapshots.get(name, (None, None))
        rows = x.numel() // max(1, x.shape[-1])
        dense = sw is None or x.dtype != weight.dtype or torch.is_autocast_enabled(x.device.type)
        if dense or (handle.mode == "auto" and not use_sparse(sw.density, tuple(weight.shape), rows, x.device)):
            return F.linear(x, weight, module.bias)
        if weight._version != version:
            raise RuntimeError(
                f"sparse training: {name}.weight changed since its CSR snapshot; call refresh() after every update"
            )
        return sparse_linear(x, weight, module.bias, sw)

    return forward


def enable_sparse_training(model: nn.Module, rows: int, mode: str = "auto") -> SparseTraining:
    """Swap the forward of each sparsified Linear of a model in training for one through a CSR snapshot of its
    weight, taken by ``refresh()`` (called here once). mode: "auto" (``use_sparse`` at the weight's current
    density for ``rows`` input rows: the dense start of the L0 anneal runs dense), "dense" (nothing changes) or
    "sparse" (every sparsified Linear). Sparse and dense agree at fp32 tolerance; the weight gradient is dense
    either way. Unsupported device or dtype: dense, with one warning for "sparse"."""
    handle = SparseTraining(mode, rows=rows)
    # "auto" swaps every Linear that the rule runs sparse at some density (the snapshots decide per step)
    _swap_forwards(
        model,
        handle,
        lambda w: use_sparse(0.0, tuple(w.shape), rows, w.device),
        lambda name, module: _training_forward(name, module, handle),
        "sparse training",
    )
    handle.refresh()
    return handle


@contextlib.contextmanager
def sparse_execution(model: nn.Module, mode: str = "auto") -> Iterator[SparseExecution]:
    """Within the block, ``model``'s sparsified Linears run as ``enable_sparse_execution(model, mode)`` says;
    on exit every forward is restored. Weights must not change inside the block (their CSR is taken on entry).
    Blocks nest: the innermost mode applies, and leaving it restores the outer one."""
    handle = enable_sparse_execution(model, mode)
    try:
        yield handle
    finally:
        handle.restore()
