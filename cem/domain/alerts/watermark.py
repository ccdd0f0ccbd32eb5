"""The event-time watermark of the alert rules: how far event time has surely progressed.

Per input channel, the latest event time seen and when (processing time) it was last seen. The watermark is the
smallest latest-event-time of the channels still active, minus the allowed lateness: a slow channel holds event
time back, so an SLA deadline is not declared passed while a channel may still deliver the resolution.

A channel silent for longer than the idle timeout stops holding it back (Flink's "idleness"): a channel that
carries no traffic at night does not freeze every SLA. When every channel is idle (the whole input is quiet),
event time follows the wall clock from the latest event seen: the watermark is that event's time plus the
processing time elapsed since the input went quiet, so a deadline still passes when no event at all arrives.

The watermark never goes back. The clock is passed in (`now_ms`), so this is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChannelClock:
    max_event_ms: int
    last_seen_ms: int  # processing time


@dataclass
class Watermark:
    idle_ms: int
    lateness_ms: int = 0
    channels: dict[str, ChannelClock] = field(default_factory=dict)
    emitted: int = 0

    def observe(self, channel: str, event_ms: int, now_ms: int) -> None:
        clock = self.channels.get(channel)
        if clock is None:
            self.channels[channel] = ChannelClock(event_ms, now_ms)
        else:
            clock.max_event_ms = max(clock.max_event_ms, event_ms)
            clock.last_seen_ms = max(clock.last_seen_ms, now_ms)

    def current(self, now_ms: int) -> int:
        """The watermark at processing time `now_ms` (0 before any event)."""
        if not self.channels:
            return self.emitted
        active = [c.max_event_ms for c in self.channels.values() if now_ms - c.last_seen_ms <= self.idle_ms]
        if active:
            candidate = min(active) - self.lateness_ms
        else:
            quiet_since = max(c.last_seen_ms for c in self.channels.values()) + self.idle_ms
            latest = max(c.max_event_ms for c in self.channels.values())
            candidate = latest - self.lateness_ms + max(0, now_ms - quiet_since)
        self.emitted = max(self.emitted, candidate)
        return self.emitted
