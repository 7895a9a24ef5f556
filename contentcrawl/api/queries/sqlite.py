"""Read queries on the SQLite store: expression indexes, the FTS5 and terms tables."""

# ruff: noqa: S608 - names and paths in this SQL come from READ_MODELS and the API's field
# lists (checked identifiers), never from a request; values are bound.
from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from contentcrawl.api.queries.base import Condition, Json, ReadQueries
from contentcrawl.api.read_indexes import (
    Filter,
    ReadModel,
    Sort,
    json_path,
    search_table,
    sql_field,
    terms_table,
)
from contentcrawl.store.base import key_field_of


def summary(fields: Sequence[str], doc: str = "doc") -> str:
    """A ``json_object`` of the named top-level fields (lists and objects stay JSON)."""
    pairs = ", ".join(f"'{name}', {doc} -> {json_path(name)}" for name in fields)
    return f"json_object({pairs})"


def _direction(sort: Sort) -> str:
    return "DESC" if sort.descending else "ASC"


class SqliteReadQueries(ReadQueries):
    """Queries written so that SQLite answers them from the read indexes.

    Filters and sorts repeat the indexed expression ``json_extract(doc, '$.<field>')``
    word for word and keep ``deleted_at IS NULL`` (the indexes are partial), or the planner
    would not use them. The connection is the store's: sqlite3 serialises its use.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def find(
        self,
        model: ReadModel,
        conditions: Sequence[Condition],
        sort: Sort,
        *,
        offset: int,
        limit: int,
        fields: Sequence[str],
    ) -> list[Json]:
        where = ["deleted_at IS NULL"]
        params: list[Any] = []
        for condition in conditions:
            clause, values = self._condition(model, condition)
            where.append(clause)
            params += values
        direction = _direction(sort)
        sql = (
            f'SELECT {summary(fields)} FROM "{model.collection}" '
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {sql_field(sort.path)} {direction}, "
            f"{sql_field(model.key_field)} {direction} LIMIT ? OFFSET ?"
        )
        rows = self.connection.execute(sql, [*params, limit, offset]).fetchall()
        return [json.loads(row) for (row,) in rows]

    @staticmethod
    def _condition(model: ReadModel, condition: Condition) -> tuple[str, list[Any]]:
        item = condition.filter
        if item.op == "member":
            terms = terms_table(model.collection)
            # "+key" keeps the planner from starting at the terms of a facet (a genre lists a
            # fifth of the records) rather than at the sort's or another filter's index.
            column = "+key" if item.facet else "key"
            return (
                f'{column} IN (SELECT key FROM "{terms}" WHERE name = ? AND term = ?)',
                [item.name, condition.value],
            )
        field = sql_field(item.paths[0])
        if item.op == "year":
            year = int(condition.value)
            return f"{field} >= ? AND {field} < ?", [f"{year:04d}", f"{year + 1:04d}"]
        return f"{field} = ?", [condition.value]

    def search(
        self,
        model: ReadModel,
        words: Sequence[str],
        *,
        offset: int,
        limit: int,
        fields: Sequence[str],
    ) -> list[Json]:
        table = search_table(model.collection)
        # Each word a quoted prefix query; FTS5 ANDs them.
        match = " ".join(f'"{word}"*' for word in words)
        direction = _direction(model.rank)
        sql = (
            f'SELECT {summary(fields, "d.doc")} FROM "{table}" '
            f'JOIN "{model.collection}" AS d ON d.rowid = "{table}".rowid '
            f'WHERE "{table}" MATCH ? '
            f"ORDER BY rank_value {direction}, key_value {direction} LIMIT ? OFFSET ?"
        )
        rows = self.connection.execute(sql, (match, limit, offset)).fetchall()
        return [json.loads(row) for (row,) in rows]

    def get_many(
        self, collection: str, keys: Sequence[Any], fields: Sequence[str]
    ) -> dict[Any, Json]:
        key_field = key_field_of(collection)
        if not keys:
            return {}
        texts = list(dict.fromkeys(str(key) for key in keys))
        placeholders = ",".join("?" * len(texts))
        sql = (
            f'SELECT {summary([key_field, *fields])} FROM "{collection}" '
            f"WHERE deleted_at IS NULL AND key IN ({placeholders})"
        )
        found = (json.loads(row) for (row,) in self.connection.execute(sql, texts).fetchall())
        return {record[key_field]: record for record in found}

    def facet(self, model: ReadModel, filter_: Filter) -> list[tuple[Any, int]]:
        terms = terms_table(model.collection)
        rows = self.connection.execute(
            f'SELECT term, COUNT(*) AS n FROM "{terms}" WHERE name = ? '
            "GROUP BY term ORDER BY n DESC, term",
            (filter_.name,),
        ).fetchall()
        return [(term, count) for term, count in rows]
