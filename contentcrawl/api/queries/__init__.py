"""Read queries of the API over the configured store, and the factory that picks them."""

from __future__ import annotations

from typing import Any

from contentcrawl.api.queries.base import Condition, Json, ReadQueries
from contentcrawl.api.queries.mongo import MongoReadQueries
from contentcrawl.api.queries.sqlite import SqliteReadQueries
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore

__all__ = ["Condition", "Json", "ReadQueries", "queries_for"]


def queries_for(store: Any) -> ReadQueries:
    """The read queries of an opened store (``SqliteStore`` or ``MongoStore``)."""
    if isinstance(store, SqliteStore):
        return SqliteReadQueries(store.connection)
    if isinstance(store, MongoStore):
        return MongoReadQueries(store.db)
    raise TypeError(f"no read queries for {type(store).__name__}")
