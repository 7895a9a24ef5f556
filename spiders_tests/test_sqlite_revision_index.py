"""SQLite's index of revisions (``held_revisions`` of MusicBrainz dump lines): its query
plan, a store from an earlier version gaining it, its drop and build around a first import,
and a locked file."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from contentcrawl.store import Record, StoreError
from contentcrawl.store.sqlite import SqliteStore


def test_sqlite_finds_held_revisions_by_an_index_a_reopened_older_store_gains(
    tmp_path: Path,
) -> None:
    older = SqliteStore(tmp_path / "store.sqlite3")
    older.open()
    older.upsert_many("artists", [Record({"mbid": "mbid-1"}, "musicbrainz", revision=5)])
    # A store from before the index.
    older.connection.execute('DROP INDEX "artists_revision"')
    older.close()

    store = SqliteStore(tmp_path / "store.sqlite3")
    store.open()
    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    assert store.held_revisions("artists", [5, 6], list) == {5}
    store.connection.set_trace_callback(None)

    def plan_of(query: str) -> str:
        # A connection of its own: a cached statement would keep the plan of its first run.
        with closing(sqlite3.connect(tmp_path / "store.sqlite3")) as connection:
            return " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {query}"))

    (query,) = statements
    assert "INDEX artists_revision" in plan_of(query)
    assert "SCAN artists" not in plan_of(query)
    store.defer_revision_index("artists")
    assert "SCAN artists" in plan_of(query)
    store.build_revision_index("artists")
    assert "INDEX artists_revision" in plan_of(query)
    store.close()


def test_sqlite_index_of_revisions_a_locked_file_cannot_change_is_a_store_error(
    tmp_path: Path,
) -> None:
    """Another writer holding the file past the busy timeout: the import is told with a
    StoreError (it warns and goes on), not an sqlite3 error."""
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path, busy_timeout=0.05)
    store.open()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="DROP INDEX"):
            store.defer_revision_index("artists")
        other.execute("ROLLBACK")
    store.defer_revision_index("artists")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="CREATE INDEX"):
            store.build_revision_index("artists")
        other.execute("ROLLBACK")
    store.build_revision_index("artists")
    store.close()
