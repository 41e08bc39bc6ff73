"""TransformerLens-style hook points: named identity modules that user functions can read or replace.

A hook is ``fn(activation, hook) -> activation | None``; returning a tensor replaces the activation.
``HookedModule.run_with_hooks`` and ``run_with_cache`` attach hooks for one call only, so a model never
keeps stray hooks after an exception.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
NamesFilter = str | Iterable[str] | Callable[[str], bool] | None


class HookPoint(nn.Module):
    """Identity at a named activation; runs the attached hook functions in order."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # set by HookedModule.setup_hooks
        self.fns: list[HookFn] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(
                        f"hook on {self.name} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}"
                    )
                x = out
        return x


def make_filter(names_filter: NamesFilter) -> Callable[[str], bool]:
    """A predicate from None (all), one name or glob pattern, a list of them, or a callable."""
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    patterns = [names_filter] if isinstance(names_filter, str) else list(names_filter)
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


class HookedModule(nn.Module):
    """Base class: call ``setup_hooks()`` at the end of ``__init__`` to name every HookPoint."""

    def setup_hooks(self) -> None:
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    def _resolve(self, name: str) -> list[HookPoint]:
        if name in self.hook_dict:
            return [self.hook_dict[name]]
        matched = [h for n, h in self.hook_dict.items() if fnmatch.fnmatchcase(n, name)]
        if not matched:
            raise KeyError(f"no hook point named {name!r}; see model.hook_names")
        return matched

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[None]:
        """Attach ``(name_or_predicate, fn)`` pairs for the duration of the block."""
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for name, fn in fwd_hooks:
                points = [h for n, h in self.hook_dict.items() if name(n)] if callable(name) else self._resolve(name)
                for point in points:
                    point.fns.append(fn)
                    attached.append((point, fn))
            yield
        finally:
            for point, fn in attached:
                point.fns.remove(fn)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(self, *args, names_filter: NamesFilter = None, detach: bool = True, **kwargs):
        """Run the model and return ``(output, cache)``; the cache maps hook names to activations."""
        keep = make_filter(names_filter)
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        out = self.run_with_hooks(*args, fwd_hooks=[(keep, save)], **kwargs)
        return out, cache
