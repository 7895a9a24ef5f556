"""Reading a SQLite store file straight, as a test does while a crawl in another process
may still be writing it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any


def stored_count(database: Path, collection: str) -> tuple[int, int]:
    """Rows and distinct keys of a collection, read while a crawl may be writing."""
    query = f"SELECT COUNT(*), COUNT(DISTINCT key) FROM {collection}"  # noqa: S608 - ours
    try:
        with closing(sqlite3.connect(database, timeout=5)) as db:
            return db.execute(query).fetchone()
    except sqlite3.OperationalError:  # no table before the first batch
        return 0, 0


def saved_state(database: Path, name: str) -> dict[str, Any]:
    """A sync_state value straight from a SQLite store file ({} when there is none)."""
    with closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT value FROM sync_state WHERE name = ?", (name,)).fetchone()
    return json.loads(row[0]) if row else {}
