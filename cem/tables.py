"""Aligned text tables for the terminal (`cem sql`, `cem report`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]], labels: int | None = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned. With `labels`, the first
    `labels` columns are left-aligned (names) and the others right-aligned (figures, or '-' where there is none)."""
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
    if headers:
        cells.insert(0, list(headers))
    if not cells:
        return "(no rows)"
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def right(i: int, cell: str) -> bool:
        return i >= labels if labels is not None else cell.replace(".", "").lstrip("-").isdigit()

    lines = ["  ".join(c.rjust(w) if right(i, c) else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in cells]
    if headers:
        lines.insert(1, "  ".join("-" * w for w in widths))
    if labels is not None and len(cells) == 1:
        lines.append("(none)")
    return "\n".join(lines)
