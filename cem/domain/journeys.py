"""Sessions and service journeys, in event time.

A session is a maximal run of one customer's digital (web, mobile) events with no gap longer than the session
gap. Adding an event can only extend a session or bridge two into one, never split one, so folding events in
any arrival order gives the same sessions as folding them in time order; bridged sessions keep the earliest
session's id and the other id becomes an alias.

A service journey is the events that share an issue_ref and belong to the same customer: an issue_ref such as
"1" used by unrelated customers makes one journey per customer. When customers merge, their journeys with the
same issue_ref become one: the journey that started first (earliest event, then id) survives and the other id
becomes an alias, as for sessions. Journeys keep their member event ids, so folding an event twice (a replay)
changes nothing, and the final journeys do not depend on arrival order (they follow the customer grouping).
A journey's id is derived from the issue_ref and the event that created it, so it is stable under replay and
restore; like a session id, which event created it depends on the order of the resolver's log.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from cem.domain.model import stable_id
from cem.domain.state_maps import MapFactory, in_memory_maps

# Events that mark the state of an issue rather than the customer contacting us about it.
NON_CONTACT_TYPES = frozenset({"ticket_resolved", "survey_response"})
RESOLUTION_TYPE = "ticket_resolved"


@dataclass(slots=True)
class Session:
    session_id: str
    customer_id: str
    start_ms: int
    end_ms: int
    events: int
    channels: set[str] = field(default_factory=set)
    members: list[str] = field(default_factory=list)  # absorbed session ids, transitively: all alias to this one
    # A customer partition's count of events by where they were folded: (session, customer) of their interaction
    # row -> events. Each key grows in one place only, so two copies of a session (a hand-off sent, then sent
    # again by its restored sender) join by the larger count per key, never counting an event twice. None
    # outside the partitions, where sessions add up.
    lines: dict[tuple[str, str], int] | None = field(default=None, compare=False)

    def __lt__(self, other: Session) -> bool:
        return (self.start_ms, self.session_id) < (other.start_ms, other.session_id)

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        """Sessions pickled before `lines` existed load with none."""
        self.lines = None
        for name, value in state[1].items():
            setattr(self, name, value)

    def count(self, session_id: str, customer_id: str) -> None:
        """One more event, whose interaction row carries this session and customer."""
        self.events += 1
        if self.lines is not None:
            line = (session_id, customer_id)
            self.lines[line] = self.lines.get(line, 0) + 1

    def join(self, other: Session) -> list[str]:
        """Folds `other`'s events in: added up, or by line when both count by line (a copy may overlap). Returns
        the session ids it absorbed that this one did not hold yet (each becomes an alias of this one)."""
        self.start_ms = min(self.start_ms, other.start_ms)
        self.end_ms = max(self.end_ms, other.end_ms)
        self.channels |= other.channels
        if self.lines is not None and other.lines is not None:
            for key, count in other.lines.items():
                self.lines[key] = max(count, self.lines.get(key, 0))
            self.events = sum(self.lines.values())
        else:
            self.events += other.events
        known = {self.session_id, *self.members}
        absorbed = [m for m in dict.fromkeys((other.session_id, *other.members)) if m not in known]
        self.members.extend(absorbed)
        return absorbed



@dataclass(frozen=True, slots=True)
class SessionAlias:
    from_id: str
    into_id: str


class SessionBook:
    """Every customer's sessions, sorted by start."""

    def __init__(self, gap_ms: int, maps: MapFactory = in_memory_maps, by_line: bool = False) -> None:
        self.gap_ms = gap_ms
        self.by_customer: MutableMapping[str, list[Session]] = maps("sessions")
        self.by_line = by_line  # sessions count their events by line (Session.lines)

    def add(
        self, customer_id: str, event_id: str, occurred_ms: int, channel: str
    ) -> tuple[Session, list[SessionAlias]]:
        sessions = self.by_customer.setdefault(customer_id, [])
        touching = self._touching(sessions, occurred_ms, occurred_ms)
        if not touching:
            session = Session(stable_id("s", event_id), customer_id, occurred_ms, occurred_ms, 0,
                              lines={} if self.by_line else None)
            insort(sessions, session)
            touching = [session]
        session, aliases = self._coalesce(sessions, touching)
        session.start_ms = min(session.start_ms, occurred_ms)
        session.end_ms = max(session.end_ms, occurred_ms)
        session.count(session.session_id, customer_id)
        session.channels.add(channel)
        return session, aliases

    def move_customer(self, from_customer: str, into_customer: str) -> tuple[list[Session], list[SessionAlias]]:
        """After a customer merge the sessions continue under the survivor; overlapping ones become one."""
        moved = self.by_customer.pop(from_customer, [])
        if not moved:
            return [], []
        sessions = self.by_customer.setdefault(into_customer, [])
        changed: dict[str, Session] = {}
        aliases: list[SessionAlias] = []
        for session in moved:
            session.customer_id = into_customer
            touching = self._touching(sessions, session.start_ms, session.end_ms)
            insort(sessions, session)
            kept, new_aliases = self._coalesce(sessions, [*touching, session])
            aliases.extend(new_aliases)
            for alias in new_aliases:
                changed.pop(alias.from_id, None)
            changed[kept.session_id] = kept
        return list(changed.values()), aliases

    def _touching(self, sessions: list[Session], start_ms: int, end_ms: int) -> list[Session]:
        # Sessions are disjoint and sorted, so their ends rise too: walk back from the last one starting in reach.
        index = bisect_right(sessions, end_ms + self.gap_ms, key=lambda s: s.start_ms)
        found = []
        while index > 0 and sessions[index - 1].end_ms + self.gap_ms >= start_ms:
            index -= 1
            found.append(sessions[index])
        return found

    def take_copy(self, customer_id: str, copy: Session) -> tuple[list[Session], list[SessionAlias]]:
        """Folds in a copy of a session this customer holds already (by id, or absorbed): a hand-off sent again.
        Counted by line, the copy adds only what the held session lacks; it may also reach further in time."""
        sessions = self.by_customer.get(customer_id, [])
        held = next(s for s in sessions if copy.session_id == s.session_id or copy.session_id in s.members)
        before = (held.start_ms, held.end_ms, held.events, len(held.channels))
        new_members = held.join(copy)
        if not new_members and (held.start_ms, held.end_ms, held.events, len(held.channels)) == before:
            return [], []  # sent again with nothing new: no row to write
        sessions.remove(held)
        touching = self._touching(sessions, held.start_ms, held.end_ms)
        insort(sessions, held)
        kept, aliases = self._coalesce(sessions, [*touching, held])
        aliases += [SessionAlias(member, kept.session_id) for member in new_members]
        return [kept], aliases

    def recoalesce(self, customer_id: str) -> tuple[list[Session], list[SessionAlias]]:
        """A customer's sessions made disjoint again: those within the gap of each other become one, as folding
        their events would have made them. Restored rows can hold two such sessions when the alias that joined
        them was never written. Returns every session kept and the aliases of those absorbed now."""
        sessions = sorted(self.by_customer.get(customer_id, []))
        runs: list[list[Session]] = []
        run_end = 0
        for session in sessions:
            if runs and session.start_ms <= run_end + self.gap_ms:
                runs[-1].append(session)
                run_end = max(run_end, session.end_ms)
            else:
                runs.append([session])
                run_end = session.end_ms
        kept: list[Session] = []
        aliases: list[SessionAlias] = []
        for run in runs:
            keep, absorbed = self._coalesce(sessions, run)
            kept.append(keep)
            aliases.extend(absorbed)
        self.by_customer[customer_id] = sessions
        return kept, aliases

    def holds(self, customer_id: str, session_id: str) -> bool:
        return any(session_id == s.session_id or session_id in s.members
                   for s in self.by_customer.get(customer_id, []))

    @staticmethod
    def _coalesce(sessions: list[Session], touching: list[Session]) -> tuple[Session, list[SessionAlias]]:
        keep = min(touching)
        aliases: list[SessionAlias] = []
        for other in touching:
            if other is keep:
                continue
            sessions.remove(other)
            absorbed = keep.join(other)
            # `other` was live here, and may be so in the warehouse: it is aliased even when `keep` had absorbed a
            # copy of it already (a hand-off sent twice reached this partition by two ways)
            if other.session_id != keep.session_id:
                absorbed = list(dict.fromkeys((other.session_id, *absorbed)))
            aliases.extend(SessionAlias(absorbed_id, keep.session_id) for absorbed_id in absorbed)
        return keep, aliases


