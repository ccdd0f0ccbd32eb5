"""The versions kept in schemas/ (schemas.evolution.check_versions, `cem schemas check`) and the refusals of
`cem schemas register`, which happen before any Kafka connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import schemas.codec as codec
from cem.cli import main
from schemas.evolution import check_versions
from tests.unit.schema_changes import LOCALE, V1, V2, add, drop, evolve


# ---- the versions kept in schemas/ ------------------------------------------------------------------------
def test_the_shipped_versions_pass() -> None:
    assert check_versions() == []
    assert main(["schemas", "check"]) == 0


def _versions(*documents: dict[str, Any]) -> dict[int, Any]:
    return {i + 1: d for i, d in enumerate(documents)}


def test_compatible_chain_passes() -> None:
    v3 = evolve(add(LOCALE, {"name": "campaign", "type": ["null", "string"], "default": None}))
    assert check_versions(_versions(V1, V2, v3)) == []
    assert check_versions(_versions(V1, evolve(drop("text")))) == []  # text has a default in v1


def test_a_new_field_without_default_fails() -> None:
    problems = check_versions(_versions(V1, evolve(add({"name": "locale", "type": "string"}))))
    assert len(problems) == 1
    assert problems[0].startswith("v2 cannot read records written with v1: reader_field_missing_default_value")


def test_dropping_a_required_field_fails() -> None:
    problems = check_versions(_versions(V1, evolve(drop("event_id"))))
    assert len(problems) == 1
    assert problems[0].startswith("v1 cannot read records written with v2: ")
    assert "event_id" in problems[0]


def test_the_current_version_must_read_every_older_one() -> None:
    # v2 adds an optional locale, v3 makes it required (a default is not part of the canonical form, so v3 also
    # reorders the union): each reads its neighbour's records, v3 cannot read v1's.
    v3 = evolve(add({"name": "locale", "type": ["string", "null"]}))
    problems = check_versions(_versions(V1, V2, v3))
    assert problems == [problems[0]]
    assert problems[0].startswith("v3 cannot read records written with v1: ")


def test_every_newer_version_must_read_every_older_one_not_only_the_current() -> None:
    # v3 requires the locale that v2 added with a default: v3 reads v2's records but not v1's; v4 gives the locale
    # a default again, so the current version and every neighbour pair pass, and only the pair (v3, v1) fails.
    required = evolve(add({"name": "locale", "type": ["string", "null"]}))
    v4 = evolve(add({"name": "locale", "type": ["null", "string"], "default": None},
                    {"name": "campaign", "type": ["null", "string"], "default": None}))
    problems = check_versions(_versions(V1, V2, required, v4))
    assert len(problems) == 1
    assert problems[0].startswith("v3 cannot read records written with v1: ")


def test_same_canonical_form_fails() -> None:
    doc_only = evolve(lambda s: s.update(doc="Version 2, only the doc changed"))
    assert check_versions(_versions(V1, doc_only)) == [
        "v2 has the canonical form of v1 (only docs or logical types differ), so records cannot tell them "
        "apart: keep one"]


def test_an_invalid_version_fails() -> None:
    problems = check_versions(_versions(V1, {"type": "record", "name": "Interaction", "fields": [{"name": "x"}]}))
    assert len(problems) == 1 and problems[0].startswith("v2: not a valid Avro schema")


@pytest.fixture
def schema_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(codec, "SCHEMA_DIR", tmp_path)
    (tmp_path / "interaction.v1.avsc").write_text(json.dumps(V1))
    for cached in (codec.schema_documents, codec.schema_versions, codec.default_registry):
        cached.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    for cached in (codec.schema_documents, codec.schema_versions, codec.default_registry):
        cached.cache_clear()


def test_schemas_check_command_fails_on_an_incompatible_version(schema_dir: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (schema_dir / "interaction.v2.avsc").write_text(json.dumps(evolve(add({"name": "locale", "type": "string"}))))
    assert main(["schemas", "check"]) == 1
    assert "v2 cannot read records written with v1" in capsys.readouterr().err
    (schema_dir / "interaction.v2.avsc").write_text(json.dumps(V2))
    codec.schema_documents.cache_clear()
    assert main(["schemas", "check"]) == 0
    assert "v1, v2 compatible" in capsys.readouterr().out


# ---- `cem schemas register` refusals (they happen before any Kafka connection) -------------------------------
def test_register_refuses_an_incompatible_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text(json.dumps(evolve(drop("event_id"))))
    assert main(["schemas", "register", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refused: records written with it cannot be read with the reader schema: ")
    assert "event_id" in err


def test_register_refuses_an_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.avsc"
    path.write_text("{not json")
    assert main(["schemas", "register", str(path)]) == 1
    assert capsys.readouterr().err.startswith("refused: not JSON")
    assert main(["schemas", "register", str(tmp_path / "missing.avsc")]) == 2


def test_register_a_kept_version_is_a_no_op(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(codec.__file__).parent / "interaction.v1.avsc"
    assert main(["schemas", "register", str(path)]) == 0
    assert "is version 1 kept in schemas/" in capsys.readouterr().out
