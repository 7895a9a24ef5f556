"""The store contract: one small interface, two implementations (SQLite, MongoDB).

A record is a JSON-able dict holding its source id under the collection's key field. The
store adds ``_meta`` (source, fetched_at, first_seen, updated_at, hash, revision) and
writes a record only when it is new or its content hash or source revision changed (a
record without a revision changes none), so a re-import of unchanged data costs reads,
never writes.

To add a backend: subclass ``Store`` and implement the abstract methods; the change
detection, batching rules and transient-error retries live here, once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

# Collection -> the field that holds the source id (unique in the store).
COLLECTION_KEYS: dict[str, str] = {
    "movies": "tmdb_id",
    "series": "tmdb_id",
    "people": "tmdb_id",
    "collections": "tmdb_id",
    "companies": "tmdb_id",
    "networks": "tmdb_id",
    "keywords": "tmdb_id",
    "games": "igdb_id",
    "artists": "mbid",
    "albums": "mbid",
    "books": "ol_key",
    "works": "ol_key",
    "authors": "ol_key",
}

# Collections whose records' revision is a digest of the dump line they came from
# (MusicBrainz): a re-import finds the lines it already stored by their revision alone
# (``held_revisions``), so a store that looks them up that way indexes their revisions.
DIGEST_REVISIONS = frozenset({"artists", "albums"})

META = "_meta"


class StoreError(Exception):
    """A store operation failed for good (after retries where they apply)."""


class StoreUnavailableError(StoreError):
    """The store did not answer: its transient errors outlasted the write retries."""


class StoreFullError(StoreError):
    """The store has no room left (a full disk): no write can succeed until space is freed."""


class UnknownCollectionError(StoreError, KeyError):
    """The collection is not one of ``COLLECTION_KEYS``."""


def utc_now() -> str:
    """Current UTC time as an ISO-8601 string with a ``Z`` suffix (second precision)."""
    global _last_now
    second = int(time.time())
    if _last_now[0] != second:
        # Formatted once a second: a dump import asks for it once per record.
        _last_now = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _last_now[1]


_last_now: tuple[int, str] = (0, "")


# One encoder for every record: json.dumps() with options builds a new one per call.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no spaces, unicode kept as is."""
    return _CANONICAL_ENCODER.encode(value)


def content_body(content: dict[str, Any]) -> str:
    """Canonical JSON of a record's content, ``_meta`` excluded: what its hash is taken of."""
    if META in content:
        content = {name: value for name, value in content.items() if name != META}
    return canonical_json(content)


def body_hash(body: str) -> str:
    """Hash of a ``content_body``."""
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


def content_hash(content: dict[str, Any]) -> str:
    """Hash of a record's normalised content (``_meta`` excluded)."""
    return body_hash(content_body(content))


class Record:
    """One record to upsert: its content plus the provenance the store keeps in ``_meta``.

    ``body`` (the canonical JSON the hash is taken of) is kept: a backend that stores text
    writes it as is instead of serialising the content a second time. ``Record.worked``
    makes one from a body and hash computed elsewhere (a dump worker process): its content
    is decoded from the body only if a backend asks for it (MongoDB does, SQLite does not).
    """

    __slots__ = ("_content", "_key", "body", "fetched_at", "hash", "revision", "source")

    def __init__(
        self,
        content: dict[str, Any],
        source: str,
        fetched_at: str | None = None,
        revision: int | None = None,
    ) -> None:
        self._content: dict[str, Any] | None = content
        self._key: Any = None
        self.source = source
        self.fetched_at = fetched_at
        self.revision = revision
        self.body = content_body(content)
        self.hash = body_hash(self.body)

    @classmethod
    def worked(
        cls,
        key: Any,
        body: str,
        hash_: str,
        source: str,
        *,
        fetched_at: str | None,
        revision: int | None,
    ) -> Record:
        """The record of ``key`` whose canonical ``body`` and its hash were made elsewhere."""
        record = cls.__new__(cls)
        record._content = None
        record._key = key
        record.source = source
        record.fetched_at = fetched_at
        record.revision = revision
        record.body = body
        record.hash = hash_
        return record

    @property
    def content(self) -> dict[str, Any]:
        if self._content is None:
            self._content = json.loads(self.body)
        return self._content

    def key(self, key_field: str) -> Any:
        """The source id: ``content[key_field]``, without decoding a worked record's body."""
        return self.content[key_field] if self._key is None else self._key

    def __repr__(self) -> str:
        return f"Record({self.body[:80]!r}…, {self.source!r}, revision={self.revision!r})"


@dataclass(slots=True)
class Write:
    """A record ``upsert_many`` decided to write, with the ``_meta`` it is stored with."""

    key: Any
    record: Record
    meta: dict[str, Any]
    new: bool

    def document(self) -> dict[str, Any]:
        """The stored document: the record's content plus ``_meta``."""
        content = self.record.content
        document = {name: value for name, value in content.items() if name != META}
        document[META] = self.meta
        return document


