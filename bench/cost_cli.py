"""The command line shared by the in-process cost probes (`bench.text_cost`, `bench.alert_cost`): the same options,
and one line per measured figure."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Cost(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


def run_cost_probe(prog: str, doc: str | None, measure: Callable[[int, int, int], Cost],
                   argv: Sequence[str] | None = None) -> int:
    """Parse --events, --repeat and --seed, call `measure(events, seed, repeat)` and print its figures."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    figures = measure(args.events, args.seed, args.repeat).as_dict()
    width = max(len(name) for name in figures) + 2
    for name, value in figures.items():
        print(f"{name:{width}} {value}")
    return 0
