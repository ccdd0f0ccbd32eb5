"""The alert state and the recording of one evaluation's changes (revisions and SLA timers)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cem.domain.alerts.model import OPEN, WITHDRAWN, AlertChanges, AlertRow, TimerRow, alert_id_for


@dataclass
class AlertState:
    alerts: dict[str, AlertRow] = field(default_factory=dict)  # alert id -> latest revision
    by_journey: dict[tuple[str, str], str] = field(default_factory=dict)  # (rule, journey id) -> alert id
    timers: dict[tuple[str, str], TimerRow] = field(default_factory=dict)  # (rule, journey id) -> pending SLA


@dataclass
class Emit:
    """The revisions and timers of one evaluation, stamped with its version and processing time."""

    version: int
    now_ms: int
    state: AlertState
    changes: AlertChanges = field(default_factory=AlertChanges)
    before: dict[str, AlertRow | None] = field(default_factory=dict)  # alerts changed here: their prior revision

    def raise_alert(self, rule: Any, customer_id: str, issue: str, journey_id: str, channel: str, event_ms: int,
                    detail: str, evidence: tuple[str, ...], due_ms: int = 0) -> None:
        alert_id = alert_id_for(rule.name, customer_id, issue)
        known = self.state.alerts.get(alert_id)
        if known is not None and known.state == OPEN:
            return
        row = AlertRow(alert_id, self.version, OPEN, rule.name, rule.kind, rule.severity, customer_id, issue,
                       journey_id, channel, event_ms, due_ms, self.now_ms, detail, evidence)
        self._record(row)

    def withdraw(self, alert_id: str, why: str) -> None:
        known = self.state.alerts.get(alert_id)
        if known is None or known.state != OPEN:
            return
        self._record(replace(known, revision=self.version, state=WITHDRAWN, raised_ms=self.now_ms,
                             detail=f"withdrawn: {why}"))

    def _record(self, row: AlertRow) -> None:
        alert_id = row.alert_id
        if alert_id not in self.before:
            self.before[alert_id] = self.state.alerts.get(alert_id)
        else:  # changed twice in one evaluation: one revision per alert and version, the net change or none
            self.changes.alerts = [r for r in self.changes.alerts if r.alert_id != alert_id]
            prior = self.before[alert_id]
            if (prior.state if prior is not None else WITHDRAWN) == row.state:  # raised and withdrawn: nothing
                self._restore(alert_id, prior)
                return
        self.state.alerts[alert_id] = row
        if row.journey_id:
            self.state.by_journey[(row.rule, row.journey_id)] = alert_id
        self.changes.alerts.append(row)

    def _restore(self, alert_id: str, prior: AlertRow | None) -> None:
        if prior is not None:
            self.state.alerts[alert_id] = prior
            return
        del self.state.alerts[alert_id]
        self.state.by_journey = {key: a for key, a in self.state.by_journey.items() if a != alert_id}

    def set_timer(self, timer: TimerRow) -> None:
        key = (timer.rule, timer.journey_id)
        if self.state.timers.get(key) != timer:
            self.state.timers[key] = timer
            self.changes.timers.append(timer)

    def clear_timer(self, rule: str, journey_id: str) -> None:
        timer = self.state.timers.pop((rule, journey_id), None)
        if timer is not None:
            self.changes.timers.append(replace(timer, cleared=True))
