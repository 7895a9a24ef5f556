"""The Open Library dump spider: one dump kind read in chunks, worked in processes."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request

from contentcrawl.batches import ItemBatch
from contentcrawl.dumps import DownloadResult, DumpFile, fewer_gc_passes, is_url
from contentcrawl.dumps.workers import WorkedChunk
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ContentItem
from contentcrawl.redaction import redact_url
from contentcrawl.sources.base import FLAG, TEXT, Argument
from contentcrawl.sources.dump_spider import DumpSpider
from contentcrawl.sources.openlibrary.lines import LineChunk, LineWorker, read_chunk
from contentcrawl.store import Store

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


@dataclass
class ChunkNote:
    """The reader's counts of one chunk, joined to the chunk's worked result."""

    lines: int
    unchanged: int
    position: int
    end: bool
    stream_error: tuple[int, str, str] | None


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
    """Imports one Open Library dump kind; ``-a dump=PATH_OR_URL``, ``-a limit=N``,
    ``-a force=1`` (read a dump a complete import read already) and ``-a rework=1`` (work
    every line again, whatever revision the store holds).

    Without ``dump`` the latest dump of the kind under ``OPENLIBRARY_DUMPS_URL`` is used.
    Bad lines are counted (``openlibrary/bad_lines[/<reason>]``), logged with their line
    number and skipped; a progress line is logged every ``DUMP_PROGRESS_INTERVAL`` seconds.
    """

    slot = "openlibrary_dumps"
    dump_source = "openlibrary"
    dump_kind: ClassVar[str]
    record_type: ClassVar[str]
    item_class: ClassVar[type[ContentItem]]
    # True when prepare/chunk_context read the store (through the crawl's store).
    uses_store: ClassVar[bool] = False
    spider_arguments: ClassVar[dict[str, Argument]] = {
        "dump": TEXT,
        "force": FLAG,
        "rework": FLAG,
    }
    # Set by from_crawler from the settings.
    dumps_url: str
    covers_url: str
    photos_url: str

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

    def line_mapper(self) -> Callable[..., ContentItem]:
        """The pure mapper of one parsed line's JSON to its item, ``mapper(doc, revision=…)``:
        a module-level function or a partial of one (the workers receive it pickled)."""
        raise NotImplementedError

    def line_enricher(self) -> Callable[[list[ContentItem], Any], None] | None:
        """What the workers run on each chunk's items with its ``chunk_context``, if anything."""
        return None

    def prepare(self, store: Store) -> None:
        """With ``uses_store``: called once on the crawl's store thread before the import."""

    async def chunk_context(self, lines: list[tuple[int, bytes]]) -> Any:
        """What the crawl looks up for a chunk before the workers get it (None: nothing)."""
        return None

    def line_work(self) -> LineWorker:
        """The work the workers do on each chunk of this kind's lines."""
        return LineWorker(
            self.record_type, self.line_mapper(), self.prepare_records, self.line_enricher()
        )

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
        state_key = f"{self.name}/dump"
        if await self.unchanged_dump(state_key, self.download, shown):
            return
        if self.uses_store:
            await crawl_store(self.crawler).run(self.prepare)
        # aclosing: closing this import stops the reader (and the workers) before the dump
        # file is closed under them.
        with fewer_gc_passes(), DumpFile(self.download.path) as dump:
            batches = self.work_dump(
                dump,
                self.line_work(),
                self._chunks(dump, dump.lines()),
                self._count,
                self,
                item_class=self.item_class,
                limit=self.limit,
                label=self.name,
                dump_name=self.dump_file,
            )
            async with aclosing(batches) as opened:
                async for batch in opened:
                    yield batch
        self.stage_dump(
            state_key,
            shown,
            self.download,
            {"lines": self.lines, "records": self.records, "bad_lines": self.bad_lines},
            self.complete,
        )

    async def _chunks(
        self, dump: DumpFile, lines: Iterator[tuple[int, bytes]]
    ) -> AsyncIterator[tuple[list[tuple[int, bytes]], Any, ChunkNote]]:
        """Chunks of lines read in a thread, less the lines whose revision the store holds
        (unless ``-a rework=1``), each with its ``chunk_context`` and the reader's note."""
        while True:
            budget = self.chunk_lines
            if self.limit is not None:
                # One record at most per line: never more than the limit still wants.
                budget = min(budget, self.limit - self.records)
                if budget <= 0:
                    return
            record_type = None if self.rework else self.record_type.encode()
            chunk: LineChunk = await asyncio.to_thread(read_chunk, dump, lines, budget, record_type)
            work = chunk.lines if self.rework else await self._changed_lines(chunk)
            note = ChunkNote(
                len(chunk.lines),
                len(chunk.lines) - len(work),
                chunk.position,
                chunk.end,
                chunk.stream_error,
            )
            yield work, await self.chunk_context(work), note
            if chunk.end:
                return

    async def _changed_lines(self, chunk: LineChunk) -> list[tuple[int, bytes]]:
        """The chunk's lines less those whose key the store holds at the line's own revision
        (one query). ``chunk.keyed`` is ``(index, key, revision)`` of each line whose key
        and revision could be read; the other lines are worked (the workers count a bad
        one)."""
        keyed = chunk.keyed
        if not keyed:
            return chunk.lines
        collection = self.item_class.collection
        revisions = {key: revision for _, key, revision in keyed}
        same = await crawl_store(self.crawler).run(
            lambda store: store.unchanged_keys(collection, revisions)
        )
        if not same:
            return chunk.lines
        # Per line: a key a chunk holds twice is skipped only on its line at the revision
        # asked about (the last one), never on a line at another revision.
        unchanged = {
            index for index, key, revision in keyed if key in same and revisions[key] == revision
        }
        return [line for index, line in enumerate(chunk.lines) if index not in unchanged]

    def _count(self, note: ChunkNote, chunk: WorkedChunk) -> int:
        """Count a chunk's lines, records, unchanged, bad and skipped lines; the records so far."""
        stats = self.crawler.stats
        self.lines += note.lines
        stats.inc_value("openlibrary/lines", note.lines)
        if note.unchanged:
            stats.inc_value("openlibrary/import/unchanged_revision", note.unchanged)
        records = len(chunk.records) + len(chunk.items)
        if records:
            self.records += records
            stats.inc_value("openlibrary/records", records)
        bad = chunk.bad + ([note.stream_error] if note.stream_error else [])
        for line_number, reason, detail in bad:
            self.bad_lines += 1
            stats.inc_value("openlibrary/bad_lines")
            stats.inc_value(f"openlibrary/bad_lines/{reason}")
            self.logger.warning(
                "%s line %d skipped (%s): %s", self.dump_file, line_number, reason, detail[:200]
            )
        for type_, count in chunk.skipped.items():
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
        unchanged = stats.get_value("openlibrary/import/unchanged_revision", 0)
        self.logger.log(
            logging.WARNING if self.bad_lines else logging.INFO,
            "%s %s: %d records from %d lines of %s; %d bad lines skipped%s%s; store: %s",
            self.name,
            reason,
            self.records,
            self.lines,
            self.dump_file,
            self.bad_lines,
            f", {skipped} lines of other types skipped" if skipped else "",
            f", {unchanged} lines at the revision already stored skipped" if unchanged else "",
            outcomes,
        )
