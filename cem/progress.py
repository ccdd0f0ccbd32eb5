"""Progress bars for long commands (`cem publish`, `cem replay`, `python -m devtools.simulate`): drawn with rich on
standard error only when it is a terminal, so that logs, pipes and tests get no escape codes, just the commands'
usual lines."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Advance = Callable[[int], None]


def _nothing(count: int) -> None:
    return None


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "records",
                 stream: TextIO | None = None) -> Iterator[Advance]:
    """A bar with the count done, the rate (`unit`/s) and the time left; yields `advance(count)`. Draws nothing
    unless `stream` (standard error by default) is a terminal."""
    stream = stream if stream is not None else sys.stderr
    if not _is_terminal(stream):
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]}"), TimeRemainingColumn()]
    with Progress(*columns, console=Console(file=stream), transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(count: int) -> None:
            speed = progress.tasks[0].speed
            progress.update(task, advance=count, rate=f"{speed:,.0f} {unit}/s" if speed else "")

        yield advance


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
