"""Read queries on the MongoDB store: ``find`` with the read indexes, ``aggregate`` for facets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database

from contentcrawl.api.queries.base import Condition, Json, ReadQueries
from contentcrawl.api.read_indexes import Filter, ReadModel, Sort, mongo_path
from contentcrawl.store.base import META, key_field_of
from contentcrawl.store.mongo import keyed_by_id

# Records flagged deleted (``_meta.deleted_at`` set) are hidden; null matches a missing field.
LIVE: Json = {f"{META}.deleted_at": None}


def _projection(fields: Sequence[str]) -> Json:
    # Top-level fields only: some wire-compatible servers flatten dotted projections.
    return {"_id": 0, **dict.fromkeys(fields, 1)}


def _records(cursor: Any, fields: Sequence[str]) -> list[Json]:
    # Absent fields read as None, as SQLite's json_object gives them.
    return [{name: record.get(name) for name in fields} for record in cursor]


def _order(model: ReadModel, sort: Sort) -> list[tuple[str, int]]:
    direction = DESCENDING if sort.descending else ASCENDING
    return [(mongo_path(sort.path), direction), (model.key_field, direction)]


def _condition(condition: Condition) -> Json:
    item = condition.filter
    if item.op == "year":
        year = int(condition.value)
        return {mongo_path(item.paths[0]): {"$gte": f"{year:04d}", "$lt": f"{year + 1:04d}"}}
    clauses = [{mongo_path(path): condition.value} for path in item.paths]
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


class MongoReadQueries(ReadQueries):
    """Queries on the store's database, one ``find`` or ``aggregate`` each."""

    def __init__(self, db: Database[Json]) -> None:
        self.db = db

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
        query = {"$and": [LIVE, *(_condition(condition) for condition in conditions)]}
        cursor = (
            self.db[model.collection]
            .find(query, _projection(fields))
            .sort(_order(model, sort))
            .skip(offset)
            .limit(limit)
        )
        return _records(cursor, fields)

    def search(
        self,
        model: ReadModel,
        words: Sequence[str],
        *,
        offset: int,
        limit: int,
        fields: Sequence[str],
    ) -> list[Json]:
        # A word matches where a word of the field starts with it, as FTS5 prefixes do.
        query = {
            "$and": [
                LIVE,
                *(
                    {
                        "$or": [
                            {
                                mongo_path(path): {
                                    "$regex": rf"\b{re.escape(word)}",
                                    "$options": "i",
                                }
                            }
                            for path in model.search
                        ]
                    }
                    for word in words
                ),
            ]
        }
        cursor = (
            self.db[model.collection]
            .find(query, _projection(fields))
            .sort(_order(model, model.rank))
            .skip(offset)
            .limit(limit)
        )
        return _records(cursor, fields)

    def get_many(
        self, collection: str, keys: Sequence[Any], fields: Sequence[str]
    ) -> dict[Any, Json]:
        key_field = key_field_of(collection)
        if not keys:
            return {}
        # By _id where it is the key: nx-27017 scans the collection for $in on any other
        # field (and for $and, which it evaluates document by document).
        field = "_id" if keyed_by_id(self.db[collection]) else key_field
        cursor = self.db[collection].find(
            {field: {"$in": list(dict.fromkeys(keys))}, **LIVE},
            _projection([key_field, *fields]),
        )
        return {record[key_field]: record for record in _records(cursor, [key_field, *fields])}

    def facet(self, model: ReadModel, filter_: Filter) -> list[tuple[Any, int]]:
        path = filter_.paths[0]
        array, _, sub = path.partition("[]")
        value = f"${array}{sub}"
        pipeline: list[Json] = [
            {"$match": LIVE},
            {"$unwind": f"${array}"},
            {"$project": {"_id": 0, "value": value}},
            {"$match": {"value": {"$ne": None}}},
            {"$group": {"_id": "$value", "n": {"$sum": 1}}},
            {"$sort": {"n": DESCENDING, "_id": ASCENDING}},
        ]
        return [(row["_id"], row["n"]) for row in self.db[model.collection].aggregate(pipeline)]
