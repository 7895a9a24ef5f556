"""IGDB v4's query language and answer format, as far as the crawler uses them.

Apicalypse text (``fields``, ``where`` with ``&``, ``sort``, ``limit``, ``offset``, and the
``query <endpoint> "name" { ... };`` blocks of a multiquery) parsed as IGDB reads it, a record
projected on ``fields`` as IGDB answers it (dotted fields expand referenced objects, undotted
ones give bare ids, absent fields are omitted), and JSON and 400 bodies written as IGDB
writes them. The fake API that serves them is ``fakes/igdb.py``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spiders_tests.fakes.server import FakeResponse


class ApicalypseError(ValueError):
    """A query IGDB would answer with 400."""


_STATEMENT = re.compile(r"\s*(fields|exclude|where|sort|limit|offset)\s+([^;]*?)\s*;", re.S)
_CONDITION = re.compile(r"\s*([a-z_]+(?:\.[a-z_]+)*)\s*(>=|<=|!=|=|>|<)\s*(-?\d+)\s*")
QUERY_BLOCK = re.compile(r'\s*query\s+([a-z_]+(?:/count)?)\s+"([^"]*)"\s*\{([^{}]*)\}\s*;', re.S)
OPERATORS: dict[str, Callable[[Any, int], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


@dataclass
class Query:
    fields: list[list[str]] = field(default_factory=lambda: [["id"]])
    where: list[tuple[str, str, int]] = field(default_factory=list)
    sort: tuple[str, bool] | None = None  # (field, descending)
    limit: int = 10  # IGDB's default
    offset: int = 0


def parse_query(text: str) -> Query:
    """Parse an Apicalypse query; ApicalypseError for what IGDB would reject."""
    query = Query()
    position = 0
    for match in _STATEMENT.finditer(text):
        if text[position : match.start()].strip():
            raise ApicalypseError(
                f"Unexpected input at \u0027{text[position : match.start()]}\u0027"
            )
        position = match.end()
        keyword, value = match[1], match[2]
        if keyword == "fields":
            query.fields = [part.strip().split(".") for part in value.split(",") if part.strip()]
        elif keyword == "where":
            query.where = [_condition(part) for part in value.split("&")]
        elif keyword == "sort":
            name, _, direction = value.partition(" ")
            if direction.strip() not in ("", "asc", "desc"):
                raise ApicalypseError(f"Invalid sort direction \u0027{direction.strip()}\u0027")
            query.sort = (name.strip(), direction.strip() == "desc")
        elif keyword == "limit":
            query.limit = int(value)
            if not 1 <= query.limit <= 500:
                raise ApicalypseError("Limit must be between 1 and 500")
        elif keyword == "offset":
            query.offset = int(value)
        else:
            raise ApicalypseError(f"Unsupported by this fake: {keyword}")
    if text[position:].strip():
        raise ApicalypseError(f"Unexpected input at \u0027{text[position:].strip()}\u0027")
    return query


def _condition(text: str) -> tuple[str, str, int]:
    match = _CONDITION.fullmatch(text)
    if not match:
        raise ApicalypseError(f"Expecting a condition, got \u0027{text.strip()}\u0027")
    return match[1], match[2], int(match[3])


def project(record: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    """The record as IGDB returns it for ``fields``: dotted paths expand, others give ids."""
    if ["*"] in paths:
        paths = [[name] for name in record] + paths
    out: dict[str, Any] = {"id": record["id"]}
    heads: dict[str, list[list[str]]] = defaultdict(list)
    for path in paths:
        if path != ["*"]:
            heads[path[0]].append(path[1:])
    for head, tails in heads.items():
        if head not in record:
            continue  # IGDB omits absent fields rather than sending null
        value = record[head]
        deeper = [tail for tail in tails if tail]
        if not deeper:
            out[head] = _collapse(value)
        elif isinstance(value, list):
            out[head] = [project(v, deeper) if isinstance(v, dict) else v for v in value]
        elif isinstance(value, dict):
            out[head] = project(value, deeper)
        else:
            out[head] = value
    return out


def _collapse(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("id")
    if isinstance(value, list):
        return [_collapse(entry) for entry in value]
    return value


def igdb_json(payload: Any) -> bytes:
    """JSON as IGDB writes it: 2-space indent, raw UTF-8, Gson's HTML-safe escapes."""
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    for char in "'<>&=":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode()


def error_400(cause: str) -> FakeResponse:
    """IGDB's 400: a JSON array of ``{title, status, cause}``."""
    body = igdb_json([{"title": "Syntax Error", "status": 400, "cause": cause}])
    return FakeResponse(400, body, {"Content-Type": "application/json;charset=utf-8"})
