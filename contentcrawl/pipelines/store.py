"""Store pipeline: batches records per collection and upserts them into the crawl's store."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import CloseSpider, DropItem

from contentcrawl.batches import DeletionMark, ItemBatch, PreparedBatch
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ContentItem
from contentcrawl.private_files import make_dir, open_private
from contentcrawl.records import UnstorableRecordError, to_record
from contentcrawl.redaction import redact_text
from contentcrawl.store import (
    Record,
    Store,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    UpsertResult,
)
from contentcrawl.store.base import COLLECTION_KEYS

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# The close reason of a crawl whose store ran out of room.
STORE_FULL = "store_full"


class UnstorableItem(DropItem):
    """The item is not a ContentItem or its content is not JSON-serialisable."""


class StorePipeline:
    """Upserts items in batches of ``STORE_BATCH_SIZE`` per collection.

    Store calls are blocking (sqlite3, pymongo) and run on the crawl's store thread
    (``CrawlStore``), so the reactor never waits on the database and writes stay in order.
    A batch is written when full, when the spider goes idle and when it closes. A batch
    that fails (after the store's own retries of transient errors) is counted as
    ``store/<collection>/failed`` and saved as JSON lines under ``STORE_FAILED_DIR`` so
    nothing is lost; the next crawl stores them first (``SavedBatches.replay``). A batch
    the store refuses for what it holds is written again a record at a time, so only the
    records it cannot take fail. A full store (``StoreFullError``) closes the spider at
    once (reason ``store_full``): that batch and every later one go straight to
    ``STORE_FAILED_DIR``, as does a record that reaches the pipeline after its
    ``close_spider`` wrote the last batch. A record counted as
    ``failed`` is always in ``STORE_FAILED_DIR``: it is counted once its save returned.

    A ``DeletionMark`` flags its stored record deleted when the spider closes, after the
    last batch (or at once when it comes later); counted in
    ``<source>/<collection>/marked_deleted``.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.batch_size = max(1, settings.getint("STORE_BATCH_SIZE"))
        self.saved = SavedBatches(Path(settings.get("STORE_FAILED_DIR") or "data/store_failed"))
        self.crawl_store = crawl_store(crawler)
        self.stats = crawler.stats
        self._buffers: dict[str, list[Record]] = defaultdict(list)
        # (source, collection) -> keys of the records to flag deleted.
        self._marks: dict[tuple[str, str], set[Any]] = defaultdict(set)
        self._pending: set[asyncio.Future[Any]] = set()
        # One batch is written at a time; see process_item.
        self._write_lock = asyncio.Lock()
        # Set by the first StoreFullError: no write is tried after it.
        self._full: StoreFullError | None = None
        self._closing: asyncio.Future[None] | None = None
        # Set once close_spider wrote the last batch: a later record is saved.
        self._closed = False
        crawler.signals.connect(self._flush_on_idle, signal=signals.spider_idle)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def open_spider(self) -> None:
        try:
            await self.crawl_store.open()
        except StoreError as error:
            # Nothing can be stored: close at once with a reason that says so (Scrapy opens
            # and closes the other components normally), rather than a traceback.
            self.stats.set_value("store/connection/unavailable", 1)
            logger.error("Store unavailable, closing the spider: %s", error)
            raise CloseSpider("store_unavailable") from None
        logger.info("Store: %s (batch size %d)", self.crawl_store.description, self.batch_size)
        await self.crawl_store.run(self.saved.replay, self.batch_size, self.stats)

    async def process_item(self, item: Any) -> Any:
        if isinstance(item, DeletionMark):
            self._marks[(item.source, item.collection)].add(item.key)
            if self._closed:
                await self._apply_marks()
            return item
        if isinstance(item, PreparedBatch):
            # Store records made by the dump workers: nothing left to build.
            self._buffers[item.item_class.collection].extend(item.records)
            self.stats.inc_value(f"store/{item.item_class.collection}/received", len(item))
        elif isinstance(item, ItemBatch):
            received: Counter[str] = Counter()
            stored: list[ContentItem] = []
            for record in item.items:
                try:
                    self._buffers[record.collection].append(to_record(record))
                except UnstorableRecordError as error:
                    # One bad record must not cost its batch: counted like a dropped item.
                    self.stats.inc_value("item_dropped_count")
                    self.stats.inc_value("item_dropped_reasons_count/UnstorableItem")
                    logger.warning("Dropped from a batch: %s", error)
                    continue
                stored.append(record)
                received[record.collection] += 1
            item.items = stored
            for collection, count in received.items():
                self.stats.inc_value(f"store/{collection}/received", count)
        elif isinstance(item, ContentItem):
            try:
                self._buffers[item.collection].append(to_record(item))
            except UnstorableRecordError as error:
                raise UnstorableItem(str(error)) from None
            self.stats.inc_value(f"store/{item.collection}/received")
        else:
            raise UnstorableItem(f"not a ContentItem: {type(item).__name__}")
        for collection, buffer in list(self._buffers.items()):
            if len(buffer) >= self.batch_size or self._closed:
                # The next batch fills while one is written; an item that finds it full
                # waits (and so holds back the spider), so memory stays at about two
                # batches however much faster the source is than the store. Once closed,
                # no later flush would come: the item's records are saved at once.
                async with self._write_lock:
                    if len(self._buffers[collection]) >= self.batch_size or self._closed:
                        await self._flush(collection)
        return item

    def _flush_on_idle(self) -> None:
        for collection in list(self._buffers):
            if self._buffers[collection]:
                task = asyncio.ensure_future(self._flush_locked(collection))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _flush_locked(self, collection: str) -> None:
        async with self._write_lock:
            await self._flush(collection)

    async def _flush(self, collection: str) -> None:
        records = self._buffers.pop(collection, [])
        if not records:
            return
        if self._full is not None or self._closed:
            await self._save_unwritten(collection, records)
            return
        try:
            result, refused, error = await self.crawl_store.run(
                upsert_isolating, collection, records
            )
        except StoreUnavailableError as unavailable:
            result, refused, error = UpsertResult(), records, unavailable
        except StoreFullError as full:
            await self._store_full(collection, records, full)
            return
        if refused:
            path = await self._save(collection, refused)
            logger.error(
                "Could not store %d %s records (%s: %s); saved them to %s",
                len(refused),
                collection,
                type(error).__name__,
                error,
                path,
            )
        for outcome in ("inserted", "updated", "unchanged"):
            count = getattr(result, outcome)
            if count:
                self.stats.inc_value(f"store/{collection}/{outcome}", count)

    async def _store_full(
        self, collection: str, records: list[Record], error: StoreFullError
    ) -> None:
        """Save the batch, say so once, and close the spider: no later write can succeed."""
        self._full = error
        path = await self._save(collection, records)
        logger.error(
            "%s; closing the spider (%s): %d %s records saved to %s, and the records still "
            "on their way will be saved there too (the next crawl stores them once there is "
            "room)",
            error,
            STORE_FULL,
            len(records),
            collection,
            path,
        )
        engine = self.crawler.engine
        if engine is not None and engine.spider is not None:
            # Not awaited, nor kept in _pending: closing waits for the pipelines' own
            # close_spider, which waits for _pending.
            self._closing = asyncio.ensure_future(engine.close_spider_async(reason=STORE_FULL))

    async def _save_unwritten(self, collection: str, records: list[Record]) -> None:
        """A batch arriving after the store filled up or closed: saved without trying it."""
        path = await self._save(collection, records)
        logger.warning(
            "The store is %s: %d %s records saved to %s",
            "full" if self._full is not None else "closed",
            len(records),
            collection,
            path,
        )

    async def _save(self, collection: str, records: list[Record]) -> Path:
        """Save records the store did not take, then count them as ``failed``."""
        # Off the store's thread: saving must not wait for (or need) the store. One save at
        # a time all the same: every caller holds the write lock.
        path = await asyncio.to_thread(self.saved.save, collection, records)
        self.stats.inc_value(f"store/{collection}/failed", len(records))
        return path

    async def _apply_marks(self) -> None:
        """Flag the records of the deletion marks received; a store error is logged."""
        marks, self._marks = self._marks, defaultdict(set)
        for (source, collection), keys in marks.items():
            try:
                marked = await self.crawl_store.run(
                    lambda store, name, ids: store.mark_deleted(name, ids),
                    collection,
                    sorted(keys),
                )
            except Exception as error:
                logger.error(
                    "Could not flag %d %s records as deleted: %s",
                    len(keys),
                    collection,
                    redact_text(str(error)),
                )
                continue
            if marked:
                self.stats.inc_value(f"{source}/{collection}/marked_deleted", marked)
                logger.info("Flagged %d %s %s no longer has as deleted", marked, collection, source)

    async def close_spider(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending)
        # Under the lock: a flush in progress has popped its batch from the buffers, and
        # it is counted before the crawl's stats are read.
        async with self._write_lock:
            for collection in list(self._buffers):
                await self._flush(collection)
            # After the last batch: a 404 is the newest word on a record, and writing the
            # record after its flag would clear it.
            await self._apply_marks()
            self._closed = True


class SavedBatches:
    """The batches the store refused, as JSON lines per collection in one folder.

    ``save`` appends a refused batch to ``<collection>.jsonl``. ``replay``, at the start of
    the next crawl, stores what an earlier run saved: a file is claimed by renaming it
    (``.replaying-<pid>-<nonce>``: crawls of one ``syncall`` process share a pid), so two
    crawls starting together never replay the same file, and one left claimed by a crawl
    that died is claimed again. A saved record older than the
    store's copy (``_meta.fetched_at``) is skipped: a later run already stored newer data.
    While the store does not answer the file goes back, whole, for the next crawl; a record
    it refuses a second time is set aside in ``<collection>.bad`` with damaged lines. The
    folder and its files are owner-only, as the store is (``contentcrawl.private_files``).
    """

    CLAIM = ".replaying-"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, collection: str, records: list[Record]) -> Path:
        make_dir(self.folder)
        path = self.folder / f"{collection}.jsonl"
        with open_private(path, "a", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(saved_line(record), ensure_ascii=False) + "\n")
        return path

    def replay(self, store: Store, batch_size: int, stats: Any) -> None:
        """Store every saved batch there is (blocking: run it on the store's thread)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.iterdir()):
            collection = path.name.split(".", 1)[0]
            if collection not in COLLECTION_KEYS or not self._replayable(path):
                continue
            claimed = self.folder / (
                f"{collection}.jsonl{self.CLAIM}{os.getpid()}-{uuid.uuid4().hex[:12]}"
            )
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another crawl claimed it first
                continue
            try:
                self._replay_file(store, collection, claimed, batch_size, stats)
            except Exception as error:
                self._put_back(claimed, self.folder / f"{collection}.jsonl")
                logger.error(
                    "Saved %s records not stored yet (%s: %s); kept in %s for the next crawl",
                    collection,
                    type(error).__name__,
                    error,
                    self.folder / f"{collection}.jsonl",
                )
                return
            claimed.unlink()

    def _replayable(self, path: Path) -> bool:
        """A saved batch file, or one claimed by a crawl that is no longer running."""
        if path.name.endswith(".jsonl"):
            return True
        _, claim, owner = path.name.partition(self.CLAIM)
        pid = owner.split("-", 1)[0]
        if not claim or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def _replay_file(
        self, store: Store, collection: str, path: Path, batch_size: int, stats: Any
    ) -> None:
        key_field = COLLECTION_KEYS[collection]
        records: list[Record] = []
        counts: Counter[str] = Counter()

        def store_records() -> None:
            keys = [record.content[key_field] for record in records]
            stored_at = store.fetched_times(collection, keys)
            current = [
                record
                for key, record in zip(keys, records, strict=True)
                if not (record.fetched_at and stored_at.get(key, "") > record.fetched_at)
            ]
            counts["replay_stale"] += len(records) - len(current)
            _, refused, error = upsert_isolating(store, collection, current)
            counts["replayed"] += len(current) - len(refused)
            for record in refused:
                counts["replay_refused"] += 1
                self._set_aside(collection, json.dumps(saved_line(record), ensure_ascii=False))
                logger.error(
                    "The store refused a saved %s record again (%s: %s); set aside in %s.bad",
                    collection,
                    type(error).__name__,
                    error,
                    collection,
                )
            records.clear()

        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                record = self._parse(collection, path, number, line, stats)
                if record is None:
                    continue
                records.append(record)
                if len(records) >= batch_size:
                    store_records()
        if records:
            store_records()
        for name, count in counts.items():
            stats.inc_value(f"store/{collection}/{name}", count)
        logger.info(
            "Stored %d %s records an earlier crawl could not (%d skipped: the store has newer)",
            counts["replayed"],
            collection,
            counts["replay_stale"],
        )

    def _parse(
        self, collection: str, path: Path, number: int, line: str, stats: Any
    ) -> Record | None:
        """One saved line as a record; a damaged one (a crash mid-write) is set aside."""
        try:
            saved = json.loads(line)
            return Record(
                saved["content"],
                saved["source"],
                fetched_at=saved["fetched_at"],
                revision=saved["revision"],
            )
        except (ValueError, KeyError, TypeError) as error:
            stats.inc_value(f"store/{collection}/replay_bad_lines")
            self._set_aside(collection, line)
            logger.warning(
                "%s line %d is damaged (%s); set aside in %s.bad",
                path.name,
                number,
                error,
                collection,
            )
            return None

    def _set_aside(self, collection: str, line: str) -> None:
        with open_private(self.folder / f"{collection}.bad", "a", encoding="utf-8") as out:
            out.write(line if line.endswith("\n") else line + "\n")

    @staticmethod
    def _put_back(claimed: Path, path: Path) -> None:
        # Appended, not renamed: a crawl failing meanwhile may have saved a new file.
        with claimed.open("rb") as source, open_private(path, "ab") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
        claimed.unlink()


def saved_line(record: Record) -> dict[str, Any]:
    """What ``SavedBatches`` keeps of a record: enough to make it again."""
    return {
        "content": record.content,
        "source": record.source,
        "fetched_at": record.fetched_at,
        "revision": record.revision,
    }


def upsert_isolating(
    store: Store, collection: str, records: list[Record]
) -> tuple[UpsertResult, list[Record], Exception | None]:
    """Upsert a batch; the outcome, the records the store refused and its last error.

    When the store refuses the batch for what it holds (a document too large, a value it
    cannot encode), the records are written one at a time so that only the refused ones
    fail. ``StoreUnavailableError`` (the store does not answer) and ``StoreFullError`` are
    raised: nothing can be told apart then. Blocking: run it on the store's thread.
    """
    try:
        return store.upsert_many(collection, records), [], None
    except (StoreUnavailableError, StoreFullError):
        raise
    except Exception as error:
        if len(records) == 1:
            return UpsertResult(), list(records), error
    result = UpsertResult()
    refused: list[Record] = []
    last_error: Exception | None = None
    for record in records:
        try:
            outcome = store.upsert_many(collection, [record])
        except (StoreUnavailableError, StoreFullError):
            raise
        except Exception as error:
            refused.append(record)
            last_error = error
            continue
        result.inserted += outcome.inserted
        result.updated += outcome.updated
        result.unchanged += outcome.unchanged
    return result, refused, last_error