@dataclass(slots=True, frozen=True)
class Existing:
    """What a batch needs to know of a stored record to decide whether to write it."""

    hash: str
    revision: int | None
    first_seen: str
    updated_at: str
    deleted_at: str | None = None


@dataclass(slots=True)
class UpsertResult:
    """Outcome counts of one ``upsert_many`` call."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated


class Store(ABC):
    """A place records live: collections of JSON documents keyed by their source id."""

    # Errors worth retrying a batch for (a locked database, a dropped connection).
    transient_errors: tuple[type[BaseException], ...] = ()

    def out_of_space(self, error: BaseException) -> bool:
        """Whether ``error`` says the store has no room left (never worth a retry)."""
        return False

    def __init__(self, *, write_retries: int = 3, retry_wait: float = 0.5) -> None:
        self.write_retries = write_retries
        self.retry_wait = retry_wait

    # -- lifecycle ------------------------------------------------------------------
    @abstractmethod
    def open(self) -> None:
        """Connect and ensure every collection, unique key index and state table exists."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store may not be used afterwards."""

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the data lives, with no credential in it (for logs)."""

    # -- records ----------------------------------------------------------------------
    def upsert_many(self, collection: str, records: Sequence[Record]) -> UpsertResult:
        """Insert new records, update changed ones, leave unchanged ones untouched.

        Within one batch a key given twice is compared with its earlier occurrence, and the
        last one wins. Transient errors are retried; a batch that still fails raises
        ``StoreUnavailableError``, a full store ``StoreFullError`` at once (no retry: waiting
        frees no disk), one the store refuses for its content ``StoreError`` (or the
        backend's own error), and writes nothing the caller is not told of.
        """
        key_field = key_field_of(collection)
        attempt = 0
        while True:
            try:
                with self._batch_transaction():
                    return self._upsert_batch(collection, key_field, records)
            except StoreFullError:
                raise
            except Exception as error:
                if self.out_of_space(error):
                    raise StoreFullError(
                        f"{self.description} is full: writing {len(records)} {collection} "
                        f"records failed ({error})"
                    ) from error
                if not isinstance(error, self.transient_errors):
                    raise
                attempt += 1
                if attempt > self.write_retries:
                    raise StoreUnavailableError(
                        f"writing {len(records)} {collection} records failed "
                        f"after {attempt} attempts: {error}"
                    ) from error
                logger.warning(
                    "Store write to %s failed (%s), retry %d/%d",
                    collection,
                    error,
                    attempt,
                    self.write_retries,
                )
                time.sleep(self.retry_wait * attempt)

    def _upsert_batch(
        self, collection: str, key_field: str, records: Sequence[Record]
    ) -> UpsertResult:
        result = UpsertResult()
        if not records:
            return result
        keys = [record.key(key_field) for record in records]
        known = self._read_existing(collection, keys)
        to_write: dict[Any, Write] = {}
        now = utc_now()
        for key, record in zip(keys, records, strict=True):
            previous = known.get(key)
            if (
                previous
                and previous.hash == record.hash
                # A record without a revision (an API fetch) of the stored content leaves
                # the stored revision: it still names the dump line of that very content.
                and record.revision in (None, previous.revision)
                and previous.deleted_at is None
            ):
                result.unchanged += 1
                continue
            first_seen = previous.first_seen if previous else now
            content_changed = previous is None or previous.hash != record.hash
            updated_at = previous.updated_at if previous and not content_changed else now
            meta = {
                "source": record.source,
                "fetched_at": record.fetched_at or now,
                "first_seen": first_seen,
                "updated_at": updated_at,
                "hash": record.hash,
                "revision": record.revision,
            }
            # A key given twice in a batch: new if it was new before the batch.
            new = previous is None or (key in to_write and to_write[key].new)
            if previous is None:
                result.inserted += 1
            else:
                result.updated += 1
            to_write[key] = Write(key, record, meta, new)
            known[key] = Existing(record.hash, record.revision, first_seen, updated_at)
        if to_write:
            self._write(collection, key_field, list(to_write.values()))
        return result

    def _batch_transaction(self) -> AbstractContextManager[object]:
        """Scope that makes one batch's read and write atomic where the backend can."""
        return nullcontext()

    @abstractmethod
    def _read_existing(self, collection: str, keys: Sequence[Any]) -> dict[Any, Existing]:
        """Hash, revision and dates of the stored records among ``keys``."""

    @abstractmethod
    def _write(self, collection: str, key_field: str, writes: list[Write]) -> None:
        """Insert (``write.new``) or replace whole documents, in one round trip."""

    def mark_deleted(self, collection: str, keys: Sequence[Any]) -> int:
        """Flag stored records the source no longer has (``_meta.deleted_at``); returns how many.

        The record stays (a mirror keeps what it saw); it is written again, unflagged, if
        the source brings it back. Keys not in the store, or already flagged, are ignored.
        """
        key_field_of(collection)
        if not keys:
            return 0
        with self._batch_transaction():
            return self._mark_deleted(collection, list(keys), utc_now())

    @abstractmethod
    def _mark_deleted(self, collection: str, keys: list[Any], now: str) -> int:
        """Set ``_meta.deleted_at = now`` on the stored, unflagged records among ``keys``."""

    @abstractmethod
    def get(self, collection: str, key: Any) -> dict[str, Any] | None:
        """The stored document (with ``_meta``) for a source id, or None."""

    @abstractmethod
    def fetched_times(self, collection: str, keys: Sequence[Any]) -> dict[Any, str]:
        """``_meta.fetched_at`` of the stored records among ``keys``, in one round trip."""

    @abstractmethod
    def existing_keys(self, collection: str, keys: Sequence[Any]) -> set[Any]:
        """The keys among ``keys`` the store holds a record of (flagged deleted or not), in
        one round trip."""

    @abstractmethod
    def count(self, collection: str) -> int:
        """Number of records in a collection."""

    @abstractmethod
    def iter_documents(self, collection: str) -> Iterator[dict[str, Any]]:
        """Every document of a collection once, in a stable order, streamed."""

    @abstractmethod
    def last_updated(self, collection: str) -> str | None:
        """The newest ``_meta.updated_at`` of a collection, or None when it is empty."""

    # -- sync state -------------------------------------------------------------------
    @abstractmethod
    def get_state(self, name: str) -> dict[str, Any] | None:
        """A cursor or watermark saved by ``set_state`` (e.g. ``tmdb_movies/changes``)."""

    @abstractmethod
    def set_state(self, name: str, value: dict[str, Any]) -> None:
        """Save a cursor or watermark; replaces the previous value of that name."""

    # -- operations: run records and dead letters -----------------------------------------
    @abstractmethod
    def add_run(self, run: dict[str, Any]) -> None:
        """Save a run record (JSON-able, keyed by ``run["id"]``); replaces one of the same id."""

    @abstractmethod
    def recent_runs(self, spider: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Run records, newest ``started_at`` first; only ``spider``'s when given."""

    @abstractmethod
    def put_failure(self, failure: dict[str, Any]) -> None:
        """Keep a dead letter keyed by ``failure["key"]`` (with ``spider``, ``last_try``).

        A key already pending keeps its ``first_failed`` and its ``runs`` count goes up by one;
        everything else is replaced by the new failure.
        """

    @abstractmethod
    def pending_failures(
        self, spider: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters to replay, oldest ``first_failed`` first; only ``spider``'s when given."""

    @abstractmethod
    def clear_failures(self, keys: Sequence[str]) -> int:
        """Remove the dead letters of ``keys`` (replayed with success); returns how many."""

    # -- dump imports ------------------------------------------------------------------
    @abstractmethod
    def unchanged_keys(self, collection: str, revisions: Mapping[Any, int]) -> set[Any]:
        """The keys of ``revisions`` whose stored record has that very ``_meta.revision``.

        One round trip per distinct revision at most (Open Library dump lines: a chunk's
        keys share a few dozen), and one in all when each key has a revision of its own.
        Records flagged deleted are left out: a dump line bringing one back is written
        again whatever its revision.
        """

    @abstractmethod
    def held_revisions(
        self, collection: str, revisions: Sequence[int], keys: Callable[[], Sequence[Any]]
    ) -> set[int]:
        """Those of ``revisions`` that a record of ``collection`` holds as its revision.

        For the ``DIGEST_REVISIONS`` collections, whose revision is a digest of a dump
        line: a held revision is that very line, stored. ``keys()`` gives the key of each
        revision's line, in the same order (None where it cannot be read), to a store that
        finds records faster by key than by revision (MongoDB: nx-27017 serves only
        ``_id`` filters from an index); SQLite never asks, so its caller does not pay for
        reading them (a JSON parse a line). Records flagged deleted are left out.
        """

    @abstractmethod
    def defer_revision_index(self, collection: str) -> None:
        """Drop the index ``held_revisions`` reads from, for a first import into the empty
        ``collection``: an index built once at its end (``build_revision_index``) costs a
        fraction of one kept up record by record, whose digests land all over it. Opening
        the store builds it again if the import never ends. Nothing where no index of
        revisions is kept (MongoDB looks revisions up by key)."""

    @abstractmethod
    def build_revision_index(self, collection: str) -> None:
        """Build the index ``defer_revision_index`` dropped (none is there already)."""


def key_field_of(collection: str) -> str:
    """The key field of a collection; raises ``UnknownCollectionError`` for unknown names."""
    try:
        return COLLECTION_KEYS[collection]
    except KeyError:
        raise UnknownCollectionError(f"unknown collection {collection!r}") from None


def merge_failure(previous: dict[str, Any] | None, failure: dict[str, Any]) -> dict[str, Any]:
    """The dead letter to keep when ``failure`` arrives for a key that may be pending already."""
    merged = dict(failure)
    last_try = merged.get("last_try") or utc_now()
    merged["last_try"] = last_try
    merged["first_failed"] = (previous or {}).get("first_failed") or last_try
    merged["runs"] = int((previous or {}).get("runs") or 0) + 1
    return merged
