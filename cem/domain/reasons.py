"""Why a record became a dead letter: the stable, machine-readable codes of the `cem.reason` header.

They are part of the dead-letter contract (README, "Dead letters"; a test keeps the two in step): never rename
one. Members are strings, so a Reason is written to headers and metric labels as its value.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Decoding the raw bytes (schemas.codec)
    EMPTY_RECORD = "empty_record"
    TOO_LARGE = "too_large"
    UNKNOWN_ENCODING = "unknown_encoding"
    MALFORMED_JSON = "malformed_json"
    INVALID_UTF8 = "invalid_utf8"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    UNKNOWN_SCHEMA = "unknown_schema"
    MALFORMED_AVRO = "malformed_avro"
    # Validating the record (cem.domain.validate)
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_EVENT_ID = "invalid_event_id"
    UNKNOWN_CHANNEL = "unknown_channel"
    CHANNEL_MISMATCH = "channel_mismatch"
    INVALID_TYPE = "invalid_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TOO_MANY_IDENTIFIERS = "too_many_identifiers"
    UNKNOWN_IDENTIFIER_TYPE = "unknown_identifier_type"
    NO_VALID_IDENTIFIER = "no_valid_identifier"
    TEXT_TOO_LONG = "text_too_long"
    FIELD_TOO_LONG = "field_too_long"
    TOO_MANY_PROPERTIES = "too_many_properties"
    INVALID_SURVEY = "invalid_survey"
    INTERNAL_ERROR = "internal_error"
    # The resolver's dead letters (the value is the event as contract JSON)
    WAREHOUSE_REJECTED = "warehouse_rejected"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    # Messages on cem's own topics
    BAD_SIGNATURE = "bad_signature"
    INVALID_INTERNAL_MESSAGE = "invalid_internal_message"
    INVALID_CONTROL = "invalid_control"
