"""The Open Library dump spider: one dump kind read in batches, looked up in the store."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request

from contentcrawl.dumps import (
    BATCH_LINES,
    DownloadResult,
    DumpFile,
    DumpReadError,
    fewer_gc_passes,
    is_url,
)
from contentcrawl.items import ContentItem, ItemBatch
from contentcrawl.redaction import redact_url
from contentcrawl.sources.base import TEXT, Argument
from contentcrawl.sources.dump_spider import DumpSpider
from contentcrawl.sources.openlibrary.mappers import BadLineError, DumpLine, parse_line
from contentcrawl.store import Store, build_store

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


@dataclass
class Batch:
    """What one trip to the worker thread read."""

    items: list[ContentItem] = field(default_factory=list)
    lines: int = 0
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # line, reason, detail
    skipped: Counter[str] = field(default_factory=Counter)
    position: int = 0
    end: bool = False
    # Why the file could not be read to its end (truncated or corrupt compression), if so.
    stream_error: str | None = None


# --- store lookups ------------------------------------------------------------------------


class AuthorNames:
    """Author key → name from the store's ``authors``, with a bounded LRU cache.

    The store contract has no multi-key get, so each miss is one ``store.get``; the cache
    keeps popular authors (and unknown keys) from being asked for again.
    """

    def __init__(self, store: Store, max_size: int = 100_000) -> None:
        self.store = store
        self.max_size = max_size
        self._cache: OrderedDict[str, str | None] = OrderedDict()

    def lookup(self, keys: Iterable[str]) -> dict[str, str | None]:
        """Names of ``keys`` (None when the author is not in the store)."""
        found: dict[str, str | None] = {}
        for key in keys:
            if key in found:
                continue
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
                continue
            document = self.store.get("authors", key)
            name = document.get("name") if document else None
            found[key] = name if isinstance(name, str) else None
            self._cache[key] = found[key]
            if len(self._cache) > self.max_size:
                self._cache.popitem(last=False)
        return found


# --- the spider -------------------------------------------------------------------------


class OpenLibraryDumpSpider(DumpSpider):
    """Imports one Open Library dump kind; ``-a dump=PATH_OR_URL`` and ``-a limit=N``.

    Without ``dump`` the latest dump of the kind under ``OPENLIBRARY_DUMPS_URL`` is used.
    Bad lines are counted (``openlibrary/bad_lines[/<reason>]``), logged with their line
    number and skipped; a progress line is logged every ``PROGRESS_INTERVAL`` seconds.
    """

    slot = "openlibrary_dumps"
    dump_source = "openlibrary"
    dump_kind: ClassVar[str]
    record_type: ClassVar[str]
    item_class: ClassVar[type[ContentItem]]
    # True when prepare/enrich read the store: the spider then opens its own connection.
    uses_store: ClassVar[bool] = False
    spider_arguments: ClassVar[dict[str, Argument]] = {"dump": TEXT}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dump: str | None = self.options.get("dump")
        self.lines = 0
        self.records = 0
        self.bad_lines = 0
        self.skipped: Counter[str] = Counter()
        self.download: DownloadResult | None = None
        self.complete = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.dumps_url = settings.get("OPENLIBRARY_DUMPS_URL") or "https://openlibrary.org/data"
        spider.covers_url = (
            settings.get("OPENLIBRARY_COVERS_URL") or "https://covers.openlibrary.org/b"
        )
        spider.photos_url = (
            settings.get("OPENLIBRARY_PHOTOS_URL") or "https://covers.openlibrary.org/a"
        )
        return spider

    def default_dump_url(self) -> str:
        """The newest dump of this kind under ``OPENLIBRARY_DUMPS_URL``."""
        return f"{self.dumps_url.rstrip('/')}/ol_dump_{self.dump_kind}_latest.txt.gz"

    def map_record(self, record: DumpLine) -> ContentItem:
        """The item for one dump line of ``record_type``."""
        raise NotImplementedError

    def prepare(self, store: Store) -> None:
        """With ``uses_store``: called once in a worker thread with the opened store."""

    def enrich(self, items: list[ContentItem]) -> None:
        """Called in the worker thread on each batch of items, before they are yielded."""

    @property
    def location(self) -> str:
        """The dump asked for: ``-a dump`` or the default URL."""
        return self.dump or self.default_dump_url()

    @property
    def shown_location(self) -> str:
        """``location`` fit for logs and state (a URL's credentials masked)."""
        return redact_url(self.location) if is_url(self.location) else self.location

    async def start(self) -> Any:
        self.logger.info(
            "%s: importing %s dump %s (limit %s, store %s)",
            self.name,
            self.dump_kind,
            self.shown_location,
            self.limit or "none",
            "MongoDB" if self.settings.get("MONGO_URI") else self.settings.get("SQLITE_PATH"),
        )
        async for batch in self.read_source(self.distributed_source()):
            yield batch

    # -- distributed runs (contentcrawl.extensions.distributed.DistributedSpider) -----------
    @property
    def distributed_collection(self) -> str:
        return self.item_class.collection

    def distributed_source(self) -> AsyncIterator[ItemBatch]:
        """The whole import: download (or open) the dump and read it."""
        return self.dump_import(self._import_dump())

    def distributed_key(self, request_or_item: Any) -> str | None:
        """None: records come from the dump itself, there is no request to fetch again.

        A worker that dies mid-import loses its lock; the worker taking over reads the dump
        again from the start, and what was stored already costs no write.
        """
        return None

    def distributed_request(self, key: str) -> Request:
        raise ValueError(f"{self.name} imports a dump and has no request for {key!r}")

    async def _import_dump(self) -> AsyncGenerator[ItemBatch, None]:
        shown = self.shown_location
        self.download = await self.fetch_dump_file(self.location)
        store = build_store(self.settings) if self.uses_store else None
        try:
            if store is not None:
                await asyncio.to_thread(store.open)
                await asyncio.to_thread(self.prepare, store)
            # aclosing: closing this import closes the reader (and waits for its read-ahead)
            # before the dump file is closed under it.
            with fewer_gc_passes(), DumpFile(self.download.path) as dump:
                lines = dump.lines()
                batches = self.read_dump(
                    dump,
                    lambda budget: self._read_batch(dump, lines, budget),
                    self._count,
                    self,
                    limit=self.limit,
                    label=self.name,
                    dump_name=self.dump_file,
                )
                async with aclosing(batches) as opened:
                    async for batch in opened:
                        yield batch
        finally:
            if store is not None:
                await asyncio.to_thread(store.close)
        self.stage_dump(
            f"{self.name}/dump",
            shown,
            self.download,
            {"lines": self.lines, "records": self.records, "bad_lines": self.bad_lines},
            self.complete,
        )

    def _read_batch(self, dump: DumpFile, lines: Iterator[tuple[int, bytes]], budget: int) -> Batch:
        batch = Batch()
        try:
            for line_number, line in lines:
                batch.lines += 1
                try:
                    record = parse_line(line, self.record_type)
                    if isinstance(record, str):
                        batch.skipped[record] += 1
                    else:
                        batch.items.append(self.map_record(record))
                except BadLineError as bad:
                    batch.bad.append((line_number, bad.reason, bad.detail))
                except (KeyError, TypeError, ValueError, AttributeError) as error:
                    batch.bad.append((line_number, "fields", repr(error)))
                if len(batch.items) >= budget or batch.lines >= BATCH_LINES:
                    break
            else:
                batch.end = True
        except DumpReadError as error:
            batch.bad.append((error.line_number, error.reason, error.detail))
            batch.end = True
            batch.stream_error = error.reason
        self.enrich(batch.items)
        batch.position = dump.position
        return batch

    def _count(self, batch: Batch) -> int:
        """Count a batch's lines, records and bad lines; the records so far."""
        stats = self.crawler.stats
        self.lines += batch.lines
        stats.inc_value("openlibrary/lines", batch.lines)
        if batch.items:
            self.records += len(batch.items)
            stats.inc_value("openlibrary/records", len(batch.items))
        for line_number, reason, detail in batch.bad:
            self.bad_lines += 1
            stats.inc_value("openlibrary/bad_lines")
            stats.inc_value(f"openlibrary/bad_lines/{reason}")
            self.logger.warning(
                "%s line %d skipped (%s): %s", self.dump_file, line_number, reason, detail[:200]
            )
        for type_, count in batch.skipped.items():
            self.skipped[type_] += count
            stats.inc_value(f"openlibrary/skipped/{type_.rsplit('/', 1)[-1]}", count)
        return self.records

    @property
    def dump_file(self) -> str:
        """The local dump file (or, before it is known, the location asked for)."""
        if self.download is not None:
            return str(self.download.path)
        return self.shown_location

    def closed(self, reason: str) -> None:
        if self.download is None and self.distributed is not None:
            self.logger.info("%s %s: the dump was imported by another worker", self.name, reason)
            return
        stats = self.crawler.stats
        outcomes = ", ".join(
            f"{outcome} {stats.get_value(f'store/{self.item_class.collection}/{outcome}', 0)}"
            for outcome in ("inserted", "updated", "unchanged", "failed")
        )
        skipped = sum(self.skipped.values())
        self.logger.log(
            logging.WARNING if self.bad_lines else logging.INFO,
            "%s %s: %d records from %d lines of %s; %d bad lines skipped%s; store: %s",
            self.name,
            reason,
            self.records,
            self.lines,
            self.dump_file,
            self.bad_lines,
            f", {skipped} lines of other types skipped" if skipped else "",
            outcomes,
        )