@dataclass(slots=True)
class ServiceJourney:
    journey_id: str
    issue_ref: str
    customer_id: str
    events: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # event_id -> (ms, channel, type)
    members: list[str] = field(default_factory=list)  # absorbed journey ids, transitively: all alias to this one

    def add(self, event_id: str, occurred_ms: int, channel: str, event_type: str) -> None:
        self.events[event_id] = (occurred_ms, channel, event_type)

    def started(self) -> tuple[int, str, str]:
        """Orders journeys for "the one that started first survives": earliest event, then journey id."""
        first_ms, first_event = min((ms, event_id) for event_id, (ms, _, _) in self.events.items())
        return first_ms, first_event, self.journey_id

    def metrics(self, fcr_window_ms: int) -> JourneyMetrics:
        contacts = sorted((ms, ch) for ms, ch, typ in self.events.values() if typ not in NON_CONTACT_TYPES)
        resolutions = [ms for ms, _, typ in self.events.values() if typ == RESOLUTION_TYPE]
        all_times = [ms for ms, _, _ in self.events.values()]
        resolved_ms = min(resolutions) if resolutions else None
        first_ms = contacts[0][0] if contacts else min(all_times)
        fcr = False
        if resolved_ms is not None:
            before = sum(1 for ms, _ in contacts if ms <= resolved_ms)
            repeat = any(resolved_ms < ms <= resolved_ms + fcr_window_ms for ms, _ in contacts)
            fcr = before == 1 and not repeat
        return JourneyMetrics(
            started_ms=first_ms,
            ended_ms=max(all_times),
            contacts=len(contacts),
            channels=tuple(sorted({ch for _, ch in contacts})),
            resolved=resolved_ms is not None,
            resolved_ms=resolved_ms,
            fcr=fcr,
            time_to_resolution_s=None if resolved_ms is None else max(0, resolved_ms - first_ms) / 1000.0,
        )


