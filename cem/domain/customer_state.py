"""Sessions and service journeys under a customer: folding an event in, and moving a merged customer's state to
the survivor. The single resolver and each customer partition of the partitioned design do both the same way."""

from __future__ import annotations

from cem.domain.effects import Effects, ResolvedInteraction
from cem.domain.journeys import JourneyBook, Session, SessionAlias, SessionBook
from cem.domain.model import DIGITAL_CHANNELS, Interaction


def fold_event(sessions: SessionBook, journeys: JourneyBook, event: Interaction, customer_id: str,
               effects: Effects) -> ResolvedInteraction:
    """File the event in its customer's session (digital channels) and journey (an issue_ref)."""
    session_id = ""
    if event.channel in DIGITAL_CHANNELS:
        session, aliases = sessions.add(customer_id, event.event_id, event.occurred_ms, event.channel)
        note_sessions(effects, [session], aliases)
        session_id = session.session_id
    journey_id = ""
    if event.issue_ref:
        journey = journeys.add(customer_id, event.issue_ref, event.event_id, event.occurred_ms, event.channel,
                               event.type)
        effects.journeys[journey.journey_id] = journey
        journey_id = journey.journey_id
    resolved = ResolvedInteraction(event, customer_id, session_id, journey_id)
    effects.interactions.append(resolved)
    return resolved


def move_customer_state(sessions: SessionBook, journeys: JourneyBook, from_id: str, into_id: str,
                        effects: Effects) -> None:
    """Sessions and journeys of a merged customer continue under the survivor."""
    changed, aliases = sessions.move_customer(from_id, into_id)
    note_sessions(effects, changed, aliases)
    moved, absorbed = journeys.move_customer(from_id, into_id)
    for alias in absorbed:
        effects.journey_aliases.append(alias)  # the sink marks the absorbed journey as merged
        effects.journeys.pop(alias.from_id, None)
    for journey in moved:
        effects.journeys[journey.journey_id] = journey


def note_sessions(effects: Effects, changed: list[Session], aliases: list[SessionAlias]) -> None:
    for alias in aliases:
        effects.session_aliases.append(alias)  # the sink marks the absorbed session as merged
        effects.sessions.pop(alias.from_id, None)
    for session in changed:
        effects.sessions[session.session_id] = session
