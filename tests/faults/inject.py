"""Fault-injection launcher: `python -m tests.faults.inject` runs `cem worker` with faults patched into it.

The plan is a JSON file named by the test-only environment variable FAULT_PLAN (not a CEM_* setting: production
never reads it):

    {"claims_dir": "<dir shared by the processes of a test>",
     "faults": [{"target": "schemas.codec.decode", "contains": "evt-0042", "action": "block", "times": 1}]}

Each fault:
- `target`: the dotted path of a function or method, e.g. `schemas.codec.decode`,
  `cem.domain.validate.build_interaction`, `cem.domain.enrich.sentiment`, `streams.app._dead_letter`,
  `faust.topics.Topic.send` (with `contains` set to the topic name, e.g. ".resolve", for the resolver hop),
  `sinks.clickhouse.ServerWarehouse.insert`. Coroutine functions get an async wrapper. Names that modules
  already imported bound with `from x import f` are rebound too.
- trigger: `contains` (a marker: fires on calls where an argument's bytes, text or repr contains it) and/or
  `call` (fires from the Nth matching call on; 1 by default).
- `action`: `raise` (`exception`, a builtin name or a dotted path, with `message`), `block` (forever, in a plain
  time.sleep loop on the calling thread: on the event loop's thread this is how a stuck loop is simulated) or
  `block_then_release` (sleeps `seconds`, then calls the real function).
- `times`: how many times it fires (0: every time). With `claims_dir`, the count is shared by every process
  running the plan (each firing claims a file there), so the worker that replays a record after another one was
  killed on it does not fire again.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

PLAN_VARIABLE = "FAULT_PLAN"
ACTIONS = ("raise", "block", "block_then_release")
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fault:
    target: str
    action: str
    contains: str | None = None
    call: int = 1
    times: int = 1
    exception: str = "RuntimeError"
    message: str = "injected fault"
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {ACTIONS}")
        if self.call < 1 or self.times < 0:
            raise ValueError("call counts from 1; times is 0 (always) or more")
        if self.action == "raise":
            exception_type(self.exception)  # a typo fails when the plan is written, not in the worker


def write_plan(path: Path, faults: Sequence[Fault], claims_dir: Path | None = None) -> Path:
    plan: dict[str, Any] = {"faults": [asdict(f) for f in faults]}
    if claims_dir is not None:
        claims_dir.mkdir(parents=True, exist_ok=True)
        plan["claims_dir"] = str(claims_dir)
    path.write_bytes(orjson.dumps(plan, option=orjson.OPT_INDENT_2))
    return path


def load_plan(path: Path) -> tuple[list[Fault], Path | None]:
    plan = orjson.loads(path.read_bytes())
    claims = plan.get("claims_dir")
    return [Fault(**f) for f in plan["faults"]], Path(claims) if claims else None


def launcher(plan: Path) -> tuple[list[str], dict[str, str]]:
    """The command and extra environment that start a worker running `plan` (for devtools.harness.WorkerProcess)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", "tests.faults.inject"], {PLAN_VARIABLE: str(plan), "PYTHONPATH": path}


def contains(value: Any, marker: str) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return marker.encode() in bytes(value)
    if isinstance(value, str):
        return marker in value
    try:
        return marker in repr(value)
    except Exception:
        return False


class Trigger:
    """Decides, call by call, whether a fault fires. Thread-safe: targets run on the loop and in executors."""

    def __init__(self, fault: Fault, index: int, claims_dir: Path | None = None) -> None:
        self.fault = fault
        self.index = index
        self.claims_dir = claims_dir
        self.calls = 0
        self.fired = 0
        self._lock = threading.Lock()

    def fires(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        marker = self.fault.contains
        if marker is not None and not any(contains(v, marker) for v in (*args, *kwargs.values())):
            return False
        with self._lock:
            self.calls += 1
            if self.calls < self.fault.call or not self._claim():
                return False
            self.fired += 1
            return True

    def _claim(self) -> bool:
        if self.fault.times == 0:
            return True
        if self.claims_dir is None:
            return self.fired < self.fault.times
        for n in range(self.fault.times):
            try:
                os.close(os.open(self.claims_dir / f"fault{self.index}-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return True
            except FileExistsError:
                continue
        return False


def act(fault: Fault) -> None:
    """Run the fault's action on the calling thread; returns only for block_then_release."""
    print(f"[fault-inject] {fault.action} in {fault.target} on thread {threading.current_thread().name}",
          file=sys.stderr, flush=True)
    if fault.action == "raise":
        raise exception_type(fault.exception)(fault.message)
    deadline = None if fault.action == "block" else time.monotonic() + fault.seconds
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))


def exception_type(name: str) -> type[BaseException]:
    found = getattr(builtins, name, None) if "." not in name else _resolve_dotted(name)
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError(f"{name!r} is not an exception type")
    return found


def wrap(original: Callable[..., Any], trigger: Trigger) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def async_faulty(*args: Any, **kwargs: Any) -> Any:
            if trigger.fires(args, kwargs):
                act(trigger.fault)
            return await original(*args, **kwargs)

        return async_faulty

    @functools.wraps(original)
    def faulty(*args: Any, **kwargs: Any) -> Any:
        if trigger.fires(args, kwargs):
            act(trigger.fault)
        return original(*args, **kwargs)

    return faulty


def _import_owner(target: str) -> tuple[Any, str]:
    """(the module or class holding the target, the target's attribute name)."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        try:
            owner: Any = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        for attr in parts[i:-1]:
            owner = getattr(owner, attr)
        return owner, parts[-1]
    raise ValueError(f"{target!r} is not a dotted path of a module attribute")


def _resolve_dotted(target: str) -> Any:
    owner, attr = _import_owner(target)
    return getattr(owner, attr)


def install(faults: Sequence[Fault], claims_dir: Path | None = None) -> list[Trigger]:
    """Patch every fault's target; returns the triggers (their counters) in plan order."""
    triggers = []
    for index, fault in enumerate(faults):
        owner, attr = _import_owner(fault.target)
        trigger = Trigger(fault, index, claims_dir)
        raw = inspect.getattr_static(owner, attr)
        if isinstance(raw, staticmethod | classmethod):
            setattr(owner, attr, type(raw)(wrap(raw.__func__, trigger)))
        elif inspect.ismodule(owner):
            original = getattr(owner, attr)
            patched = wrap(original, trigger)
            setattr(owner, attr, patched)
            _rebind_aliases(original, patched)
        else:
            setattr(owner, attr, wrap(raw, trigger))
        triggers.append(trigger)
    return triggers


def _rebind_aliases(original: Any, patched: Any) -> None:
    """`from module import f` in a module imported before the patch holds the original: point it at the patch."""
    for module in list(sys.modules.values()):
        try:
            namespace = vars(module)
        except TypeError:
            continue
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is original:
                setattr(module, name, patched)


def main() -> int:
    faults, claims_dir = load_plan(Path(os.environ[PLAN_VARIABLE]))
    install(faults, claims_dir)
    from cem.cli import main as cem_main

    return cem_main(["worker"])


if __name__ == "__main__":
    sys.exit(main())
