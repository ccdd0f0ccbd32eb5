"""Progress bars reach a person at a terminal and never a log: `python -m devtools.simulate --out FILE` run with
standard error on a pseudo-terminal draws one (escape codes, the count), and with it piped writes only its
summary line, with no escape code or carriage return; the file holds every record either way."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from devtools.services import REPO_ROOT

ARGS = ["-m", "devtools.simulate", "--customers", "40", "--seed", "3"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "100", "TERM": "xterm"}


def test_piped_standard_error_gets_no_escape_codes(tmp_path: Path) -> None:
    out = tmp_path / "traffic.jsonl"
    done = subprocess.run([sys.executable, *ARGS, "--out", str(out)], capture_output=True, env=_env(), timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stderr and b"\r" not in done.stderr
    assert done.stderr.decode().strip().splitlines()[-1].endswith("service journeys")
    assert len(done.stderr.decode().strip().splitlines()) == 1


def test_a_terminal_gets_a_bar_and_the_same_file(tmp_path: Path) -> None:
    piped, drawn = tmp_path / "piped.jsonl", tmp_path / "terminal.jsonl"
    subprocess.run([sys.executable, *ARGS, "--out", str(piped)], capture_output=True, env=_env(), timeout=120,
                   check=True)
    main, child = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, *ARGS, "--out", str(drawn)], stdout=subprocess.DEVNULL,
                                   stderr=child, env=_env())
        os.close(child)
        screen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        assert process.wait(timeout=120) == 0
    finally:
        os.close(main)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text and "writing terminal.jsonl" in text
    lines = piped.read_bytes().count(b"\n")
    assert f"{lines}/{lines}" in text
    assert drawn.read_bytes().count(b"\n") == lines
