"""The README's walk ("Your own events: the dev stack") read as commands and the outputs it shows, and the
normalisation that keeps what does not depend on the run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Your own events: the dev stack"


@dataclass(frozen=True)
class Step:
    command: str
    expected: str


def readme_steps(text: str) -> list[Step]:
    """Each `$ ` line of the section's code blocks, with the lines up to the next `$ ` line or the block's end."""
    section = text.split(SECTION, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    steps: list[Step] = []
    for block in re.findall(r"^```\n(.*?)^```$", section, flags=re.S | re.M):
        command: str | None = None
        output: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    steps.append(Step(command, "\n".join(output)))
                command, output = line[2:], []
            else:
                output.append(line)
        if command is not None:
            steps.append(Step(command, "\n".join(output)))
    return steps


def normalised(text: str) -> str:
    text = re.sub(r"erasure request [0-9a-f]{32}", "erasure request <request id>", text)
    text = re.sub(r"keyed hash [0-9a-f]{16}…", "keyed hash <keyed hash>…", text)
    # The merge history and the event at which an identifier was found shared depend on the arrival order.
    text = re.sub(r"^(Refused merges|Merges) \(\d+\):\n(?:  .*\n)*", r"\1: <history>\n", text + "\n", flags=re.M)
    text = re.sub(r"marked by event \S+ at \S+ \S+", "marked by event <event> at <time>", text)
    # So does the event (and rule) that first linked an identifier: an identifier is linked by the first event
    # that carried it in the order the worker saw them (the customer it belongs to does not depend on it).
    # The customer it was linked to first is that order too (a customer merged into this one since, or not).
    text = re.sub(r"linked \S+ \S+ by event \S+ \[\w+\](?: \(linked to \S+, merged since\))?",
                  "linked <when> by event <event> [<rule>]", text)
    text = re.sub(r"since event \S+$", "since event <event>", text, flags=re.M)
    # The report's identity figures: the merges and refused merges counted are that history too.
    text = re.sub(r"^(\s*\d+\s+\d+)\s+\d+\s+\d+$", r"\1 <merges> <refused>", text, flags=re.M)
    lines = []
    for line in text.splitlines():
        line = re.sub(r" {2,}", " ", line.rstrip())
        lines.append("---" if line and set(line) <= {"-", " "} else line)
    return "\n".join(lines).strip("\n")


def shown_output(command: str) -> str:
    """What the README's walk shows for `command` (the first step running it)."""
    return next(step.expected for step in readme_steps((ROOT / "README.md").read_text()) if step.command == command)
