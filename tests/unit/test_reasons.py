"""The dead-letter reasons are one contract: the Reason enum and the README's tables name the same codes."""

from __future__ import annotations

import re
from pathlib import Path

from cem.domain.reasons import Reason

README = Path(__file__).parents[2] / "README.md"


def documented_reasons() -> set[str]:
    text = README.read_text()
    section = text[text.index("## Dead letters"):]
    section = section[:section.index("\n## ", 1)]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            codes |= set(re.findall(r"`([a-z0-9_]+)`", first_cell))
    return codes


def test_every_reason_is_documented_and_every_documented_reason_exists() -> None:
    assert documented_reasons() == {reason.value for reason in Reason}


def test_reasons_are_written_as_their_code() -> None:
    assert Reason.TOO_LARGE.encode() == b"too_large" and f"{Reason.BAD_SIGNATURE}" == "bad_signature"
