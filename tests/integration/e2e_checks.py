"""What the warehouse must hold after the simulator's traffic, whatever the deployment wrote it (one worker and
the single resolver, or the partitioned resolver on several): every value compared with the simulator's
independent ground truth."""

from __future__ import annotations

from collections import Counter

from cem.domain.text import analyse
from cem.settings import Settings
from devtools.simulate import Traffic, groups
from devtools.topics import read_topic
from sinks.clickhouse import connect


def assert_ground_truth(settings: Settings, traffic: Traffic) -> None:
    """Events once each, customers, service journeys, text signals, sessions, the hourly aggregate and the dead
    letters."""
    unique = len(traffic.person_of_event)
    db = connect(settings.clickhouse_url)
    name = db.database
    assert db.query(f"SELECT count(), uniqExact(event_id) FROM {name}.interactions") == [(unique, unique)]
    rows = db.query(f"SELECT event_id, customer_id FROM {name}.interactions")
    assert groups(rows) == traffic.groups()
    assert db.query(f"SELECT uniqExact(customer_id) FROM {name}.interactions") == [(traffic.customers,)]
    assert db.query(f"SELECT count() FROM {name}.customers") == [(traffic.customers,)]

    journeys = {r[0]: r[1:] for r in db.query(
        f"SELECT issue_ref, contacts, channels, resolved, fcr, time_to_resolution_s FROM {name}.journeys "
        "WHERE kind = 'service'")}
    assert set(journeys) == set(traffic.journeys)
    assert db.query(f"SELECT count() FROM {name}.journeys WHERE kind = 'service'") == [(len(traffic.journeys),)]
    for issue_ref, truth in traffic.journeys.items():
        contacts, channels, resolved, fcr, ttr = journeys[issue_ref]
        assert (contacts, tuple(channels), bool(resolved), bool(fcr)) == \
            (truth.contacts, truth.channels, truth.resolved, truth.fcr), issue_ref
        assert ttr == truth.time_to_resolution_s, issue_ref

    # Text signals: each event with text carries the roll-up of its text (computed in ingest), the others none.
    signals = db.query(f"SELECT text, actionability, emotions, topics, sentence_count FROM {name}.interactions "
                       "WHERE text != ''")
    assert signals
    for text, actionability, emotions, topics, sentences in signals:
        expected = analyse(text)
        assert expected is not None
        assert (actionability, emotions, topics, sentences) == (
            expected.actionability, [e for e, _ in expected.emotions], list(expected.topics), expected.sentences)
    assert db.query(f"SELECT count() FROM {name}.interactions WHERE text = '' AND (actionability != '' "
                    "OR sentence_count != 0 OR effort IS NOT NULL)") == [(0,)]

    # Sessions: per person, the number of 30-minute-gap sessions of web and mobile events.
    person_of_customer = {c: traffic.person_of_event[e] for e, c in rows}
    sessions = db.query(f"SELECT customer_id, count() FROM {name}.journeys WHERE kind = 'session' GROUP BY customer_id")
    assert {person_of_customer[c]: n for c, n in sessions} == traffic.sessions_per_person

    # The hourly aggregate equals sums recomputed from the interactions.
    assert db.query(f"SELECT channel, sum(events) FROM {name}.channel_hourly GROUP BY channel ORDER BY channel") == \
        db.query(f"SELECT channel, count() FROM {name}.interactions GROUP BY channel ORDER BY channel")

    # Dead letters: each malformed record once, with its specific reason and the original bytes. They are
    # at-least-once and identified by their key (the record's source), so a copy sent again after a rebalance
    # counts once; its copies must be identical.
    dead = read_topic(settings, settings.deadletter_topic)
    by_key: dict[bytes | None, set[tuple[str, bytes]]] = {}
    for d in dead:
        by_key.setdefault(d.key, set()).add((d.reason, d.value))
    assert all(len(copies) == 1 for copies in by_key.values()), "copies of a dead letter differ"
    found = Counter(next(iter(copies)) for copies in by_key.values())
    expected = Counter(traffic.invalid)
    assert found == expected, f"extra {found - expected}, missing {expected - found}"
    assert all(d.headers.get("cem.source", "").startswith(settings.topic_prefix + ".raw.") for d in dead)

