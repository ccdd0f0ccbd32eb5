"""Changes to the first Avro writer schema kept in schemas/, as a producer would make them: shared by the tests of
the registry and of the versions kept in schemas/."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from schemas.codec import schema_documents

V1: dict[str, Any] = schema_documents()[1]
LOCALE = {"name": "locale", "type": ["null", "string"], "default": None}


def evolve(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    change(schema)
    return schema


def add(*fields: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda s: s["fields"].extend(fields)


def drop(*names: str) -> Callable[[dict[str, Any]], None]:
    def change(s: dict[str, Any]) -> None:
        s["fields"] = [f for f in s["fields"] if f["name"] not in names]
    return change


def retype(name: str, new_type: Any) -> Callable[[dict[str, Any]], None]:
    def change(s: dict[str, Any]) -> None:
        field = next(f for f in s["fields"] if f["name"] == name)
        field["type"] = new_type
        field.pop("default", None)
    return change


def survey_score(new_type: str) -> Callable[[dict[str, Any]], None]:
    return lambda s: next(f for f in s["fields"] if f["name"] == "survey")["type"][1]["fields"][1].update(
        type=new_type)


def rename(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda s: s.update(name=name)


def renamespace(namespace: str) -> Callable[[dict[str, Any]], None]:
    return lambda s: s.update(namespace=namespace)


def reverse(s: dict[str, Any]) -> None:
    s["fields"].reverse()


V2 = evolve(add(LOCALE))
