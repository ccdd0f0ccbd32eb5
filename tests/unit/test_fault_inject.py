"""The fault-injection launcher of the fault suite (tests/faults/inject.py): triggers, actions, counts shared by
processes, sync and async targets, methods, and names bound by `from x import f` before the patch."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.faults.inject import Fault, Trigger, install, load_plan, write_plan

VICTIM = '''
class Store:
    def insert(self, table, rows):
        return ("inserted", table, len(rows))

    @staticmethod
    def ping(value):
        return ("pong", value)

    @classmethod
    def build(cls, name):
        return (cls.__name__, name)


def decode(raw, max_bytes):
    return ("decoded", raw)


async def send(topic, key=None, value=None):
    return ("sent", topic, value)
'''
USER = "from victim import decode as imported_decode\n"


@pytest.fixture
def victim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    (tmp_path / "victim.py").write_text(VICTIM)
    (tmp_path / "victim_user.py").write_text(USER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import victim as module
    import victim_user as user

    yield module, user
    for name in ("victim", "victim_user"):
        sys.modules.pop(name, None)


def test_raise_when_an_argument_carries_the_marker(victim: tuple[ModuleType, ModuleType]) -> None:
    module, user = victim
    (trigger,) = install([Fault("victim.decode", "raise", contains="evt-42", exception="ValueError",
                                message="boom")])
    assert module.decode(b'{"event_id": "evt-1"}', 10) == ("decoded", b'{"event_id": "evt-1"}')
    with pytest.raises(ValueError, match="boom"):
        module.decode(b'{"event_id": "evt-42"}', 10)
    # Once only (times=1 by default); and the name bound by `from victim import decode` is patched too.
    assert user.imported_decode(b"evt-42", 10) == ("decoded", b"evt-42")
    assert (trigger.calls, trigger.fired) == (2, 1)


@pytest.mark.parametrize("marker,value,fires", [
    ("evt-42", "text with evt-42 inside", True),
    ("evt-42", bytearray(b"..evt-42.."), True),
    ("evt-42", {"nested": ["evt-42"]}, True),  # by repr
    ("evt-42", b"evt-4 2", False),
    ("é-marker", "é-marker".encode(), True),  # bytes are matched against the UTF-8 marker
])
def test_the_marker_is_found_in_bytes_text_and_reprs(marker: str, value: object, fires: bool) -> None:
    trigger = Trigger(Fault("x.y", "raise", contains=marker), 0)
    assert trigger.fires((value,), {}) is fires
    assert trigger.fires((), {"value": value}) is False  # times=1: already used when it fired


@pytest.mark.parametrize("call,times,expected", [
    (1, 1, [True, False, False, False, False]),
    (3, 1, [False, False, True, False, False]),
    (2, 2, [False, True, True, False, False]),
    (4, 0, [False, False, False, True, True]),  # 0: every time from the 4th call on
])
def test_nth_call_and_times(call: int, times: int, expected: list[bool]) -> None:
    trigger = Trigger(Fault("x.y", "raise", call=call, times=times), 0)
    assert [trigger.fires((), {}) for _ in expected] == expected


def test_times_are_shared_through_the_claims_directory(tmp_path: Path) -> None:
    """Two processes running one plan: the second one (here, a second trigger) finds the firing claimed."""
    fault = Fault("x.y", "block", times=2)
    first, second = Trigger(fault, 0, tmp_path), Trigger(fault, 0, tmp_path)
    assert [first.fires((), {}), second.fires((), {}), second.fires((), {}), first.fires((), {})] == \
        [True, True, False, False]
    other_fault = Trigger(Fault("x.z", "block"), 1, tmp_path)  # its own budget
    assert other_fault.fires((), {})


def test_methods_static_and_class_methods(victim: tuple[ModuleType, ModuleType]) -> None:
    module, _ = victim
    install([Fault("victim.Store.insert", "raise", contains="interaction_log", exception="ConnectionError"),
             Fault("victim.Store.ping", "raise", call=2), Fault("victim.Store.build", "raise", contains="bad")])
    store = module.Store()
    assert store.insert("journey_log", [1, 2]) == ("inserted", "journey_log", 2)
    with pytest.raises(ConnectionError):
        store.insert("interaction_log", [1])
    assert module.Store.ping(1) == ("pong", 1)
    with pytest.raises(RuntimeError, match="injected fault"):
        module.Store.ping(2)
    assert module.Store.build("good") == ("Store", "good")
    with pytest.raises(RuntimeError):
        module.Store.build("bad")


def test_an_async_target_gets_an_async_wrapper(victim: tuple[ModuleType, ModuleType]) -> None:
    module, _ = victim
    install([Fault("victim.send", "raise", contains=".resolve", exception="TimeoutError")])
    assert asyncio.iscoroutinefunction(module.send)
    assert asyncio.run(module.send("cem.deadletter", value=b"x")) == ("sent", "cem.deadletter", b"x")
    with pytest.raises(TimeoutError):
        asyncio.run(module.send("cem.resolve", value=b"x"))


def test_block_then_release_blocks_the_calling_thread_then_calls_the_function(
        victim: tuple[ModuleType, ModuleType]) -> None:
    module, _ = victim
    install([Fault("victim.decode", "block_then_release", seconds=0.5)])
    result: list[object] = []
    caller = threading.Thread(target=lambda: result.append(module.decode(b"r", 1)), daemon=True)
    caller.start()
    caller.join(0.2)
    assert caller.is_alive() and not result  # still blocked
    caller.join(10)
    assert result == [("decoded", b"r")]


def test_block_blocks_for_good(victim: tuple[ModuleType, ModuleType]) -> None:
    module, _ = victim
    install([Fault("victim.decode", "block")])
    caller = threading.Thread(target=lambda: module.decode(b"r", 1), daemon=True)  # left blocked: a daemon
    caller.start()
    caller.join(1.0)
    assert caller.is_alive()


def test_a_plan_round_trips_and_rejects_unknown_actions(tmp_path: Path) -> None:
    faults = [Fault("schemas.codec.decode", "block", contains="m"), Fault("a.b", "raise", call=3, times=0)]
    plan = write_plan(tmp_path / "plan.json", faults, tmp_path / "claims")
    assert load_plan(plan) == (faults, tmp_path / "claims")
    with pytest.raises(ValueError, match="unknown action"):
        Fault("a.b", "explode")
    with pytest.raises(ValueError, match="not an exception type"):
        Fault("a.b", "raise", exception="len")
    with pytest.raises(ValueError, match="not an exception type"):
        Fault("a.b", "raise", exception="cem.settings.Settings")
