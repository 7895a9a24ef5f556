"""The MongoDB store: one collection per kind, a unique index on each key field."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, InsertOne, MongoClient, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from contentcrawl.redaction import redact_url
from contentcrawl.store.base import (
    COLLECTION_KEYS,
    META,
    Existing,
    Store,
    StoreError,
    StoreFullError,
    Write,
    key_field_of,
    merge_failure,
    utc_now,
)

DUPLICATE_KEY = 11000
# MongoDB's OutOfDiskSpace; older servers pass the storage engine's ENOSPC text on instead.
OUT_OF_DISK_SPACE = 14031
NO_SPACE_TEXT = "no space left on device"
BSON_INT_RANGE = range(-(2**63), 2**63)
# unchanged_keys asks per revision while a chunk's keys share revisions (Open Library: some
# 30 to a chunk of 1000), at least this many keys a revision on average; below, a query per
# revision costs more round trips than one read of every key's revision (nx-27017: a query
# ~0.4 ms, a document read ~0.06 ms).
KEYS_PER_REVISION_QUERY = 16


def bson_safe(value: Any) -> Any:
    """``value`` with every integer BSON cannot hold (beyond 64 bits) as its decimal text."""
    if isinstance(value, dict):
        return {name: bson_safe(entry) for name, entry in value.items()}
    if isinstance(value, list):
        return [bson_safe(entry) for entry in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in BSON_INT_RANGE:
        return str(value)
    return value


def out_of_space(error: BaseException) -> bool:
    """Whether a driver error says the server has no disk space left for the write."""
    if isinstance(error, BulkWriteError):
        details = error.details or {}
        reported = [*details.get("writeErrors", []), *details.get("writeConcernErrors", [])]
        failures = [(entry.get("code"), str(entry.get("errmsg", ""))) for entry in reported]
    elif isinstance(error, OperationFailure):
        failures = [(error.code, str(error))]
    else:
        return False
    return any(
        code == OUT_OF_DISK_SPACE or NO_SPACE_TEXT in message.lower() for code, message in failures
    )


def keyed_by_id(collection: Collection[dict[str, Any]]) -> bool:
    """Whether the documents of ``collection`` have their key as ``_id``: true of one the
    store filled from empty, false of one an earlier version filled (ObjectIds)."""
    first = collection.find_one({}, {"_id": 1})
    return first is None or not isinstance(first["_id"], ObjectId)


def key_filter(key_field: str, key: Any, by_id: bool) -> dict[str, Any]:
    """The filter of one key's document. ``$eq``, never a bare value: nx-27017 answers
    ``{field: value}`` in an update by scanning the collection, ``{field: {"$eq": value}}``
    from the field's index."""
    return {"_id": key} if by_id else {key_field: {"$eq": key}}


