"""Stores: where records live. ``open_store`` picks MongoDB or the SQLite default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from contentcrawl.store.base import (
    COLLECTION_KEYS,
    Record,
    Store,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    UpsertResult,
    key_field_of,
)

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings


def build_store(settings: BaseSettings) -> Store:
    """The store the settings name: MongoDB when ``MONGO_URI`` is set, else SQLite."""
    retries = settings.getint("STORE_WRITE_RETRIES")
    mongo_uri = settings.get("MONGO_URI")
    if mongo_uri:
        from contentcrawl.store.mongo import MongoStore

        return MongoStore(
            mongo_uri,
            settings.get("MONGO_DATABASE") or "contentcrawl",
            connect_timeout=settings.getfloat("MONGO_CONNECT_TIMEOUT"),
            write_retries=retries,
        )
    from contentcrawl.store.sqlite import SqliteStore

    return SqliteStore(
        settings.get("SQLITE_PATH") or "data/contentcrawl.sqlite3",
        busy_timeout=settings.getfloat("SQLITE_BUSY_TIMEOUT"),
        write_retries=retries,
    )


__all__ = [
    "COLLECTION_KEYS",
    "Record",
    "Store",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "UpsertResult",
    "build_store",
    "key_field_of",
]
