"""The alert engine: evaluates the rules on each resolver batch, in event time, and keeps the alert state.

`AlertEngine.evaluate(facts, now_ms)` is pure apart from the engine's own state; the clock comes in. It returns the
revisions to write (an alert raised, or withdrawn because its cause disappeared) and the SLA timers set or cleared.
Its state is a function of rows in the warehouse (`restore`), so a restart or a takeover rebuilds it exactly as the
resolver is rebuilt: an alert already written is known, and a replayed batch raises nothing twice.

State is bounded: alerts whose cause is older than the retention (in event time) are forgotten, and never raised
again (a cause that old was evaluated when it arrived); SLA timers live until they fire or the journey is resolved;
trend counts and customer texts cover the rules' windows only.
"""

from __future__ import annotations

from dataclasses import replace

from cem.domain.alerts.emit import AlertState, Emit
from cem.domain.alerts.model import AlertChanges, AlertRow, AlertSnapshot, BatchFacts, JourneyFacts, TimerRow
from cem.domain.alerts.rules import HOUR_MS, ChannelSwitch, RepeatContact, RuleSet, SlaBreach
from cem.domain.alerts.signals import EventRules
from cem.domain.alerts.watermark import ChannelClock, Watermark


class AlertEngine:
    def __init__(self, rules: RuleSet, *, idle_ms: int, lateness_ms: int = 0, retention_ms: int = 7 * 24 * HOUR_MS
                 ) -> None:
        self.rules = rules
        self.retention_ms = retention_ms
        self.watermark = Watermark(idle_ms, lateness_ms)
        self.state = AlertState()
        self.events = EventRules(rules)
        self.pruned_hour = 0
        self.repeat_rules: list[RepeatContact] = rules.of(RepeatContact)
        self.switch_rules: list[ChannelSwitch] = rules.of(ChannelSwitch)
        self.sla_rules: list[SlaBreach] = rules.of(SlaBreach)
        self.evaluated_hour = -1  # the watermark's hour at the last evaluation

    def has_due(self, now_ms: int) -> bool:
        """Whether an evaluation with no event would change anything now: an SLA deadline passed, or the watermark
        entered another hour (the hourly rules compare closed hours)."""
        watermark = self.watermark.current(now_ms)
        if watermark // HOUR_MS != self.evaluated_hour:
            return True
        return any(timer.deadline_ms <= watermark for timer in self.state.timers.values())

    def evaluate(self, facts: BatchFacts, now_ms: int) -> AlertChanges:
        for channel, latest in facts.channel_latest.items():
            self.watermark.observe(channel, latest, now_ms)
        watermark = self.watermark.current(now_ms)
        self.evaluated_hour = watermark // HOUR_MS
        horizon = watermark - self.retention_ms
        emit = Emit(facts.version, now_ms, self.state)
        self._follow_aliases(facts.journey_aliases, emit)
        self.events.evaluate(facts.events, watermark, horizon, emit, self._existing_for_journey)
        priorities = facts.priorities
        for journey in facts.journeys:
            if journey.contacts:
                self._journey_rules(journey, watermark, horizon, emit, priorities.get(journey.journey_id, ""))
        self._fire_timers(watermark, emit)
        if watermark // HOUR_MS != self.pruned_hour:
            self.pruned_hour = watermark // HOUR_MS
            self._prune(horizon)
        return emit.changes

    # ---- journey rules ---------------------------------------------------------------------------------
    def _journey_rules(self, journey: JourneyFacts, watermark: int, horizon: int, emit: Emit, priority: str
                       ) -> None:
        for repeat in self.repeat_rules:
            self._repeat_contact(repeat, journey, horizon, emit)
        for switch in self.switch_rules:
            self._channel_switch(switch, journey, horizon, emit)
        for sla in self.sla_rules:
            self._sla(sla, journey, watermark, emit, priority)

    def _existing_for_journey(self, rule: str, journey_id: str) -> AlertRow | None:
        alert_id = self.state.by_journey.get((rule, journey_id))
        return self.state.alerts.get(alert_id) if alert_id else None

    def _repeat_contact(self, rule: RepeatContact, journey: JourneyFacts, horizon: int, emit: Emit) -> None:
        if self._existing_for_journey(rule.name, journey.journey_id):
            return
        contacts, k, window = journey.contacts, rule.min_contacts, int(rule.window_hours * HOUR_MS)
        for i in range(len(contacts) - k + 1):
            first, last = contacts[i], contacts[i + k - 1]
            if last.ms - first.ms <= window:
                if last.ms >= horizon:
                    emit.raise_alert(rule, journey.customer_id, journey.issue_ref, journey.journey_id, last.channel,
                                     last.ms, f"{k} contacts about one issue within {rule.window_hours:g} h",
                                     tuple(c.event_id for c in contacts[i:i + k]))
                return

    def _channel_switch(self, rule: ChannelSwitch, journey: JourneyFacts, horizon: int, emit: Emit) -> None:
        if self._existing_for_journey(rule.name, journey.journey_id):
            return
        seen: list[str] = []
        for contact in journey.contacts:
            escalated = contact.channel in rule.phone_channels and any(c in rule.digital_channels for c in seen)
            if contact.channel not in seen:
                seen.append(contact.channel)
            if escalated or len(seen) >= rule.max_channels:
                if contact.ms >= horizon:
                    how = "to the phone" if escalated else f"across {len(seen)} channels"
                    emit.raise_alert(rule, journey.customer_id, journey.issue_ref, journey.journey_id,
                                     contact.channel, contact.ms, f"escalated {how}: {' -> '.join(seen)}",
                                     (contact.event_id,))
                return

    def _sla(self, rule: SlaBreach, journey: JourneyFacts, watermark: int, emit: Emit, priority: str) -> None:
        key = (rule.name, journey.journey_id)
        known = self._existing_for_journey(rule.name, journey.journey_id)
        first = journey.contacts[0]
        priority = priority or (emit.state.timers[key].priority if key in emit.state.timers else "")
        deadline = rule.deadline_ms(first.ms, first.channel, priority)
        if known is not None and known.due_ms:
            deadline = known.due_ms  # the deadline the alert was raised for
        resolved = journey.resolved_ms
        if resolved is not None and resolved <= deadline:
            emit.clear_timer(rule.name, journey.journey_id)
            if known is not None:
                emit.withdraw(known.alert_id, "resolved before the SLA deadline")
            return
        if known is not None:
            return
        timer = TimerRow(rule.name, journey.journey_id, journey.customer_id, journey.issue_ref, first.channel,
                         priority, first.ms, deadline)
        if deadline <= watermark:
            self._raise_sla(rule, timer, emit)
        else:
            emit.set_timer(timer)

    def _raise_sla(self, rule: SlaBreach, timer: TimerRow, emit: Emit) -> None:
        hours = (timer.deadline_ms - timer.first_ms) / HOUR_MS
        emit.raise_alert(rule, timer.customer_id, timer.issue_ref, timer.journey_id, timer.channel, timer.deadline_ms,
                         f"unresolved {hours:g} h after the first contact", (), due_ms=timer.deadline_ms)
        emit.clear_timer(rule.name, timer.journey_id)

    def _fire_timers(self, watermark: int, emit: Emit) -> None:
        due = [timer for timer in self.state.timers.values() if timer.deadline_ms <= watermark]
        for timer in sorted(due, key=lambda t: (t.deadline_ms, t.journey_id)):
            rule = self.rules.named(timer.rule)
            if isinstance(rule, SlaBreach):
                self._raise_sla(rule, timer, emit)
            else:  # the rule left the rule file: its timers go
                emit.clear_timer(timer.rule, timer.journey_id)

    def _follow_aliases(self, aliases: list[tuple[str, str]], emit: Emit) -> None:
        """An absorbed journey's alerts and timers follow the journey that absorbed it (no second alert). The open
        alerts and timers are read once per batch, not once per alias: both grow with the retention kept."""
        if not aliases:
            return
        absorbed = {from_id for from_id, _ in aliases}
        alerts_of: dict[str, list[tuple[str, str]]] = {}  # absorbed journey -> (rule, alert id), as they follow
        for (rule, journey_id), alert_id in self.state.by_journey.items():
            if journey_id in absorbed:
                alerts_of.setdefault(journey_id, []).append((rule, alert_id))
        timers_of: dict[str, list[str]] = {}  # absorbed journey -> rules with a timer on it
        for rule, journey_id in self.state.timers:
            if journey_id in absorbed:
                timers_of.setdefault(journey_id, []).append(rule)
        for from_id, into_id in aliases:  # in order: a journey absorbed later in the batch passes on what it got
            for rule, alert_id in alerts_of.get(from_id, []):
                if (rule, into_id) not in self.state.by_journey:
                    self.state.by_journey[(rule, into_id)] = alert_id
                    if into_id in absorbed:
                        alerts_of.setdefault(into_id, []).append((rule, alert_id))
            for rule in timers_of.pop(from_id, []):
                timer = self.state.timers.get((rule, from_id))
                if timer is None:
                    continue
                emit.clear_timer(rule, from_id)
                if (rule, into_id) not in self.state.timers:
                    emit.set_timer(replace(timer, journey_id=into_id))
                    if into_id in absorbed:
                        timers_of.setdefault(into_id, []).append(rule)

    # ---- state ---------------------------------------------------------------------------------------
    def _prune(self, horizon: int) -> None:
        old = [alert_id for alert_id, row in self.state.alerts.items() if row.event_ms < horizon]
        for alert_id in old:
            del self.state.alerts[alert_id]
        gone = set(old)
        self.state.by_journey = {key: a for key, a in self.state.by_journey.items() if a not in gone}
        self.events.prune(self.watermark.emitted)

    def restore(self, snapshot: AlertSnapshot, now_ms: int) -> None:
        for channel, max_event_ms, last_seen_ms in snapshot.channel_clocks:
            self.watermark.channels[channel] = ChannelClock(max_event_ms, min(last_seen_ms, now_ms))
        watermark = self.watermark.current(now_ms)
        for row in sorted(snapshot.alerts, key=lambda r: r.revision):
            if row.event_ms >= watermark - self.retention_ms:
                self.state.alerts[row.alert_id] = row
                if row.journey_id:
                    self.state.by_journey[(row.rule, row.journey_id)] = row.alert_id
        for timer in snapshot.timers:
            if not timer.cleared:
                self.state.timers[(timer.rule, timer.journey_id)] = timer
        self.events.restore(snapshot, self.state)
        self.pruned_hour = watermark // HOUR_MS