class MongoStore(Store):
    """Documents as ``{"_id": id, <key field>: id, ...content, "_meta": {...}}`` written by
    ``bulk_write``.

    A changed record is replaced whole (``ReplaceOne``, upsert) rather than ``$set`` field by
    field, so a field the source dropped does not linger; ``first_seen`` is carried over
    from the batch's read of the existing records. Writes are unordered: one bad document
    does not stop the rest of its batch.

    A document's ``_id`` is its key, and batches look keys up by ``_id``: every server
    answers ``{"_id": {"$in": keys}}`` from its primary index, while some wire-compatible
    ones (nx-27017) scan the whole collection for ``$in`` on any other field. A collection
    filled before keys became ``_id`` keeps its ObjectIds and is looked up by key field
    (``keyed_by_id``). Reads never return ``_id``.
    """

    transient_errors = (AutoReconnect, ConnectionFailure)

    def __init__(
        self,
        uri: str,
        database: str = "contentcrawl",
        *,
        connect_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.uri = uri
        self.database_name = database
        # Seconds to find a server and to connect to it (None: the driver's own defaults).
        self.connect_timeout = connect_timeout
        self._client: MongoClient[dict[str, Any]] | None = None
        # Collection -> whether its documents' _id is their key (see keyed_by_id).
        self._keyed_by_id: dict[str, bool] = {}

    def out_of_space(self, error: BaseException) -> bool:
        return out_of_space(error)

    @property
    def description(self) -> str:
        return f"MongoDB {redact_url(self.uri)} database {self.database_name}"

    @property
    def db(self) -> Database[dict[str, Any]]:
        if self._client is None:
            raise RuntimeError("MongoStore used before open()")
        return self._client[self.database_name]

    def open(self) -> None:
        if self._client is not None:
            return
        options: dict[str, Any] = {"appname": "contentcrawl", "tz_aware": True}
        if self.connect_timeout is not None:
            # Keyword options beat the URI's: set ours only where the URI has none.
            milliseconds = max(1, round(self.connect_timeout * 1000))
            for option in ("serverSelectionTimeoutMS", "connectTimeoutMS"):
                if option.lower() not in self.uri.lower():
                    options[option] = milliseconds
        client: MongoClient[dict[str, Any]] = MongoClient(self.uri, **options)
        try:
            database = client[self.database_name]
            for collection, key_field in COLLECTION_KEYS.items():
                database[collection].create_index([(key_field, ASCENDING)], unique=True)
                database[collection].create_index([(f"{META}.updated_at", DESCENDING)])
            database["sync_state"].create_index([("name", ASCENDING)], unique=True)
            database["runs"].create_index([("id", ASCENDING)], unique=True)
            database["runs"].create_index([("spider", ASCENDING), ("started_at", DESCENDING)])
            database["runs"].create_index([("started_at", DESCENDING)])
            database["failures"].create_index([("key", ASCENDING)], unique=True)
            database["failures"].create_index([("spider", ASCENDING), ("first_failed", ASCENDING)])
        except PyMongoError as error:
            client.close()
            # The driver's message can quote the URI; say where without the credentials.
            raise StoreError(f"cannot open {self.description}: {type(error).__name__}") from None
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._keyed_by_id.clear()

    def keyed_by_id(self, collection: str) -> bool:
        """Whether ``collection``'s documents have their key as ``_id`` (``keyed_by_id``),
        asked once per collection: a collection with ObjectIds goes on being written so."""
        keyed = self._keyed_by_id.get(collection)
        if keyed is None:
            keyed = self._keyed_by_id[collection] = keyed_by_id(self.db[collection])
        return keyed

    def _keys_filter(self, collection: str, keys: Sequence[Any]) -> dict[str, Any]:
        """The filter of the documents of ``keys``, by ``_id`` where the key is ``_id``."""
        field = "_id" if self.keyed_by_id(collection) else key_field_of(collection)
        return {field: {"$in": list(keys)}}

    def _read_existing(self, collection: str, keys: Sequence[Any]) -> dict[Any, Existing]:
        key_field = key_field_of(collection)
        cursor = self.db[collection].find(
            self._keys_filter(collection, keys),
            # The whole (small) _meta rather than dotted paths: some wire-compatible
            # servers (nx-27017) answer dotted projections with flattened keys.
            {"_id": 0, key_field: 1, META: 1},
        )
        found: dict[Any, Existing] = {}
        for document in cursor:
            meta = document.get(META, {})
            found[document[key_field]] = Existing(
                meta.get("hash", ""),
                meta.get("revision"),
                meta.get("first_seen") or utc_now(),
                meta.get("updated_at") or utc_now(),
                meta.get("deleted_at"),
            )
        return found

    def fetched_times(self, collection: str, keys: Sequence[Any]) -> dict[Any, str]:
        key_field = key_field_of(collection)
        cursor = self.db[collection].find(
            self._keys_filter(collection, keys), {"_id": 0, key_field: 1, META: 1}
        )
        return {
            document[key_field]: document[META]["fetched_at"]
            for document in cursor
            if document.get(META, {}).get("fetched_at")
        }

    def existing_keys(self, collection: str, keys: Sequence[Any]) -> set[Any]:
        key_field = key_field_of(collection)
        cursor = self.db[collection].find(
            self._keys_filter(collection, keys), {"_id": 0, key_field: 1}
        )
        return {document[key_field] for document in cursor}

    def _write(self, collection: str, key_field: str, writes: list[Write]) -> None:
        documents = [write.document() for write in writes]
        if self.keyed_by_id(collection):
            # The driver sends _id first whatever its place; last, no content field shadows it.
            documents = [{**document, "_id": document[key_field]} for document in documents]
        try:
            self._bulk_write(collection, key_field, writes, documents)
        except OverflowError:
            # BSON has no integer beyond 64 bits (JSON and the SQLite store do): such a
            # number is kept as its decimal text. Only a batch holding one pays for it.
            documents = [bson_safe(document) for document in documents]
            self._bulk_write(collection, key_field, writes, documents)

    def _bulk_write(
        self,
        collection: str,
        key_field: str,
        writes: list[Write],
        documents: list[dict[str, Any]],
    ) -> None:
        # New records are inserted, not upserted: an insert is one index probe, while an
        # upsert is a query first (a scan on wire servers without query planning).
        keyed = self.keyed_by_id(collection)
        operations: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = [
            InsertOne(document)
            if write.new
            else ReplaceOne(
                key_filter(key_field, document[key_field], keyed), document, upsert=True
            )
            for write, document in zip(writes, documents, strict=True)
        ]
        try:
            self.db[collection].bulk_write(operations, ordered=False)
        except BulkWriteError as error:
            if out_of_space(error):
                raise StoreFullError(
                    f"{self.description} is full: bulk write to {collection} failed"
                ) from None
            errors = error.details.get("writeErrors", [])
            if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise StoreError(f"bulk write to {collection} failed: {errors[:3]}") from None
            # Another writer inserted the same new key between our read and our write:
            # the record exists now, so ours becomes a replace.
            retry = []
            for e in errors:
                document = documents[e["index"]]
                if not keyed:
                    # Without the ObjectId the driver gave the insert: MongoDB refuses a
                    # replacement that changes _id.
                    document = {name: value for name, value in document.items() if name != "_id"}
                retry.append(
                    ReplaceOne(key_filter(key_field, document[key_field], keyed), document)
                )
            self.db[collection].bulk_write(retry, ordered=False)

    def _mark_deleted(self, collection: str, keys: list[Any], now: str) -> int:
        result = self.db[collection].update_many(
            {**self._keys_filter(collection, keys), f"{META}.deleted_at": None},
            {"$set": {f"{META}.deleted_at": now}},
        )
        return result.modified_count

    def get(self, collection: str, key: Any) -> dict[str, Any] | None:
        key_field = key_field_of(collection)
        return self.db[collection].find_one({key_field: {"$eq": key}}, {"_id": 0})

    def count(self, collection: str) -> int:
        key_field_of(collection)
        return self.db[collection].count_documents({})

    def iter_documents(self, collection: str) -> Iterator[dict[str, Any]]:
        key_field = key_field_of(collection)
        yield from self.db[collection].find({}, {"_id": 0}).sort(key_field, ASCENDING)

    def last_updated(self, collection: str) -> str | None:
        key_field_of(collection)
        newest = self.db[collection].find_one(
            {}, {"_id": 0, META: 1}, sort=[(f"{META}.updated_at", DESCENDING)]
        )
        return newest[META]["updated_at"] if newest else None

    # State, runs and dead letters are found by {"$eq": …} too (see key_filter).
    def get_state(self, name: str) -> dict[str, Any] | None:
        document = self.db["sync_state"].find_one({"name": {"$eq": name}}, {"_id": 0, "value": 1})
        return document["value"] if document else None

    def set_state(self, name: str, value: dict[str, Any]) -> None:
        self.db["sync_state"].replace_one(
            {"name": {"$eq": name}},
            {"name": name, "value": value, "updated_at": utc_now()},
            upsert=True,
        )

    def add_run(self, run: dict[str, Any]) -> None:
        self.db["runs"].replace_one({"id": {"$eq": run["id"]}}, dict(run), upsert=True)

    def recent_runs(self, spider: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        query = {"spider": spider} if spider is not None else {}
        cursor = (
            self.db["runs"]
            .find(query, {"_id": 0})
            .sort([("started_at", DESCENDING), ("id", DESCENDING)])
            .limit(limit)
        )
        return list(cursor)

    def put_failure(self, failure: dict[str, Any]) -> None:
        previous = self.db["failures"].find_one({"key": {"$eq": failure["key"]}}, {"_id": 0})
        document = merge_failure(previous, failure)
        self.db["failures"].replace_one({"key": {"$eq": document["key"]}}, document, upsert=True)

    def pending_failures(
        self, spider: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        query = {"spider": spider} if spider is not None else {}
        cursor = (
            self.db["failures"]
            .find(query, {"_id": 0})
            .sort([("first_failed", ASCENDING), ("key", ASCENDING)])
        )
        if limit is not None:
            cursor = cursor.limit(limit)
        return list(cursor)

    def clear_failures(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return self.db["failures"].delete_many({"key": {"$in": list(keys)}}).deleted_count

    def unchanged_keys(self, collection: str, revisions: Mapping[Any, int]) -> set[Any]:
        by_revision: dict[int, list[Any]] = defaultdict(list)
        for key, revision in revisions.items():
            by_revision[revision].append(key)
        if len(by_revision) * KEYS_PER_REVISION_QUERY > len(revisions):
            return self._unchanged_compared_here(collection, revisions)
        key_field = key_field_of(collection)
        keyed_by_id = self.keyed_by_id(collection)
        unchanged: set[Any] = set()
        for revision, keys in by_revision.items():
            query = {
                "_id" if keyed_by_id else key_field: {"$in": keys},
                f"{META}.revision": {"$eq": revision},
                f"{META}.deleted_at": {"$eq": None},
            }
            if keyed_by_id:
                # The server compares and answers keys only, no document (nx-27017 copies
                # each whole document it returns, projection or not, at ~75 µs a key).
                unchanged.update(self.db[collection].distinct(key_field, query))
            else:
                # An earlier version's collection: nx-27017's distinct ignores a filter on
                # any field but _id, so the documents come back.
                found = self.db[collection].find(query, {"_id": 0, key_field: 1})
                unchanged.update(document[key_field] for document in found)
        return unchanged

    def _unchanged_compared_here(self, collection: str, revisions: Mapping[Any, int]) -> set[Any]:
        """``unchanged_keys`` in one read of the keys' stored revisions, compared here.

        For a chunk whose keys share few revisions: a query per revision would be a round
        trip per key or so, and an ``$or`` of one (key, revision) branch per key is refused
        by nx-27017 past a thousand branches."""
        return {
            key
            for key, revision in self._stored_revisions(collection, list(revisions))
            if revision == revisions[key]
        }

    def held_revisions(
        self, collection: str, revisions: Sequence[int], keys: Callable[[], Sequence[Any]]
    ) -> set[int]:
        # By key: nx-27017 filters on any other field than _id in Python, document by
        # document, and a chunk's look-up would read the whole collection.
        asked = list({key for key in keys() if key is not None})
        if not asked:
            return set()
        if self.keyed_by_id(collection):
            # The server reads the revisions out of the documents (nx-27017: in SQL, ~8 µs
            # a key) instead of sending each document back (~33 µs, projection or not).
            stored = set(
                self.db[collection].distinct(
                    f"{META}.revision",
                    {"_id": {"$in": asked}, f"{META}.deleted_at": {"$eq": None}},
                )
            )
        else:
            stored = {revision for _, revision in self._stored_revisions(collection, asked)}
        return stored.intersection(revisions)

    def defer_revision_index(self, collection: str) -> None:
        # No index of revisions to drop: held_revisions finds records by key.
        return

    def build_revision_index(self, collection: str) -> None:
        return

    def _stored_revisions(self, collection: str, keys: Sequence[Any]) -> Iterator[tuple[Any, int]]:
        """``(key, revision)`` of the records of ``keys`` not flagged deleted that have one."""
        key_field = key_field_of(collection)
        found = self.db[collection].find(
            self._keys_filter(collection, keys),
            # The whole (small) _meta, as _read_existing reads it (see there).
            {"_id": 0, key_field: 1, META: 1},
        )
        for document in found:
            meta = document.get(META, {})
            revision = meta.get("revision")
            if meta.get("deleted_at") is None and revision is not None:
                yield document[key_field], revision
