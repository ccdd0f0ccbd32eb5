"""Builders for the alert tests: events with text signals through the real resolver, into the alert engine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from cem.config import alert_rules
from cem.domain.alerts import AlertChanges, AlertEngine, AlertRow, AlertSnapshot, RuleSet, TimerRow, batch_facts
from cem.domain.model import Interaction
from cem.domain.resolver import Resolver, ResolverConfig
from cem.domain.text import analyse
from cem.settings import Settings
from tests.unit.factories import HOUR_MS, MINUTE_MS, NOW_MS

IDLE_MS = 10 * MINUTE_MS
DEFAULT_RULES = alert_rules(Settings())


def contact(event_id: str, ms: int, who: str, channel: str = "chat", issue: str | None = "T1",
            type: str = "message", text: str | None = None, survey: tuple[str, int] | None = None,
            properties: dict[str, str] | None = None) -> Interaction:
    return Interaction(
        event_id=event_id, channel=channel, type=type, occurred_ms=ms, identifiers=(("email", f"{who}@x.test"),),
        fingerprint=f"fp-{event_id}", text=text, issue_ref=issue,
        survey_kind=survey[0] if survey else None, survey_score=survey[1] if survey else None,
        properties=properties or {}, text_signals=analyse(text) if text else None)


def resolved(event_id: str, ms: int, who: str, issue: str = "T1", channel: str = "support") -> Interaction:
    return contact(event_id, ms, who, channel=channel, issue=issue, type="ticket_resolved")


@dataclass
class Pipeline:
    """The resolver and the alert engine, batch by batch, with every row they wrote kept."""

    rules: RuleSet = DEFAULT_RULES
    resolver: Resolver = field(default_factory=lambda: Resolver(ResolverConfig()))
    engine: AlertEngine | None = None
    alerts: list[AlertRow] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = AlertEngine(self.rules, idle_ms=IDLE_MS)

    def batch(self, events: Iterable[Interaction], now_ms: int = NOW_MS) -> AlertChanges:
        assert self.engine is not None
        effects = self.resolver.process(list(events), now_ms)
        changes = self.engine.evaluate(batch_facts(effects), now_ms)
        self.alerts += changes.alerts
        self.timers += changes.timers
        return changes

    def latest(self) -> dict[str, AlertRow]:
        latest: dict[str, AlertRow] = {}
        for row in self.alerts:
            if row.alert_id not in latest or row.revision >= latest[row.alert_id].revision:
                latest[row.alert_id] = row
        return latest

    def open_rules(self) -> list[tuple[str, str]]:
        return sorted((row.rule, row.issue) for row in self.latest().values() if row.state == "open")

    def snapshot(self) -> AlertSnapshot:
        """What sinks.alert_store would read back (channel clocks and texts are left to the restore tests)."""
        timers: dict[tuple[str, str], TimerRow] = {}
        for timer in self.timers:
            timers[(timer.rule, timer.journey_id)] = timer
        return AlertSnapshot(alerts=list(self.latest().values()), timers=list(timers.values()))

    def restarted(self) -> Pipeline:
        """A new engine restored from the rows written (as after a crash), on the same resolver."""
        engine = AlertEngine(self.rules, idle_ms=IDLE_MS)
        assert self.engine is not None
        snapshot = self.snapshot()
        snapshot.channel_clocks = [(ch, c.max_event_ms, c.last_seen_ms)
                                   for ch, c in self.engine.watermark.channels.items()]
        engine.restore(snapshot, NOW_MS)
        return replace(self, engine=engine, alerts=list(self.alerts), timers=list(self.timers))


__all__ = ["HOUR_MS", "MINUTE_MS", "NOW_MS", "Pipeline", "contact", "resolved"]
