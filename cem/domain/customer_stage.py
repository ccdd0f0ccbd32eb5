"""A customer partition of the partitioned design (docs/scaling.md): sessions and service journeys of the
customers that hash to it, and the interaction, session and journey rows they give.

Fronts route each event to its customer's partition with the customer their replica answered. A partition also
applies the owner's versions, in order: when a customer of this partition merged into another, its sessions and
journeys are handed to the survivor's partition (`HandOff`) and whatever still arrives for it (from a front whose
replica had not seen the merge) is forwarded there. The receiver folds them in with the single resolver's merge
rules. Folding is order-independent, so it does not matter whether a late event reaches the survivor before or
after the hand-off. A survivor that merged on since passes the hand-off on.

Replays. A restarted front routes a replayed event again to the customer it first recorded, so the copy reaches
the partition the first copy reached, after it (the first copy was acknowledged by Kafka before the front died).
Each partition remembers the events it folded, and for each event and the customer it was addressed to, the
survivor it was forwarded to: a replay takes the same hops as its first copy and is dropped where the first copy
was folded, even if a customer merged away or came back to life since. A first copy takes the current merges
instead: a customer that merged away and back can send it through a partition twice. The hops are not restored:
a restored partition drops any copy of an event that had an interaction row when it was restored, wherever that
row was written (`written_before`); the front's dedup window makes every such copy a replay.

Restarts. A restored partition files sessions and journeys under the customer they were last written under. A
merged customer that still holds state there had its hand-off lost with the sender, or not yet written by the
receiver: it is handed on again, to the survivor known now, which may not be where the first copy went. The two
copies can then be folded in at different places and meet later, one inside the other. So a receiver joins what
it holds already instead of adding it: a journey by its event ids, a session by line (Session.lines: its events
counted by the session and customer they were folded under, each line growing in one place only, so the larger
count of a line holds the smaller).
"""

from __future__ import annotations

import zlib
from collections.abc import MutableMapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from cem.domain.customer_state import fold_event, move_customer_state, note_sessions
from cem.domain.effects import Effects, next_version, own_version
from cem.domain.front import Routed
from cem.domain.identity_replica import IdentityChanges
from cem.domain.journeys import JourneyAlias, JourneyBook, ServiceJourney, Session, SessionAlias, SessionBook
from cem.domain.state_maps import MapFactory, in_memory_maps

# Events folded and hops taken are forgotten by the minute they were added in, once the dedup window is past
EXPIRY_BUCKET_MS = 60_000


