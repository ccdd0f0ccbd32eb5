"""The batch writer: a batch's effects as columnar rows, one set per table, and the order they are written in.

Exactly once, as analysts see it: a batch's identity facts and journeys go first and its interaction rows last.
The resolver's state is rebuilt from these tables after any restart (sinks.snapshot), so an event whose
interaction row is present is a duplicate on replay, and one whose row is missing is processed again. Each row
is either wholly present or absent, so no FINAL, OPTIMIZE or insert-deduplication token is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from cem.domain.effects import Effects
from cem.domain.journeys import JourneyMetrics
from cem.domain.model import identity_key
from cem.domain.text import TextSignals

EMPTY: Mapping[str, str] = MappingProxyType({})
# The order matters: interaction rows go last (see the module docstring).
TABLE_ORDER = ("customer_log", "identity_links", "customer_merges", "refused_merge_log", "shared_identifiers",
               "id_aliases", "identity_sets", "session_log", "journey_log", "overrides", "interaction_log",
               "resolver_batches")
# What a resolver batch writes before its interaction rows and its mark (the alert revisions and timers too):
# where the rows of a batch cut short by a crash are.
EARLY_TABLES = (*TABLE_ORDER[:-2], "alert_timers", "alert_log")
# What only the split's graph owner writes (the customer partitions write aliases and overrides of sessions and
# journeys too): where the rows of an owner batch cut short are. An owner batch with customer aliases or overrides
# wrote rows here before them (merges, identity sets), or its aliases carry no more than what it writes again.
OWNER_TABLES = TABLE_ORDER[:5] + ("identity_sets",)
# What the split's customer partitions write: a hand-over writes session and journey rows with no interaction row.
PARTITION_TABLES = ("id_aliases", "session_log", "journey_log", "overrides", "interaction_log")
# A partition's batch writes its interaction rows first and its mark last: cut short, it leaves rows at a version
# with no mark, and every session or journey they name is rebuilt from interaction rows that landed. Its session
# aliases land only after the rows of the sessions they point into: a session received in a hand-off may absorb
# one held here while its latest row is still the sender's, and an alias landing alone would file the absorbed
# events under the sender's customer, in another partition.
PARTITION_MARK = "partition_batches"
PARTITION_WRITE_ORDER = ("interaction_log", "session_log", "journey_log", "id_aliases", "overrides", PARTITION_MARK)
# Where the customer partitions' rows name a session or a journey: (what it names, table, the row's `kind` when
# the table holds several kinds, columns).
PARTITION_NAMES = (
    ("session", "interaction_log", "", ("origin_session_id",)),
    ("journey", "interaction_log", "", ("journey_id",)),
    ("session", "session_log", "", ("session_id", "merged_into")),
    ("journey", "journey_log", "service", ("journey_id", "merged_into")),
    ("session", "id_aliases", "session", ("alias_id", "current_id")),
    ("session", "overrides", "session", ("id", "current_id")),
    ("journey", "overrides", "journey", ("id", "current_id")),
)


def effect_columns(effects: Effects, now_ms: int, fcr_window_ms: int, stale_overrides: Mapping[str, str] = EMPTY
                   ) -> dict[str, dict[str, list[Any]]]:
    """Columnar rows for every table a batch touches, in TABLE_ORDER. `stale_overrides`: see override_rows."""
    tables = _identity_tables(effects, now_ms)
    tables.update(_session_and_journey_tables(effects, fcr_window_ms))
    overrides = override_rows(effects, stale_overrides)
    if overrides:
        tables["overrides"] = _rows_to_columns(("kind", "id", "current_id"), overrides, effects.version)
    if effects.interactions:
        tables["interaction_log"] = _interaction_columns(effects, now_ms)
    # Last, and for every batch: the warehouse holds the batch in full once this row is there.
    tables["resolver_batches"] = {"version": [effects.version], "interactions": [len(effects.interactions)],
                                  "duplicates": [effects.duplicates], "written_ms": [now_ms]}
    return tables


def _identity_tables(effects: Effects, now_ms: int) -> dict[str, dict[str, list[Any]]]:
    v = effects.version
    tables: dict[str, dict[str, list[Any]]] = {}
    if effects.customers:
        tables["customer_log"] = {
            "customer_id": [c.customer_id for c in effects.customers],
            "first_event_id": [c.first_seen[1] for c in effects.customers],
            "first_seen_ms": [c.first_seen[0] for c in effects.customers],
            "version": [v] * len(effects.customers),
        }
    if effects.links:
        # A recompute can re-link an identifier linked earlier in the same batch: keep the last, as for aliases.
        links = list({(link.id_type, link.value): link for link in effects.links}.values())
        tables["identity_links"] = _columns(
            links, ("id_type", "value", "customer_id", "event_id", "occurred_ms", "rule"), v
        )
    if effects.merges:
        cols = _columns(effects.merges, ("from_id", "into_id", "event_id", "occurred_ms", "rule"), v)
        cols["seq"] = list(range(len(effects.merges)))
        tables["customer_merges"] = cols
    if effects.refused_merges:
        tables["refused_merge_log"] = _columns(
            effects.refused_merges, ("customer_id", "other_customer_id", "event_id", "occurred_ms", "reason"), v
        )
    if effects.shared:
        cols = _columns(effects.shared, ("id_type", "value", "event_id", "occurred_ms"), v)
        cols.update(marked_ms=[now_ms] * len(effects.shared), reason=[s.reason for s in effects.shared],
                    distinct_count=[s.distinct_count for s in effects.shared])
        tables["shared_identifiers"] = cols
    # One batch shares one version, so only the last alias of an id may be written (argMax has no tie-break).
    latest = {("customer", a): b for a, b in effects.customer_aliases.items()}
    latest.update({("session", s.from_id): s.into_id for s in effects.session_aliases})
    aliases = [(kind, alias_id, current) for (kind, alias_id), current in latest.items()]
    if aliases:
        tables["id_aliases"] = {
            "kind": [a[0] for a in aliases],
            "alias_id": [a[1] for a in aliases],
            "current_id": [a[2] for a in aliases],
            "version": [v] * len(aliases),
        }
    if effects.identity_sets:
        items = list(effects.identity_sets.items())
        tables["identity_sets"] = {
            "identity_key": [identity_key(ids) for ids, _ in items],
            "id_types": [[t for t, _ in ids] for ids, _ in items],
            "id_values": [[v for _, v in ids] for ids, _ in items],
            "first_ms": [first[0] for _, (_, first) in items],
            "first_event_id": [first[1] for _, (_, first) in items],
            "customer_id": [owner for _, (owner, _) in items],
            "version": [v] * len(items),
        }
    return tables


def _session_and_journey_tables(effects: Effects, fcr_window_ms: int) -> dict[str, dict[str, list[Any]]]:
    v = effects.version
    tables: dict[str, dict[str, list[Any]]] = {}
    session_rows = [(s.session_id, s.customer_id, s.start_ms, s.end_ms, s.events, sorted(s.channels), "")
                    for s in effects.sessions.values()]
    session_rows += [(a.from_id, "", 0, 0, 0, [], a.into_id)
                     for a in {a.from_id: a for a in effects.session_aliases}.values()]
    if session_rows:
        tables["session_log"] = _rows_to_columns(SESSION_COLUMNS, session_rows, v)
    journey_rows = [
        _service_row(j.journey_id, j.customer_id, j.issue_ref, j.metrics(fcr_window_ms))
        for j in effects.journeys.values()
    ]
    journey_rows += [_service_alias_row(a.from_id, a.issue_ref, a.into_id)
                     for a in {a.from_id: a for a in effects.journey_aliases}.values()]
    if journey_rows:
        tables["journey_log"] = _rows_to_columns(JOURNEY_COLUMNS, journey_rows, v)
    return tables


def abandoned_columns(cut: tuple[int, int], found_ms: int) -> dict[str, list[Any]]:
    """The `abandoned_batches` row of a batch cut short: its versions (after, until], left out of every restore."""
    return {"after_version": [cut[0]], "until_version": [cut[1]], "found_ms": [found_ms]}


def override_rows(effects: Effects, stale: Mapping[str, str] = EMPTY) -> list[tuple[str, str, str]]:
    """(kind, id, current id): what the `interactions` view applies over the ids an interaction row was written
    with. `customer`: an identifier set whose rows may carry another customer than the set's now (it moved after
    its first rows were written); a set first seen in this batch whose rows all carry its final customer needs
    none, which keeps the table small, unless its key is `stale` (its latest override is a batch cut short's).
    A stale key the batch leaves alone is overridden with the customer `stale` gives it (its set's as restored, if
    known):
    the batch done again may not be the one cut short and need not write every key that one did.
    `session`, `journey`: an absorbed session or journey, and the one it continues as."""
    written_with: dict[str, set[str]] = {}
    for row in effects.interactions:
        written_with.setdefault(identity_key(row.interaction.identifiers), set()).add(row.customer_id)
    rows = []
    for identifiers, (owner, _) in effects.identity_sets.items():
        key = identity_key(identifiers)
        if identifiers not in effects.first_sets or written_with.get(key, {owner}) != {owner} or key in stale:
            rows.append(("customer", key, owner))
    written = {key for _, key, _ in rows}
    rows += [("customer", key, owner) for key, owner in sorted(stale.items()) if owner and key not in written]
    rows += [("session", a.from_id, a.into_id) for a in {a.from_id: a for a in effects.session_aliases}.values()]
    rows += [("journey", a.from_id, a.into_id) for a in {a.from_id: a for a in effects.journey_aliases}.values()]
    return rows


SESSION_COLUMNS = ("session_id", "customer_id", "started_ms", "ended_ms", "events", "channels", "merged_into")
JOURNEY_COLUMNS = ("journey_id", "kind", "customer_id", "issue_ref", "started_ms", "ended_ms", "events", "contacts",
                   "channels", "resolved", "resolved_ms", "fcr", "time_to_resolution_s", "merged_into")


def _service_row(journey_id: str, customer_id: str, issue_ref: str, m: JourneyMetrics) -> tuple[Any, ...]:
    return (journey_id, "service", customer_id, issue_ref, m.started_ms, m.ended_ms, m.contacts, m.contacts,
            list(m.channels), int(m.resolved), m.resolved_ms or 0, int(m.fcr), m.time_to_resolution_s, "")


def _service_alias_row(journey_id: str, issue_ref: str, merged_into: str) -> tuple[Any, ...]:
    return (journey_id, "service", "", issue_ref, 0, 0, 0, 0, [], 0, 0, 0, None, merged_into)


def _interaction_columns(effects: Effects, now_ms: int) -> dict[str, list[Any]]:
    rows = effects.interactions
    events = [r.interaction for r in rows]
    return {
        "event_id": [e.event_id for e in events],
        "channel": [e.channel for e in events],
        "type": [e.type for e in events],
        "occurred_ms": [e.occurred_ms for e in events],
        "identity_key": [identity_key(e.identifiers) for e in events],
        "origin_customer_id": [r.customer_id for r in rows],
        "origin_session_id": [r.session_id for r in rows],
        "journey_id": [r.journey_id for r in rows],
        "issue_ref": [e.issue_ref or "" for e in events],
        "sentiment": [e.sentiment for e in events],
        "survey_kind": [e.survey_kind or "" for e in events],
        "survey_score": [e.survey_score for e in events],
        "text": [e.text or "" for e in events],
        "device": [e.device for e in events],
        "os": [e.os for e in events],
        "browser": [e.browser for e in events],
        "property_keys": [list(e.properties) for e in events],
        "property_values": [list(e.properties.values()) for e in events],
        "fingerprint": [e.fingerprint for e in events],
        "ingested_ms": [now_ms] * len(rows),
        "version": [effects.version] * len(rows),
        **text_signal_columns([e.text_signals for e in events]),
    }


def text_signal_columns(signals: list[TextSignals | None]) -> dict[str, list[Any]]:
    """The interaction_log columns of the events' text signals; an event without text gets the defaults."""
    return {
        "text_sentiment": [s.sentiment if s else None for s in signals],
        "emotions": [[label for label, _ in s.emotions] if s else [] for s in signals],
        "emotion_intensities": [[intensity for _, intensity in s.emotions] if s else [] for s in signals],
        "emotion_intensity": [s.emotion_intensity if s else None for s in signals],
        "effort": [s.effort if s else None for s in signals],
        "actionability": [s.actionability if s else "" for s in signals],
        "topics": [list(s.topics) if s else [] for s in signals],
        "text_cues": [list(s.cues) if s else [] for s in signals],
        "sentence_count": [s.sentences if s else 0 for s in signals],
    }


def _columns(items: Sequence[Any], names: tuple[str, ...], version: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [getattr(item, name) for item in items] for name in names}
    cols["version"] = [version] * len(items)
    return cols


def _rows_to_columns(names: tuple[str, ...], rows: list[tuple[Any, ...]], version: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: list(values) for name, values in zip(names, zip(*rows, strict=True),
                                                                            strict=True)}
    cols["version"] = [version] * len(rows)
    return cols


def row_count(columns: dict[str, list[Any]]) -> int:
    return len(next(iter(columns.values())))


def partition_mark_columns(effects: Effects, now_ms: int) -> dict[str, list[Any]]:
    """The `partition_batches` row of a customer partitions' batch, written last."""
    return {"version": [effects.version], "interactions": [len(effects.interactions)], "written_ms": [now_ms]}
