"""The person of the erasure tests, and searches for anything left of her: every column of every table and view,
the mutations ClickHouse keeps (system.mutations and the mutation files next to the data), logs, topics."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cem.domain.model import identity_key
from sinks.warehouse import Warehouse

EMAIL = "jane.doe@example.com"
PHONE = "+12125550300"  # normalised; she typed "+1 212 555 0300"
PHONE_TYPED = "+1 212 555 0300"
LINKED_PHONE = "+12125550142"
CRM = "CRM-JANE-77"
TEXTS = ("my husband Tom is in hospital at St Mary", "cancel everything for Jane Doe", "Bob typed her address")
PROPERTY = "jane-secret-coupon"
# A placeholder the block-list does not know (noemail@noemail.com is dropped at normalisation): five CRM ids make
# it shared, nobody's.
PLACEHOLDER = "frontdesk@example.org"
PLACEHOLDER_PEOPLE = 5


def records(base_ms: int) -> list[tuple[str, dict[str, Any]]]:
    """(channel, input record). Jane: a CRM id, her email, a linked phone and one phone past the limit
    (CEM_IDENTIFIER_LIMITS=phone=1), an issue; Bob: an event of his carries her email (the merge is refused:
    two CRM ids); five people share a placeholder email; Kate is unrelated. No identifier of hers is seen with
    more values of a type than one customer holds (two phones, two CRM ids), or it would be shared, nobody's:
    so her email is never on an event with her CRM id or her linked phone."""

    def rec(event_id: str, channel: str, offset_s: int, ids: dict[str, str], **extra: Any) -> tuple[str, dict]:
        body = {"event_id": event_id, "channel": channel, "type": extra.pop("type", "chat_message"),
                "occurred_at": base_ms + offset_s * 1000, "identifiers": ids, **extra}
        return channel, body

    out = [
        rec("j1", "web", 1, {"customer_ref": CRM, "anonymous_id": "anon-jane"},
            type="page_view", text=TEXTS[0], properties={"coupon": PROPERTY}),
        rec("j2", "mobile", 60, {"anonymous_id": "anon-jane", "email": "Jane.Doe@Example.com"}, type="app_open"),
        rec("j3", "call_center", 120, {"customer_ref": CRM, "phone": LINKED_PHONE}, type="call",
            issue_ref="CASE-1042", text=TEXTS[1]),
        rec("j4", "chat", 180, {"email": EMAIL, "phone": PHONE_TYPED}, text="please call me back"),
        rec("b1", "commerce", 200, {"customer_ref": "CRM-BOB-1", "email": "bob@example.org"}, type="order"),
        rec("b2", "support", 240, {"customer_ref": "CRM-BOB-1", "email": EMAIL}, type="ticket_opened",
            text=TEXTS[2]),
        rec("b3", "support", 300, {"customer_ref": "CRM-BOB-1", "phone": "+12125550999"}, type="ticket_opened"),
        rec("k1", "chat", 400, {"email": "kate@example.net"}, text="hello from kate"),
    ]
    out += [rec(f"p{i}", "commerce", 500 + i, {"customer_ref": f"CRM-P{i}", "email": PLACEHOLDER}, type="order",
                text=f"placeholder person {i}") for i in range(PLACEHOLDER_PEOPLE)]
    return out


def jane_sets() -> list[tuple[tuple[str, str], ...]]:
    """Every identifier set that carried one of her identifiers, as the pipeline stores it."""
    raw = [{"customer_ref": CRM, "anonymous_id": "anon-jane"}, {"anonymous_id": "anon-jane", "email": EMAIL},
           {"customer_ref": CRM, "phone": LINKED_PHONE}, {"email": EMAIL, "phone": PHONE},
           {"customer_ref": "CRM-BOB-1", "email": EMAIL}]
    return [tuple(sorted(ids.items())) for ids in raw] + [((t, v),) for t, v in
                                                           (("email", EMAIL), ("phone", PHONE), ("customer_ref", CRM))]


def needles() -> list[str]:
    """What must not remain: her values, their unkeyed hashes, and her text."""
    values = [EMAIL, PHONE, PHONE_TYPED, LINKED_PHONE, CRM, "anon-jane", PROPERTY, *TEXTS]
    hashes = [hashlib.sha256(v.encode()).hexdigest() for v in values]
    hashes += [identity_key(s) for s in jane_sets()]
    return [*values, *hashes, "Jane.Doe@Example.com"]


def find(texts: Iterable[tuple[str, str]], wanted: Iterable[str]) -> list[str]:
    """`where: needle` for every needle found (case-insensitive) in (where, text) pairs."""
    wanted = [w.lower() for w in wanted]
    return [f"{where}: {w}" for where, text in texts for w in wanted if w in text.lower()]


def warehouse_texts(warehouse: Warehouse) -> Iterable[tuple[str, str]]:
    """Every row of every table and view of the database, and of the system tables an analyst can read that
    keep statement text."""
    db = warehouse.database
    names = [str(r[0]) for r in warehouse.query(f"SELECT name FROM system.tables WHERE database = '{db}'")]
    assert {"interaction_log", "identity_sets", "identity_links", "interactions", "erasure_audit"} <= set(names)
    for name in names:
        for row in warehouse.query(f"SELECT * FROM {db}.{name}"):
            yield f"{db}.{name}", repr(row)
    system = {str(r[0]) for r in warehouse.query("SELECT name FROM system.tables WHERE database = 'system'")}
    for name in ("mutations", "query_log", "query_thread_log", "user_query_log", "text_log", "processes"):
        if name in system:
            for row in warehouse.query(f"SELECT * FROM system.{name}"):
                yield f"system.{name}", repr(row)


def file_texts(root: Path, pattern: str = "mutation_*.txt") -> Iterable[tuple[str, str]]:
    files = list(root.rglob(pattern))
    for path in files:
        yield str(path.name), path.read_text(errors="replace")
