"""Proposed changes to files the benchmark's owner may not edit, applied as patches to benchmark worker
processes only (`python -m bench.run --with-proposals NAME[,NAME]`), so their end-to-end effect can be measured in
the same run as the tree's own code. Nothing here is imported by the pipeline itself.

Each proposal rewrites one function from its current source text and fails loudly when that text has changed,
so a stale proposal can never be measured silently. docs/performance.md describes each one.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any


def _rewrite(owner: Any, name: str, old: str, new: str) -> None:
    """Replace `old` by `new` in the dedented source of owner.name and install the result."""
    function = getattr(owner, name)
    module = inspect.getmodule(function)
    assert module is not None
    source = textwrap.dedent(inspect.getsource(function))
    if old not in source:
        raise RuntimeError(f"proposal for {owner.__qualname__}.{name} is stale: the code it replaces has changed")
    namespace: dict[str, Any] = {}
    exec(compile(source.replace(old, new), module.__file__ or "<proposal>", "exec"), module.__dict__, namespace)
    setattr(owner, name, namespace[name])


# Adopted in the tree (commit ec815c8): `identity_recompute` (IdentityGraph._recompute walks the replayed sets instead
# of the whole owner map) and `gc_thresholds` (gc.set_threshold(50_000, 50, 100) in cem.worker.run_worker). Their
# patches are gone: they would now fail as stale. docs/performance.md keeps their measurements.


def gc_freeze() -> None:
    """ResolverService.process_and_write (cem/service, or Resolver.process): call gc.freeze() after each batch.
    The resolver's state only grows, and a full collection re-scans all of it: with ~5M objects after 250k events
    that is a stop-the-world pause of a second or more, every time the heap grew by a quarter, stalling ingest and
    resolve alike (the latency timeline's bursts). Frozen objects are still freed by reference counting; only
    reference cycles that were already garbage at a freeze are never collected."""
    import gc

    from cem.domain.resolver import Resolver

    process = Resolver.process

    def process_then_freeze(self: Resolver, *args: Any, **kwargs: Any) -> Any:
        effects = process(self, *args, **kwargs)
        gc.freeze()
        return effects

    Resolver.process = process_then_freeze  # type: ignore[method-assign]


PROPOSALS: dict[str, Callable[[], None]] = {
    "gc_freeze": gc_freeze,
}


def apply(names: list[str]) -> None:
    for name in names:
        if name:
            PROPOSALS[name]()
