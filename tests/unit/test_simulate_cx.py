"""devtools.simulate_cx: the same traffic for a seed, every behaviour the experience measures look for,
nothing after the last simulated day, and the file `cem publish` replays."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import orjson

from cem.settings import Settings
from devtools.simulate_cx import DAY_MS, START_MS, CxSimulator, main


def test_a_seed_gives_the_same_traffic_and_another_seed_other_traffic() -> None:
    first, again, other = (CxSimulator(people=10, seed=s).run() for s in (4, 4, 5))
    assert first.records == again.records and first.person_of == again.person_of
    assert first.records != other.records


def test_the_traffic_carries_every_behaviour_the_measures_look_for() -> None:
    traffic = CxSimulator(people=25, seed=3).run()
    records = [record for _, record in traffic.records]
    types = Counter(r["type"] for r in records)
    for wanted in ("page_view", "screen_view", "error", "add_to_cart", "order_completed", "purchase", "form_start",
                   "form_submit", "agent_reply", "ticket_resolved", "survey_response", "email_click"):
        assert types[wanted] > 0, wanted
    surveys = [r for r in records if r["type"] == "survey_response"]
    assert any("issue_ref" in r for r in surveys) and any("issue_ref" not in r for r in surveys)
    assert set(traffic.kind_of.values()) == {"loyal", "churner", "new", "returning", "dormant"}
    issues: dict[str, set[str]] = {}
    for channel, r in traffic.records:
        if "issue_ref" in r and r["type"] not in ("ticket_resolved", "survey_response", "agent_reply"):
            issues.setdefault(r["issue_ref"], set()).add(channel)
    assert any(len(channels) > 1 for channels in issues.values())  # channel switches


def test_nothing_after_the_last_day_and_every_event_has_its_person() -> None:
    traffic = CxSimulator(people=15, seed=2, days=120).run()
    assert traffic.last_ms <= START_MS + 120 * DAY_MS
    assert set(traffic.person_of) == {r["event_id"] for _, r in traffic.records}
    times = [r["occurred_at"] for _, r in traffic.records]
    assert times == sorted(times)


def test_the_traffic_file_is_what_cem_publish_replays(tmp_path: Path) -> None:
    out = tmp_path / "cx.jsonl"
    assert main(["--people", "3", "--seed", "6", "--out", str(out)]) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    values = [orjson.loads(base64.b64decode(line["value"])) for line in lines]
    assert [line["topic"] for line in lines] == [Settings.from_env().raw_topic(v["channel"]) for v in values]
    assert [base64.b64decode(line["key"]).decode() for line in lines] == [v["event_id"] for v in values]
    assert all(v["event_id"].startswith("cx6-") for v in values)
    assert len({v["event_id"] for v in values}) == len(values) == len(CxSimulator(people=3, seed=6).run().records)
