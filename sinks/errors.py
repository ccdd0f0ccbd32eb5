"""ClickHouse error codes: a warehouse refusing the data of an insert, told apart from one that is unwell.

Only refusals are isolated row by row and dead-lettered (`warehouse_rejected`); every other failure is retried
with backoff, so nothing valid is ever dropped because the warehouse was unavailable, overloaded or misconfigured.
"""

from __future__ import annotations

import re

# Codes that refuse the data of one insert (a value, a type, a constraint).
DATA_REJECTION_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    19,   # SIZE_OF_FIXED_STRING_DOESNT_MATCH
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH, also clickhouse-driver's client-side check of a value against the column type
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DOESNT_MATCH
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    395,  # FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: a throwIf guard in a column DEFAULT (how 18.16 spells CHECK)
    469,  # VIOLATED_CONSTRAINT: a CHECK constraint (current ClickHouse)
})
_ERROR_CODE = re.compile(r"^\s*Code:\s*(\d+)")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of an exception: clickhouse-driver's `.code`, or chdb's "Code: N." text."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _ERROR_CODE.match(str(exc))
    return int(match.group(1)) if match else None


def is_rejection(exc: BaseException) -> bool:
    """True when ClickHouse refused the data itself; retrying the same rows would fail the same way."""
    return error_code(exc) in DATA_REJECTION_CODES


def describe_error(exc: BaseException) -> str:
    """A one-line description for logs: the exception type and code, and the server's first line unless the
    data was refused (a refusal may quote the offending value, which can be an identifier)."""
    code = error_code(exc)
    if code in DATA_REJECTION_CODES:
        return f"{type(exc).__name__} code {code} (data refused)"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]).split(" Stack trace:")[0]
    return f"{type(exc).__name__}: {text[:300]}"


def rejection_detail(exc: BaseException) -> str:
    """The cem.detail header of a warehouse_rejected dead letter: the server's reason, without its stack."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]).split(" Stack trace:")[0][:500]
