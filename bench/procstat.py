"""What the kernel knows about a process: CPU seconds, resident memory, and the machine's load.

Everything is read from /proc, so it works for the JVM broker, the ClickHouse server and the Python workers
alike, and costs nothing in the measured processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from devtools.harness import proc_status_kb

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def rss_mb(pid: int) -> float | None:
    kb = proc_status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb(pid: int) -> float | None:
    kb = proc_status_kb(pid, "VmHWM")
    return None if kb is None else kb / 1024


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


@dataclass
class CpuMeter:
    """CPU seconds used by named processes between start() and stop(), plus the whole machine's busy time, so
    the share taken by processes outside the benchmark (another engineer's tests) is visible."""

    pids: dict[str, int]
    started: dict[str, float] | None = None
    wall_start: float = 0.0
    machine_start: float = 0.0
    result: dict[str, float] | None = None

    def start(self) -> CpuMeter:
        self.started = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        self.wall_start = time.monotonic()
        self.machine_start = machine_busy_seconds()
        return self

    def add(self, name: str, pid: int) -> None:
        """Meter a process started after start() (counted from its birth)."""
        self.pids[name] = pid
        assert self.started is not None
        self.started[name] = 0.0

    def stop(self) -> dict[str, float]:
        assert self.started is not None
        out: dict[str, float] = {}
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            out[name] = round((now if now is not None else self.started[name]) - self.started[name], 2)
        wall = time.monotonic() - self.wall_start
        machine = machine_busy_seconds() - self.machine_start
        out["machine_busy"] = round(machine, 2)
        out["other_processes"] = round(max(0.0, machine - sum(v for k, v in out.items() if k != "machine_busy")), 2)
        out["wall"] = round(wall, 2)
        out["cores"] = float(os.cpu_count() or 1)
        self.result = out
        return out


def children_of(pid: int) -> Iterable[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
