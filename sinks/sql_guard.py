"""The statement guard of read-only warehouse connections (`cem sql`, `cem report`, `cem identity explain`).

The embedded engine (chdb) is its own client, so `INTO OUTFILE` writes a file even with readonly=1, and some
functions (`file(...)`) read files in readonly mode. The guard therefore reads the statement with a real
ClickHouse tokenizer and parser (sqlglot's ClickHouse dialect), allows exactly one read statement, and refuses
everything that reaches outside the warehouse or lifts the session's limits. It fails closed: what it cannot
tokenise or parse is refused.

What runs is the statement the guard read: the SQL sent to the engine is rebuilt from the tokens, as written,
with every comment dropped. A comment the engine would read differently from the tokenizer can hide nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.clickhouse import ClickHouse
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Token, TokenType

# Table functions that only generate rows in memory and that ClickHouse itself runs in readonly mode (zeros() it
# does not). Everything else is refused in a table position.
ALLOWED_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "generate_series", "generateseries", "values"})
# Functions refused anywhere, as a table function or a scalar (`file(path)` reads a file): every table function
# of ClickHouse 18.16 and 26.9 that is not allowed, bar `format`, whose scalar namesake formats strings.
DENIED_FUNCTIONS = frozenset({
    "arrowstream", "azureblobstorage", "azureblobstoragecluster", "bigquery", "catboostpool", "cluster",
    "clusterallreplicas", "cosn", "deltalake", "dictionary", "eval", "executable", "file", "filecluster",
    "filesystem", "fuzzjson", "fuzzquery", "gcs", "generaterandom", "hdfs", "hdfscluster", "hive", "hudi", "input",
    "jdbc", "loop", "merge", "mongodb", "mysql", "null", "odbc", "oss", "paimon", "postgresql", "primes", "python",
    "redis", "remote", "remotesecure", "s3", "s3cluster", "sqlite", "sqlstandardvalues", "url", "urlcluster", "view",
    "viewexplain", "viewifpermitted", "ytsaurus", "zeros", "zeros_mt",
})
# Families that grow with every ClickHouse release; none of them has a harmless scalar namesake.
DENIED_PREFIXES = ("azure", "deltalake", "hdfs", "hudi", "iceberg", "mergetree", "paimon", "prometheus", "remote",
                   "s3", "timeseries")
READ_STATEMENTS = {"SELECT": "select", "WITH": "select", "SHOW": "show", "DESCRIBE": "describe",
                   "DESC": "describe", "EXISTS": "exists", "EXPLAIN": "explain"}
EXPLAIN_KINDS = {"AST", "SYNTAX", "QUERY", "TREE", "PLAN", "PIPELINE", "ESTIMATE"}
# Clause keywords: a comma right after FROM's table list is another table; after any of these it is not.
CLAUSES = {"SELECT", "WHERE", "PREWHERE", "GROUP", "GROUP BY", "ORDER", "ORDER BY", "HAVING", "LIMIT", "ON", "USING",
           "UNION", "INTERSECT", "EXCEPT", "WINDOW", "QUALIFY", "SETTINGS", "FORMAT", "WITH", "SAMPLE", "ARRAY JOIN"}
TABLE_POSITION = {"FROM", "JOIN", "TABLE", "DESCRIBE", "DESC"}
# Keywords a parenthesis may follow without being a call: `IN (`, `FROM (`, `AND (`.
NOT_CALLS = CLAUSES | TABLE_POSITION | {"IN", "AS", "AND", "OR", "NOT", "EXISTS", "BY", "ALL", "DISTINCT", "ANY",
                                        "THEN", "ELSE", "WHEN", "CASE", "EXPLAIN", "BETWEEN", "IS", "INTERVAL"}
_NOT_NAMES = {TokenType.STRING, TokenType.NUMBER, TokenType.HEX_STRING, TokenType.BIT_STRING,
              TokenType.HEREDOC_STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING, TokenType.BYTE_STRING}
_QUOTED = _NOT_NAMES | {TokenType.IDENTIFIER}
_COMMAND_KEYWORDS = ClickHouse.tokenizer_class.COMMANDS
_TOKENIZER = ClickHouse().tokenizer_class(dialect="clickhouse")
_MAX_NESTING = 4
_PLAIN = frozenset(map(chr, range(32, 127))) | frozenset("\t\n\r\x0b\x0c")  # both read these the same


class ReadOnlyViolation(Exception):
    """The statement is not one plain read: refused before it reaches the engine."""


@dataclass(frozen=True)
class ReadStatement:
    kind: str  # select, show, describe, exists or explain
    sql: str  # what is sent: the statement's tokens as written, comments and trailing semicolons dropped


@dataclass(frozen=True)
class _Tok:
    type: TokenType
    text: str  # the value: a string's content, an identifier's name, a keyword as written
    raw: str  # the source, quotes and escapes included
    start: int
    end: int  # exclusive

    @property
    def word(self) -> str:
        """The keyword, upper-cased and NFKC-normalised (a full-width INTO is INTO), or '' for a literal or a quoted
        identifier, which are never keywords."""
        return "" if self.type in _QUOTED else " ".join(unicodedata.normalize("NFKC", self.text).upper().split())


def refuse(reason: str) -> ReadOnlyViolation:
    return ReadOnlyViolation(f"this connection is read-only: {reason}")


def check_read_only(sql: str) -> ReadStatement:
    """The one read statement in `sql`, ready to send; raises ReadOnlyViolation for anything else."""
    tokens = _statement(_tokens(sql, 0, 0))
    if not tokens:
        raise refuse("empty statement")
    kind = _kind(tokens)
    _check_clauses(tokens)
    _check_calls(tokens)
    text = _rebuild(tokens)
    if kind == "select":
        _check_parsed(text)
    elif kind == "explain":
        _check_parsed(_rebuild(_explained(tokens)))
    elif kind == "exists":
        _check_exists(tokens)
    return ReadStatement(kind, text)


def _tokens(sql: str, offset: int, depth: int) -> list[_Tok]:
    """sqlglot's tokens with their source. A command keyword (SHOW, EXPLAIN) makes sqlglot swallow the rest of
    the statement as one string: that text is tokenised again, so it gets the same checks as a SELECT."""
    if depth > _MAX_NESTING:
        raise refuse("too deeply nested statement")
    try:
        raw_tokens: list[Token] = _TOKENIZER.tokenize(sql)
    except SqlglotError as exc:
        raise refuse(f"cannot read the statement (unterminated string, quote or comment?): {exc}") from exc
    out: list[_Tok] = []
    for i, token in enumerate(raw_tokens):
        previous = raw_tokens[i - 1] if i else None
        if previous is not None and previous.token_type in _COMMAND_KEYWORDS and token.token_type == TokenType.STRING:
            rest_end = raw_tokens[i + 1].start if i + 1 < len(raw_tokens) else len(sql)
            rest_start = previous.end + 1
            out.extend(_tokens(sql[rest_start:rest_end], offset + rest_start, depth + 1))
            continue
        raw = sql[token.start:token.end + 1]
        if token.token_type not in _QUOTED and not _PLAIN.issuperset(raw):
            # ClickHouse reads a zero-width or non-breaking space as a separator, the tokenizer as part of a word:
            # `INTO<U+200B>OUTFILE` would be one harmless name to the guard and INTO OUTFILE to the engine.
            raise refuse(f"non-ASCII or control characters outside strings and quoted names ({raw!r})")
        if token.token_type not in _QUOTED and any(mark in raw for mark in ("--", "/*", "#")):
            raise refuse("cannot read the statement: a comment inside a keyword")
        out.append(_Tok(token.token_type, token.text, raw, offset + token.start, offset + token.end + 1))
    return out


def _statement(tokens: list[_Tok]) -> list[_Tok]:
    """The tokens of the only statement: trailing semicolons are allowed, a second statement is not."""
    semicolons = [i for i, t in enumerate(tokens) if t.type == TokenType.SEMICOLON]
    if semicolons and any(t.type != TokenType.SEMICOLON for t in tokens[semicolons[0]:]):
        raise refuse("one statement at a time")
    return tokens[:semicolons[0]] if semicolons else tokens


def _rebuild(tokens: list[_Tok]) -> str:
    """The statement as written, minus comments: adjacent tokens stay adjacent, anything between becomes a space."""
    parts: list[str] = []
    for i, token in enumerate(tokens):
        if i and token.start != tokens[i - 1].end:
            parts.append(" ")
        parts.append(token.raw)
    return "".join(parts)


def _kind(tokens: list[_Tok]) -> str:
    first = next((t for t in tokens if t.type != TokenType.L_PAREN), tokens[0])
    kind = READ_STATEMENTS.get(first.word)
    if kind is None:
        raise refuse("only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN of a SELECT")
    if first is not tokens[0] and kind != "select":
        raise refuse("only a SELECT may stand in parentheses")
    return kind


def _check_clauses(tokens: list[_Tok]) -> None:
    for i, token in enumerate(tokens):
        word = token.word
        near_dot = any(0 <= j < len(tokens) and tokens[j].type == TokenType.DOT for j in (i - 1, i + 1))
        calls = i + 1 < len(tokens) and tokens[i + 1].type == TokenType.L_PAREN
        if word == "OUTFILE" or (word == "INTO" and i + 1 < len(tokens) and tokens[i + 1].word == "OUTFILE"):
            raise refuse("no INTO OUTFILE (it writes a file)")
        if word == "INTO":
            raise refuse("reads only, no INSERT INTO")
        if word == "SETTINGS" and not near_dot:
            raise refuse("no SETTINGS clause (the limits of this connection are CEM_SQL_* settings)")
        if word == "FORMAT" and not near_dot and not calls:
            raise refuse("no FORMAT clause (choose the output with --format)")


def _check_calls(tokens: list[_Tok]) -> None:
    """Refuse functions that reach outside anywhere, and any table function not on the allow-list."""
    frames = [_Frame(call=False)]  # one per open parenthesis: which clause it is in, and whether it holds arguments
    for i, token in enumerate(tokens):
        before = tokens[i - 1] if i else None
        if token.type == TokenType.L_PAREN:
            frames.append(_Frame(call=before is not None and _is_name(before) and before.word not in NOT_CALLS))
        elif token.type == TokenType.R_PAREN and len(frames) > 1:
            frames.pop()
        elif token.word in CLAUSES or token.word in TABLE_POSITION:
            frame = frames[-1]
            if not frame.call or frame.clause or token.word in ("SELECT", "WITH"):
                frame.clause = token.word  # in a call's arguments, FROM only counts after a SELECT
        if i + 1 >= len(tokens) or tokens[i + 1].type != TokenType.L_PAREN or not _is_name(token, any_text=True):
            continue
        name = token.text
        if not name.isascii() or not name.replace("_", "a").isalnum():
            raise refuse(f"no function named with non-ASCII or unusual characters ({name!r})")
        folded = unicodedata.normalize("NFKC", name).casefold()
        if folded in DENIED_FUNCTIONS or folded.startswith(DENIED_PREFIXES):
            raise refuse(f"no {name}() (files, URLs, other servers and processes are out of reach)")
        if _in_table_position(tokens, i, frames[-1]) and folded not in ALLOWED_TABLE_FUNCTIONS:
            allowed = ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
            raise refuse(f"no table function {name}() (allowed: {allowed})")


@dataclass
class _Frame:
    call: bool  # inside a function's arguments: `extract(DAY FROM d)` has no table after FROM
    clause: str = ""


def _is_name(token: _Tok, any_text: bool = False) -> bool:
    """A quoted identifier, or a word (a keyword or a name; with any_text, in any script)."""
    if token.type in _NOT_NAMES:
        return False
    if token.type == TokenType.IDENTIFIER:
        return True
    if any_text:
        return token.text[:1] == "_" or token.text[:1].isalpha()
    return token.text.isascii() and token.text.replace("_", "a").isalnum()


def _in_table_position(tokens: list[_Tok], i: int, frame: _Frame) -> bool:
    before = tokens[i - 1] if i else None
    if before is None or (frame.call and not frame.clause):
        return False
    if before.word == "JOIN" and i >= 2 and tokens[i - 2].word == "ARRAY":
        return False  # ARRAY JOIN takes expressions
    if before.word in TABLE_POSITION:
        return True
    return before.type == TokenType.COMMA and frame.clause == "FROM"


def _check_parsed(sql: str) -> None:
    """A SELECT must parse as exactly one query, and no table in it may be a function not on the allow-list."""
    try:
        parsed = sqlglot.parse(sql, read="clickhouse")
    except SqlglotError as exc:
        raise refuse(f"the guard cannot parse this statement ({_parse_error(exc)}): a syntax error, or ClickHouse "
                      "syntax the guard does not know") from exc
    if len(parsed) != 1 or not isinstance(parsed[0], exp.Query):
        raise refuse("only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN of a SELECT")
    for table in parsed[0].find_all(exp.Table):
        function = table.this
        if isinstance(function, exp.Func):
            name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
            if name.casefold() not in ALLOWED_TABLE_FUNCTIONS:
                raise refuse(f"no table function {name}()")


def _parse_error(exc: SqlglotError) -> str:
    errors = getattr(exc, "errors", None)
    if not errors:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    first = errors[0]
    description = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", str(first.get("description", "")))
    return f"{description} near {first.get('highlight', '')!r}, line {first.get('line')}, column {first.get('col')}"


def _explained(tokens: list[_Tok]) -> list[_Tok]:
    """The SELECT after `EXPLAIN [kind] [option = value, ...]`."""
    i = 1
    while i < len(tokens) and tokens[i].word in EXPLAIN_KINDS:
        i += 1
    while i + 2 < len(tokens) and tokens[i + 1].type == TokenType.EQ and tokens[i + 2].type == TokenType.NUMBER:
        i += 3
        if i < len(tokens) and tokens[i].type == TokenType.COMMA:
            i += 1
    inner = tokens[i:]
    first = next((t for t in inner if t.type != TokenType.L_PAREN), None)
    if first is None or READ_STATEMENTS.get(first.word) != "select":
        raise refuse("EXPLAIN of a SELECT only")
    return inner


def _check_exists(tokens: list[_Tok]) -> None:
    """EXISTS [TEMPORARY] [TABLE|DICTIONARY|DATABASE|VIEW] [db.]name: names and dots only."""
    if not all(t.type == TokenType.DOT or _is_name(t) for t in tokens[1:]):
        raise refuse("EXISTS takes a table name only")
