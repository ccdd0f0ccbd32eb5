"""Customer-experience traffic over six months, for the experience measures (docs/analytics.md).

People of five kinds (loyal, churner, new, returning, dormant) browse the web and the app, buy, contact service
about issues and answer surveys. The traffic carries what the measures look for: channel switches and repeat
contacts within an issue, agent replies and resolutions (or none), rage views (a page viewed again within
seconds), error events, abandoned carts and forms, sessions followed by a call within the hour, surveys after
contacts (with the issue_ref, without it, or too late to be attributed), marketing touches before purchases,
churners who leave after a bad experience and customers who come back after months away.

Each person has one email on every channel, so the ground truth needs no identity resolution: the simulator
keeps who did what (`CxTraffic.person_of`), and tests compute every measure from the records directly
(tests/integration/experience_scenario.py). Separate from devtools.simulate: its traffic for a seed must not
change.

    python -m devtools.simulate_cx [--people N] [--seed S] [--out FILE]

publishes the traffic to CEM_KAFKA_BOOTSTRAP, or writes it to FILE for `cem publish FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cem.kafka import produce
from cem.settings import Settings
from devtools.simulate import recent_base_ms, traffic_lines
from schemas.codec import encode_json

START_MS = int(datetime(2026, 5, 4, tzinfo=UTC).timestamp()) * 1000  # a Monday
DAYS = 180
SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
KINDS = ("loyal", "churner", "new", "returning", "dormant")
PAGES = ("/home", "/product/1", "/product/2", "/cart", "/checkout", "/help", "/account")
SCREENS = ("home", "orders", "help", "cart", "account")
CONTACT_CHANNELS = {  # channel -> the customer's contact type on it
    "call_center": "call_ended", "chat": "chat_message", "support": "ticket_opened", "email": "email_reply",
    "social": "social_mention"}
CONTACT_TEXTS = (
    "This is the third time I call about this, terrible.", "I was on hold for an hour before anyone answered.",
    "Still waiting for my refund after two weeks.", "Where is my order?", "I want to change my delivery address.",
    "Thanks, that was quick and easy!", "It took only five minutes, great.", "I had to explain it all again.",
    "Nobody answers the chat.", "The parcel arrived damaged, please replace it.", None)
HAPPY = ("Great service, thank you!", "Love the new app, works perfectly.", "Quick and easy, thanks.")
UNHAPPY = ("Awful experience, I am leaving.", "Still broken. Very disappointed.", "Useless support, never again.")


@dataclass
class CxTraffic:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (channel, record), time order
    person_of: dict[str, int] = field(default_factory=dict)  # event id -> person
    kind_of: dict[int, str] = field(default_factory=dict)  # person -> loyal, churner, ...

    @property
    def last_ms(self) -> int:
        return max(record["occurred_at"] for _, record in self.records)


class CxSimulator:
    def __init__(self, people: int = 60, seed: int = 3, start_ms: int = START_MS, days: int = DAYS) -> None:
        self.rng = random.Random(seed)
        self.seed = seed  # in the event ids: traffic of two seeds can go to one warehouse
        self.people = people
        self.start_ms = start_ms
        self.days = days
        self.traffic = CxTraffic()
        self._issues = 0

    def run(self) -> CxTraffic:
        for person in range(self.people):
            kind = KINDS[person % len(KINDS)]
            self.traffic.kind_of[person] = kind
            for first_day, last_day in self._periods(kind):
                self._period(person, kind, first_day, last_day)
        # Nothing after the last day: "new" and "returning" people are so as of the latest event.
        horizon = self.start_ms + self.days * DAY_MS
        kept = [(channel, record) for channel, record in self.traffic.records if record["occurred_at"] <= horizon]
        for _, record in self.traffic.records:
            if record["occurred_at"] > horizon:
                del self.traffic.person_of[record["event_id"]]
        self.traffic.records = sorted(kept, key=lambda item: (item[1]["occurred_at"], item[1]["event_id"]))
        return self.traffic

    def _periods(self, kind: str) -> list[tuple[int, int]]:
        end = self.days
        return {"loyal": [(0, end)], "churner": [(0, end - 70)], "new": [(end - 20, end)],
                "returning": [(0, 30), (end - 20, end)], "dormant": [(0, 40)]}[kind]

    def emit(self, person: int, channel: str, event_type: str, at_ms: int, **extra: Any) -> str:
        event_id = f"cx{self.seed}-{len(self.traffic.records):05d}"
        record: dict[str, Any] = {"event_id": event_id, "channel": channel, "type": event_type,
                                  "occurred_at": at_ms, "identifiers": {"email": f"cx.person{person}@example.com"}}
        record.update({k: v for k, v in extra.items() if v is not None})
        self.traffic.records.append((channel, record))
        self.traffic.person_of[event_id] = person
        return event_id

    def _period(self, person: int, kind: str, first_day: int, last_day: int) -> None:
        rng = self.rng
        day = first_day + rng.random() * 3
        while day < last_day - 1:
            t = self.start_ms + int(day * DAY_MS)
            episode = rng.choice(["web", "web", "mobile", "issue", "purchase", "marketing"])
            if episode in ("web", "mobile"):
                self._session(person, episode, t)
            elif episode == "issue":
                self._issue(person, rng.choice(sorted(CONTACT_CHANNELS)), t)
            elif episode == "purchase":
                self._purchase(person, t)
            else:
                self.emit(person, "email", rng.choice(["email_open", "email_click"]), t,
                          properties={"campaign": f"cmp-{rng.randint(1, 4)}"})
            day += rng.uniform(2, 12)
        if kind == "churner":  # leaves after an unresolved issue and a bad score
            t = self.start_ms + (last_day - 1) * DAY_MS
            self._issue(person, "call_center", t, resolve=False)
            self.emit(person, "survey", "survey_response", t + 20 * HOUR_MS, survey={"kind": "nps",
                      "score": rng.randint(0, 4)}, text=rng.choice(UNHAPPY))

    def _session(self, person: int, channel: str, t: int) -> None:
        rng = self.rng
        view, key, pages = (("page_view", "url", PAGES) if channel == "web" else ("screen_view", "screen", SCREENS))
        page = rng.choice(pages)
        for _ in range(rng.randint(2, 7)):
            page = rng.choice(pages)
            self.emit(person, channel, view, t, properties={key: page})
            if rng.random() < 0.15:  # a reload, or rage clicks
                t += rng.randint(1, 9) * SECOND_MS
                self.emit(person, channel, view, t, properties={key: page})
            if rng.random() < 0.1:
                t += rng.randint(1, 20) * SECOND_MS
                self.emit(person, channel, "error", t, properties={key: page, "code": "500"})
            t += rng.randint(5, 400) * SECOND_MS
        if rng.random() < 0.2:
            form = rng.choice(["contact", "signup"])
            self.emit(person, channel, "form_start", t, properties={"form": form})
            t += rng.randint(20, 300) * SECOND_MS
            if rng.random() < 0.5:
                self.emit(person, channel, "form_submit", t, properties={"form": form})
        if rng.random() < 0.35:
            self.emit(person, channel, "add_to_cart", t, properties={"sku": f"sku-{rng.randint(1, 9)}"})
            t += rng.randint(30, 600) * SECOND_MS
            bought = rng.random()
            if bought < 0.35:
                self.emit(person, channel, "order_completed", t, properties={"order_total": "42.00"})
            elif bought < 0.55:  # paid on the shop's back end a little later
                self.emit(person, "commerce", "purchase", t + rng.randint(5, 50) * MINUTE_MS,
                          properties={"order_total": "42.00"})
        if rng.random() < 0.2:  # the site did not help: a call soon after (or, sometimes, well after)
            later = rng.choice([rng.randint(2, 55), rng.randint(70, 300)]) * MINUTE_MS
            self._issue(person, "call_center", t + later)

    def _issue(self, person: int, channel: str, t: int, resolve: bool | None = None) -> None:
        rng = self.rng
        self._issues += 1
        ref = f"CX-{person}-{self._issues}"
        first = t
        for contact in range(rng.choice([1, 1, 2, 2, 3, 4])):
            if contact and rng.random() < 0.45:
                channel = rng.choice(sorted(CONTACT_CHANNELS))
            self.emit(person, channel, CONTACT_CHANNELS[channel], t, issue_ref=ref, text=rng.choice(CONTACT_TEXTS))
            if contact == 0 and rng.random() < 0.6:
                self.emit(person, "support", "agent_reply", t + rng.randint(5, 600) * MINUTE_MS, issue_ref=ref)
            t += rng.choice([rng.randint(30, 1200) * MINUTE_MS, rng.randint(2, 6) * DAY_MS,
                             rng.randint(8, 12) * DAY_MS])
        resolved = rng.random() < 0.7 if resolve is None else resolve
        if resolved:
            t += rng.randint(1, 72) * HOUR_MS
            self.emit(person, "support", "ticket_resolved", t, issue_ref=ref)
        if rng.random() < 0.6:
            kind = rng.choice(["nps", "csat", "ces"])
            score = {"nps": rng.randint(0, 10), "csat": rng.randint(1, 5), "ces": rng.randint(1, 7)}[kind]
            late = rng.choice([rng.randint(1, 48) * HOUR_MS, rng.randint(9, 14) * DAY_MS])
            self.emit(person, "survey", "survey_response", max(t, first) + late, survey={"kind": kind, "score": score},
                      issue_ref=ref if rng.random() < 0.5 else None, text=rng.choice(HAPPY + UNHAPPY + (None,)))

    def _purchase(self, person: int, t: int) -> None:
        rng = self.rng
        if rng.random() < 0.5:
            self.emit(person, "email", "email_click", t - rng.randint(1, 5) * DAY_MS, properties={"campaign": "cmp-9"})
        if rng.random() < 0.4:
            self.emit(person, "social", "social_mention", t - rng.randint(1, 40) * HOUR_MS,
                      text=rng.choice(HAPPY + UNHAPPY))
        if rng.random() < 0.5:
            self._session(person, rng.choice(["web", "mobile"]), t - rng.randint(2, 30) * HOUR_MS)
        channel = rng.choice(["commerce", "commerce", "store"])
        self.emit(person, channel, "purchase", t, properties={"order_total": f"{rng.randint(5, 300)}.00"})
        if rng.random() < 0.3:
            self.emit(person, "survey", "survey_response", t + rng.randint(2, 30) * HOUR_MS,
                      survey={"kind": "csat", "score": rng.randint(1, 5)})


def main(argv: Sequence[str] | None = None) -> int:
    """Publish the traffic to CEM_KAFKA_BOOTSTRAP, or write it to FILE for `cem publish FILE`."""
    parser = argparse.ArgumentParser(prog="python -m devtools.simulate_cx",
                                     description="six months of customer-experience traffic, published or saved")
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write records to this file instead of publishing")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    # The last simulated day is two days ago: every event time is in the range the validator accepts.
    start_ms = recent_base_ms(days_ago=DAYS + 2)
    traffic = CxSimulator(people=args.people, seed=args.seed, start_ms=start_ms).run()
    records = [(settings.raw_topic(channel), record["event_id"].encode(), encode_json(record))
               for channel, record in traffic.records]
    if args.out is not None:
        args.out.write_bytes(traffic_lines(records))
    else:
        asyncio.run(produce(settings, records))
    print(f"{len(records)} records for {args.people} people", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