def customer_partition(customer_id: str, partitions: int) -> int:
    """The partition that holds a customer's state: stable across processes and restarts."""
    return zlib.crc32(customer_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class HandOff:
    """A merged customer's sessions and journeys, on their way to the survivor's partition."""

    from_id: str
    into_id: str
    sessions: list[Session]
    journeys: list[ServiceJourney]
    version: int  # the sender's version: the receiver writes the moved rows above it


@dataclass
class PartitionStep:
    """What one batch of a partition sends on: to other partitions, by the partition's index."""

    forwarded: list[tuple[int, Routed]] = field(default_factory=list)
    handoffs: list[tuple[int, HandOff]] = field(default_factory=list)
    replays: int = 0  # events this partition had folded, and hand-offs it had received, already: dropped


class CustomerPartition:
    def __init__(self, index: int, partitions: int, session_gap_ms: int,
                 maps: MapFactory = in_memory_maps, window_ms: int = 0) -> None:
        self.index = index
        self.partitions = partitions
        # How long a folded event and a hop are remembered (the dedup window: a copy older than that is new to the
        # fronts too); 0 remembers them as long as the partition lives
        self.window_ms = window_ms
        self._minute = 0  # the minute of the step under way
        self._added: dict[int, list[str | tuple[str, str]]] = {}  # minute -> events folded, hops taken in it
        self._first_minute: int | None = None  # of the partition's first step: `written_before` is as old
        self.sessions = SessionBook(session_gap_ms, maps, by_line=True)
        self.journeys = JourneyBook(maps)
        self.handed: MutableMapping[str, str] = maps("handed")  # merged customer -> the survivor it went to
        self.folded: MutableMapping[str, str] = maps("folded")  # event id -> the customer it was folded under here
        # A restored partition: the recent events with an interaction row when it was restored, wherever folded
        # (shared by the worker's partitions restored together)
        self.written_before: AbstractSet[str] = frozenset()
        # (event id, customer it was addressed to) -> the survivor it was forwarded to from here
        self.forwards: MutableMapping[tuple[str, str], str] = maps("forwards")
        # hand-offs received, by (merged customer, addressee, sender's version): a redelivered one is skipped
        self.received: MutableMapping[tuple[str, str], int] = maps("received")
        self.applied = 0  # the newest owner version applied
        self.version = 0
        # (session ids, journey ids) named by rows of partition batches cut short (or being written) when this
        # partition was restored: its first step writes again what it holds of them
        self.unmarked: tuple[set[str], set[str]] = (set(), set())

    def start_batch(self, now_ms: int, after_version: int = 0) -> Effects:
        """A batch's rows. Its version is above any hand-off it receives (`after_version`): the moved rows must
        supersede what the sender wrote."""
        self.expire(now_ms)
        self.version = own_version(next_version(self.version, now_ms, after_version), self.index)
        return Effects(self.version)

    def expire(self, now_ms: int) -> None:
        """At the start of a step: forget the events folded and the hops taken before the dedup window, and what
        was written before the restore once a whole window has passed since."""
        self._minute = now_ms // EXPIRY_BUCKET_MS
        if self._first_minute is None:
            self._first_minute = self._minute
        if not self.window_ms:
            return
        horizon = (now_ms - self.window_ms) // EXPIRY_BUCKET_MS
        if self._first_minute < horizon:
            self.written_before = frozenset()
        while self._added:  # minutes are added in time order: stop at the first one inside the window
            minute = next(iter(self._added))
            if minute >= horizon:
                break
            for key in self._added.pop(minute):
                if isinstance(key, str):
                    self.folded.pop(key, None)
                else:
                    self.forwards.pop(key, None)

    def _remember(self, key: str | tuple[str, str]) -> None:
        if self.window_ms:
            self._added.setdefault(self._minute, []).append(key)

    def fold(self, routed: Routed, effects: Effects, step: PartitionStep) -> None:
        """File a routed event here, or forward it when its customer merged away from this partition; a replay
        takes the hop its first copy took from here."""
        event_id, customer_id = routed.event.event_id, routed.customer_id
        if event_id in self.folded or event_id in self.written_before:
            step.replays += 1
            return
        hop = (event_id, customer_id)
        taken = self.forwards.get(hop) if routed.replay else None
        survivor = taken if taken is not None else self.handed.get(customer_id)
        if survivor is not None:
            if hop not in self.forwards:
                self._remember(hop)
            self.forwards[hop] = survivor
            step.forwarded.append((customer_partition(survivor, self.partitions),
                                   Routed(routed.event, survivor, routed.replay)))
            return
        self.folded[event_id] = customer_id
        self._remember(event_id)
        fold_event(self.sessions, self.journeys, routed.event, customer_id, effects)

    def apply(self, changes: IdentityChanges, effects: Effects, step: PartitionStep) -> None:
        """Apply one owner version (in order; a redelivered one is ignored): hand every merged customer of this
        partition to its survivor."""
        if changes.version <= self.applied:
            return
        for old_id, current_id in changes.aliases.items():
            if customer_partition(old_id, self.partitions) != self.index:
                continue
            if old_id == current_id:
                self.handed.pop(old_id, None)  # live again: what it handed over stays with the survivor
                continue
            self.handed[old_id] = current_id
            self._hand_over(old_id, effects, step)
        self.applied = changes.version

    def hand_on_restored(self, effects: Effects, step: PartitionStep) -> None:
        """Just restored (state filed as written): first the sessions and journeys a batch cut short named are
        written again as the interaction rows make them. Then a merged customer's rows still written under it
        mean its survivor's partition had not written the hand-off, which may never have reached the broker.
        Hand it on again: the receiver skips what it holds already."""
        self._rewrite_unmarked(effects)
        held = {*self.sessions.by_customer, *self.journeys.by_customer}
        for old_id in sorted(held.intersection(self.handed)):
            self._hand_over(old_id, effects, step)

    def _rewrite_unmarked(self, effects: Effects) -> None:
        """A batch cut short wrote its interaction rows and maybe some of its other rows: the rest (a session's
        new count, the alias that joined two sessions, a journey) is missing, or a row is there that the batch
        done again will not write over. Every session and journey those rows name is written again, with all
        the ids it absorbed, as this partition holds it; a customer's sessions are first made disjoint again.
        A merged customer's are not: they are handed on, and their rows are the survivor's partition's to write.
        Written here, above every row of the partitions, they would revive a session or journey that partition
        absorbed since (its alias row is below them)."""
        sessions_named, journeys_named = self.unmarked
        self.unmarked = (set(), set())
        for customer_id in [c for c, held in self.sessions.by_customer.items() if c not in self.handed
                            and any(_named(s.session_id, s.members, sessions_named) for s in held)]:
            kept, aliases = self.sessions.recoalesce(customer_id)
            members = [SessionAlias(member, s.session_id) for s in kept for member in s.members]
            note_sessions(effects, kept, aliases + members)
        for customer_id, journeys in self.journeys.by_customer.items():
            if customer_id in self.handed:
                continue
            for journey in journeys.values():
                if _named(journey.journey_id, journey.members, journeys_named):
                    effects.journeys[journey.journey_id] = journey
                    effects.journey_aliases.extend(JourneyAlias(member, journey.journey_id, journey.issue_ref)
                                                   for member in journey.members)

    def _hand_over(self, old_id: str, effects: Effects, step: PartitionStep) -> None:
        sessions = self.sessions.by_customer.pop(old_id, [])
        journeys = list(self.journeys.by_customer.pop(old_id, {}).values())
        if sessions or journeys:
            self._send(HandOff(old_id, self.handed[old_id], sessions, journeys, effects.version), effects, step)

    def receive(self, handoff: HandOff, effects: Effects, step: PartitionStep) -> None:
        """Fold a merged customer's state in under the survivor, or pass it on when the survivor merged on."""
        if handoff.version >= effects.version:
            raise ValueError("a hand-off is received in a later version than it was sent")
        key = (handoff.from_id, handoff.into_id)
        if self.received.get(key, -1) >= handoff.version:
            step.replays += 1
            return
        self.received[key] = handoff.version
        self._deliver(handoff.from_id, handoff.into_id, handoff.sessions, handoff.journeys, effects, step)

    def _deliver(self, old_id: str, into_id: str, sessions: list[Session], journeys: list[ServiceJourney],
                 effects: Effects, step: PartitionStep) -> None:
        survivor = self.handed.get(into_id)
        if survivor is not None:
            self._send(HandOff(old_id, survivor, sessions, journeys, effects.version), effects, step)
            return
        sessions = self._fold_copies(sessions, (old_id, into_id), effects)
        journeys = self._news(journeys, (old_id, into_id))
        if not sessions and not journeys:
            return
        self.sessions.by_customer[old_id] = sorted([*self.sessions.by_customer.get(old_id, []), *sessions])
        for journey in journeys:
            journey.customer_id = old_id
            self.journeys.place(journey)
        move_customer_state(self.sessions, self.journeys, old_id, into_id, effects)

    def _fold_copies(self, sessions: list[Session], customer_ids: tuple[str, ...], effects: Effects) -> list[Session]:
        """Folds in the sessions these customers hold already (by id, absorbed ones included: a hand-off sent
        again after a restart, or redelivered) by line, so each event counts once; returns the others."""
        fresh = []
        for session in sessions:
            holder = next((c for c in customer_ids if self.sessions.holds(c, session.session_id)), None)
            if holder is None:
                fresh.append(session)
            elif session.lines is not None:  # a copy without lines (written before them) adds nothing known
                note_sessions(effects, *self.sessions.take_copy(holder, session))
        return fresh

    def _news(self, journeys: list[ServiceJourney], customer_ids: tuple[str, ...]) -> list[ServiceJourney]:
        """The journeys that bring events these customers' journeys lack (a journey sent again brings none):
        placed, they join the journey holding them by their event ids."""
        held: dict[str, ServiceJourney] = {}
        for customer_id in customer_ids:
            for journey in self.journeys.by_customer.get(customer_id, {}).values():
                held.update(dict.fromkeys((journey.journey_id, *journey.members), journey))
        return [j for j in journeys
                if j.journey_id not in held or not j.events.keys() <= held[j.journey_id].events.keys()]

    def _send(self, handoff: HandOff, effects: Effects, step: PartitionStep) -> None:
        target = customer_partition(handoff.into_id, self.partitions)
        if target == self.index:  # the survivor is here too: fold it in within this batch
            self._deliver(handoff.from_id, handoff.into_id, handoff.sessions, handoff.journeys, effects, step)
        else:
            step.handoffs.append((target, handoff))


def _named(identifier: str, members: list[str], named: set[str]) -> bool:
    return identifier in named or not named.isdisjoint(members)
