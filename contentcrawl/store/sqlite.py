"""The embedded default store: one SQLite file, one table per collection, WAL mode."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from contentcrawl.private_files import FILE_MODE, make_dir, restrict
from contentcrawl.store.base import (
    COLLECTION_KEYS,
    DIGEST_REVISIONS,
    META,
    Existing,
    Store,
    StoreError,
    StoreUnavailableError,
    Write,
    canonical_json,
    key_field_of,
    merge_failure,
    utc_now,
)

# SQLite caps the number of bound parameters per statement (32766 since 3.32).
_MAX_PARAMS = 30000


class SqliteStore(Store):
    """Records as JSON text in ``<collection>(key, doc, hash, revision, first_seen, updated_at)``.

    ``key`` is the source id as text (primary key, so unique); ``doc`` is the whole document
    including ``_meta``. One transaction per batch, taken with ``BEGIN IMMEDIATE`` so the
    read of existing hashes and the write are atomic even with several processes writing.
    """

    transient_errors = (sqlite3.OperationalError,)

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        # One connection shared by the pipeline's writer thread and any reader thread.
        self._lock = threading.RLock()

    @property
    def description(self) -> str:
        return f"SQLite {self.path}"

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("SqliteStore used before open()")
        return self._connection

    def open(self) -> None:
        if self._connection is not None:
            return
        try:
            self._open()
        except (OSError, sqlite3.Error) as error:
            # A path that cannot hold the file (a parent that is a file, no permission, a
            # read-only disk): the crawl closes with store_unavailable, not a traceback.
            raise StoreUnavailableError(f"cannot open SQLite {self.path}: {error}") from error

    def _open(self) -> None:
        if str(self.path) != ":memory:":
            self._create_owner_only()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        try:
            _enable_wal(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            for collection in COLLECTION_KEYS:
                connection.execute(
                    f'CREATE TABLE IF NOT EXISTS "{collection}" ('
                    "key TEXT PRIMARY KEY, doc TEXT NOT NULL, hash TEXT NOT NULL, "
                    "revision INTEGER, first_seen TEXT NOT NULL, updated_at TEXT NOT NULL, "
                    "deleted_at TEXT)"
                )
                connection.execute(
                    f'CREATE INDEX IF NOT EXISTS "{collection}_updated_at" '
                    f'ON "{collection}"(updated_at)'
                )
                if collection in DIGEST_REVISIONS:
                    connection.execute(revision_index(collection))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS sync_state ("
                "name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS runs ("
                "id TEXT PRIMARY KEY, spider TEXT NOT NULL, started_at TEXT NOT NULL, "
                "doc TEXT NOT NULL)"
            )
            connection.execute(
                "CREATE INDEX IF NOT EXISTS runs_spider_started ON runs(spider, started_at)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS failures ("
                "key TEXT PRIMARY KEY, spider TEXT NOT NULL, first_failed TEXT NOT NULL, "
                "doc TEXT NOT NULL)"
            )
            connection.execute(
                "CREATE INDEX IF NOT EXISTS failures_spider ON failures(spider, first_failed)"
            )
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _create_owner_only(self) -> None:
        """The database file owner-only (0600) before SQLite opens it: SQLite gives its -wal
        and -shm files the database file's mode. Files an older run left wider are narrowed."""
        make_dir(self.path.parent)
        # Only a file that does not exist yet is opened here: closing any descriptor of a
        # database drops every SQLite lock this process holds on it, and another process
        # would then take the WAL of a live connection for stale and delete it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        for suffix in ("", "-wal", "-shm", "-journal"):
            restrict(f"{self.path}{suffix}")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def out_of_space(self, error: BaseException) -> bool:
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL

    @contextmanager
    def _batch_transaction(self) -> Iterator[None]:
        with self._lock:
            connection = self.connection
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
                connection.execute("COMMIT")
            except BaseException:
                _roll_back(connection)
                raise

    def _read_existing(self, collection: str, keys: Sequence[Any]) -> dict[Any, Existing]:
        columns = "hash, revision, first_seen, updated_at, deleted_at"
        return {key: Existing(*row) for key, *row in self._rows_of(collection, columns, keys)}

    def fetched_times(self, collection: str, keys: Sequence[Any]) -> dict[Any, str]:
        with self._lock:
            rows = self._rows_of(collection, "json_extract(doc, '$._meta.fetched_at')", keys)
            return {key: fetched for key, fetched in rows if fetched}

    def existing_keys(self, collection: str, keys: Sequence[Any]) -> set[Any]:
        with self._lock:
            return {key for key, _ in self._rows_of(collection, "1", keys)}

    def _rows_of(
        self, collection: str, columns: str, keys: Sequence[Any]
    ) -> Iterator[tuple[Any, ...]]:
        """``(key, *columns)`` of the stored records among ``keys``, keys as given."""
        key_field_of(collection)
        by_text = {str(key): key for key in keys}
        texts = list(by_text)
        for start in range(0, len(texts), _MAX_PARAMS):
            chunk = texts[start : start + _MAX_PARAMS]
            placeholders = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f'SELECT key, {columns} FROM "{collection}" WHERE key IN ({placeholders})', chunk
            )
            for key_text, *row in rows:
                yield (by_text[key_text], *row)

    def _write(self, collection: str, key_field: str, writes: list[Write]) -> None:
        rows = [
            (
                str(write.key),
                stored_text(write.record.body, write.meta),
                write.meta["hash"],
                write.meta["revision"],
                write.meta["first_seen"],
                write.meta["updated_at"],
            )
            for write in writes
        ]
        self.connection.executemany(
            f'INSERT INTO "{collection}" (key, doc, hash, revision, first_seen, updated_at) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "doc=excluded.doc, hash=excluded.hash, revision=excluded.revision, "
            "updated_at=excluded.updated_at, deleted_at=NULL",
            rows,
        )

    def _mark_deleted(self, collection: str, keys: list[Any], now: str) -> int:
        marked = 0
        texts = [str(key) for key in keys]
        for start in range(0, len(texts), _MAX_PARAMS):
            chunk = texts[start : start + _MAX_PARAMS]
            placeholders = ",".join("?" * len(chunk))
            cursor = self.connection.execute(
                f'UPDATE "{collection}" SET deleted_at = ?, '
                "doc = json_set(doc, '$._meta.deleted_at', ?) "
                f"WHERE deleted_at IS NULL AND key IN ({placeholders})",
                [now, now, *chunk],
            )
            marked += cursor.rowcount
        return marked

    def get(self, collection: str, key: Any) -> dict[str, Any] | None:
        key_field_of(collection)
        with self._lock:
            row = self.connection.execute(
                f'SELECT doc FROM "{collection}" WHERE key = ?', (str(key),)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def count(self, collection: str) -> int:
        key_field_of(collection)
        with self._lock:
            return self.connection.execute(f'SELECT COUNT(*) FROM "{collection}"').fetchone()[0]

    def iter_documents(self, collection: str) -> Iterator[dict[str, Any]]:
        key_field_of(collection)
        last_key = ""
        # Paged by key so no lock or cursor is held while the caller works on a page.
        while True:
            with self._lock:
                rows = self.connection.execute(
                    f'SELECT key, doc FROM "{collection}" WHERE key > ? ORDER BY key LIMIT 1000',
                    (last_key,),
                ).fetchall()
            if not rows:
                return
            for _, doc in rows:
                yield json.loads(doc)
            last_key = rows[-1][0]

    def last_updated(self, collection: str) -> str | None:
        key_field_of(collection)
        with self._lock:
            return self.connection.execute(
                f'SELECT MAX(updated_at) FROM "{collection}"'
            ).fetchone()[0]

    def get_state(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.connection.execute(
                "SELECT value FROM sync_state WHERE name = ?", (name,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def set_state(self, name: str, value: dict[str, Any]) -> None:
        with self._lock:
            self.connection.execute(
                "INSERT INTO sync_state (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET "
                "value=excluded.value, updated_at=excluded.updated_at",
                (name, canonical_json(value), utc_now()),
            )

    def add_run(self, run: dict[str, Any]) -> None:
        with self._lock:
            self.connection.execute(
                "INSERT INTO runs (id, spider, started_at, doc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET "
                "spider=excluded.spider, started_at=excluded.started_at, doc=excluded.doc",
                (str(run["id"]), run["spider"], run["started_at"], canonical_json(run)),
            )

    def recent_runs(self, spider: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE spider = ?", [spider]) if spider is not None else ("", [])
        with self._lock:
            rows = self.connection.execute(
                f"SELECT doc FROM runs {where} ORDER BY started_at DESC, id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [json.loads(doc) for (doc,) in rows]

    def put_failure(self, failure: dict[str, Any]) -> None:
        with self._lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                row = self.connection.execute(
                    "SELECT doc FROM failures WHERE key = ?", (failure["key"],)
                ).fetchone()
                document = merge_failure(json.loads(row[0]) if row else None, failure)
                self.connection.execute(
                    "INSERT INTO failures (key, spider, first_failed, doc) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET spider=excluded.spider, doc=excluded.doc",
                    (
                        document["key"],
                        document["spider"],
                        document["first_failed"],
                        canonical_json(document),
                    ),
                )
                self.connection.execute("COMMIT")
            except BaseException:
                _roll_back(self.connection)
                raise

    def pending_failures(
        self, spider: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        where, params = ("WHERE spider = ?", [spider]) if spider is not None else ("", [])
        with self._lock:
            rows = self.connection.execute(
                f"SELECT doc FROM failures {where} ORDER BY first_failed, key LIMIT ?",
                [*params, -1 if limit is None else limit],
            ).fetchall()
        return [json.loads(doc) for (doc,) in rows]

    def clear_failures(self, keys: Sequence[str]) -> int:
        cleared = 0
        texts = list(keys)
        with self._lock:
            for start in range(0, len(texts), _MAX_PARAMS):
                chunk = texts[start : start + _MAX_PARAMS]
                placeholders = ",".join("?" * len(chunk))
                cursor = self.connection.execute(
                    f"DELETE FROM failures WHERE key IN ({placeholders})", chunk
                )
                cleared += cursor.rowcount
        return cleared

    def unchanged_keys(self, collection: str, revisions: Mapping[Any, int]) -> set[Any]:
        with self._lock:
            rows = self._rows_of(collection, "revision, deleted_at", list(revisions))
            return {
                key
                for key, revision, deleted_at in rows
                if deleted_at is None and revision is not None and revisions[key] == revision
            }

    def defer_revision_index(self, collection: str) -> None:
        self._revision_index(collection, f'DROP INDEX IF EXISTS "{collection}_revision"')

    def build_revision_index(self, collection: str) -> None:
        self._revision_index(collection, revision_index(collection))

    def _revision_index(self, collection: str, statement: str) -> None:
        if collection not in DIGEST_REVISIONS:
            return
        with self._lock:
            try:
                self.connection.execute(statement)
            except sqlite3.Error as error:
                # Another writer held the file past the busy timeout, most likely.
                raise StoreError(f"{statement}: {error}") from None

    def held_revisions(
        self, collection: str, revisions: Sequence[int], keys: Callable[[], Sequence[Any]]
    ) -> set[int]:
        key_field_of(collection)
        # One parameter and one row: Python's sqlite3 lets the GIL go and takes it back for
        # each row, and waits for it whenever another of the crawl's threads runs Python.
        # A chunk's 1,000 rows one at a time cost ~33 times as much as this one row beside a
        # thread that keeps the GIL busy (about as much when nothing else runs).
        with self._lock:
            ((held,),) = self.connection.execute(
                f'SELECT json_group_array(revision) FROM "{collection}" '
                "WHERE revision IN (SELECT value FROM json_each(?)) AND deleted_at IS NULL",
                (orjson.dumps(list(revisions)),),
            ).fetchall()
        return set(orjson.loads(held))


def revision_index(collection: str) -> str:
    """The statement that makes the index of ``collection``'s revisions, if it is missing.

    Partial: ``held_revisions`` leaves deleted records out, and its query must say so for
    SQLite to use the index."""
    return (
        f'CREATE INDEX IF NOT EXISTS "{collection}_revision" '
        f'ON "{collection}"(revision) WHERE deleted_at IS NULL'
    )


def _roll_back(connection: sqlite3.Connection) -> None:
    """End a failed transaction, leaving the connection ready for the next one.

    On SQLITE_FULL, IOERR, BUSY or NOMEM SQLite may have rolled the transaction back itself:
    a ROLLBACK then fails with "no transaction is active" and would hide the real error.
    """
    if connection.in_transaction:
        connection.execute("ROLLBACK")


def _enable_wal(connection: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch a database to WAL, waiting out other processes creating it at the same time.

    SQLite does not apply its busy timeout to a journal-mode change: processes opening a new
    file together get "database is locked" at once. WAL is persistent, so only the first
    open of a file can race.
    """
    for attempt in range(attempts):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def stored_text(body: str, meta: dict[str, Any]) -> str:
    """The document's JSON text: the record's canonical body with ``_meta`` added last.

    Splicing text costs a fraction of serialising the content again. A body is never
    ``{}``: every record holds at least its key field.
    """
    return f'{body[:-1]},"{META}":{canonical_json(meta)}}}'