@dataclass(frozen=True, slots=True)
class JourneyMetrics:
    started_ms: int
    ended_ms: int
    contacts: int
    channels: tuple[str, ...]
    resolved: bool
    resolved_ms: int | None
    fcr: bool
    time_to_resolution_s: float | None


@dataclass(frozen=True, slots=True)
class JourneyAlias:
    from_id: str
    into_id: str  # REMOVED: the journey has no event left (its only events were refused by the warehouse)
    issue_ref: str


REMOVED = "-"


class JourneyBook:
    """Every customer's service journeys: at most one per (customer, issue_ref)."""

    def __init__(self, maps: MapFactory = in_memory_maps) -> None:
        self.by_customer: MutableMapping[str, dict[str, ServiceJourney]] = maps("journeys")

    def add(self, customer_id: str, issue_ref: str, event_id: str, occurred_ms: int, channel: str,
            event_type: str) -> ServiceJourney:
        journeys = self.by_customer.setdefault(customer_id, {})
        journey = journeys.get(issue_ref)
        if journey is None:
            journey = ServiceJourney(journey_id_for(issue_ref, event_id), issue_ref, customer_id)
            journeys[issue_ref] = journey
        journey.add(event_id, occurred_ms, channel, event_type)
        return journey

    def move_customer(self, from_customer: str, into_customer: str
                      ) -> tuple[list[ServiceJourney], list[JourneyAlias]]:
        """After a customer merge the journeys continue under the survivor; two with one issue_ref become one."""
        changed: list[ServiceJourney] = []
        aliases: list[JourneyAlias] = []
        for journey in self.by_customer.pop(from_customer, {}).values():
            journey.customer_id = into_customer
            kept, absorbed = self.place(journey)
            changed.append(kept)
            aliases.extend(absorbed)
        return changed, aliases

    def place(self, journey: ServiceJourney) -> tuple[ServiceJourney, list[JourneyAlias]]:
        """File a journey under its customer. One already there with the same issue_ref is merged with it."""
        journeys = self.by_customer.setdefault(journey.customer_id, {})
        other = journeys.setdefault(journey.issue_ref, journey)
        if other is journey:
            return journey, []
        keep, gone = (journey, other) if journey.started() < other.started() else (other, journey)
        keep.events.update(gone.events)
        known = {keep.journey_id, *keep.members}  # a copy of a journey held here brings no new id
        absorbed = [i for i in dict.fromkeys((gone.journey_id, *gone.members)) if i not in known]
        keep.members.extend(absorbed)
        journeys[journey.issue_ref] = keep
        # The one that goes was live here or where it came from: it is aliased even when `keep` had absorbed a copy
        # of it already (a hand-off sent twice reached this partition by two ways)
        if gone.journey_id != keep.journey_id:
            absorbed = list(dict.fromkeys((gone.journey_id, *absorbed)))
        return keep, [JourneyAlias(absorbed_id, keep.journey_id, keep.issue_ref) for absorbed_id in absorbed]

    def containing(self, journey_ids: set[str]) -> list[ServiceJourney]:
        """The live journeys that are, or absorbed, one of `journey_ids`. Scans every journey: slow paths only."""
        return [journey for journeys in self.by_customer.values() for journey in journeys.values()
                if journey.journey_id in journey_ids or journey_ids.intersection(journey.members)]


def journey_id_for(issue_ref: str, first_event_id: str) -> str:
    """A journey's id: its issue_ref and the event that created it (the customer is not known yet for good)."""
    return stable_id("j", issue_ref, first_event_id)
