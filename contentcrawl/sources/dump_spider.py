"""DumpSpider: the base of spiders whose ``start()`` imports dump files instead of requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from scrapy import signals
from scrapy.exceptions import CloseSpider

from contentcrawl.batches import ItemBatch, PreparedBatch
from contentcrawl.dumps import DownloadError, DownloadResult, DumpFile, Progress
from contentcrawl.dumps.crawl import ItemFlow, fetch_dump, import_failed
from contentcrawl.dumps.pool import ChunkWorkers, DumpWorkerError, log_worked
from contentcrawl.dumps.workers import LineWork, WorkedChunk
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import Json
from contentcrawl.sources.base import ContentSpider
from contentcrawl.store.base import Record, utc_now

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

    from contentcrawl.items import ContentItem

Lines = list[tuple[int, bytes]]


class DumpTally(Protocol):
    """The counts of one dump being imported, judged once it is read."""

    lines: int
    bad_lines: int
    complete: bool


class ChunkNote(Protocol):
    """What ``DumpSpider.work_dump`` needs of the reader's note on a chunk."""

    # Bytes of the dump file consumed, for the progress line.
    position: int
    end: bool
    # The stream break that ended the file (line, reason, detail), if any.
    stream_error: tuple[int, str, str] | None


NoteT = TypeVar("NoteT", bound=ChunkNote)


class DumpSpider(ContentSpider):
    """Fetches dump files, works their lines in processes and sends their records on.

    To extend: set ``dump_source`` (the stat prefix), return ``dump_import(batches)`` from
    ``distributed_source`` where ``batches`` fetches each dump with ``fetch_dump_file``,
    passes it by when ``unchanged_dump``, works it with ``work_dump`` (the one place
    records become ``ItemBatch`` items) and stages what it imported with ``stage_dump``.
    A spider that imports a dump only in some runs makes ``imports_dump`` a property.
    """

    dump_source: ClassVar[str]
    imports_dump: bool = True
    # Set by from_crawler from the settings.
    progress_interval: float
    dump_workers: int
    chunk_lines: int
    prepare_records: bool
    flow: ItemFlow | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # -a rework / -a force, where a subclass declares them (FLAG): work every line again,
        # even those whose revision the store holds (new mappers).
        self.rework: bool = bool(self.options.get("rework"))
        # Read a dump file a complete earlier import read already (implied by rework).
        self.force: bool = bool(self.options.get("force")) or self.rework
        self.import_source: AsyncGenerator[ItemBatch, None] | None = None
        # Set when the import has ended, closed or not, its dump and store connection too.
        self.import_ended = asyncio.Event()
        # Set at spider close: the workers' results are waited for no longer.
        self.import_stopping = asyncio.Event()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.progress_interval = settings.getfloat("DUMP_PROGRESS_INTERVAL")
        spider.dump_workers = settings.getint("DUMP_WORKERS")
        spider.chunk_lines = max(1, settings.getint("DUMP_CHUNK_LINES"))
        # Validated and made store records in the workers, unless images are fetched
        # (the images pipeline adds to a record after validation, before it is stored).
        spider.prepare_records = not settings.getbool("IMAGES_ENABLED")
        spider.flow = (
            ItemFlow(crawler, settings.getint("DUMP_MAX_PENDING_ITEMS"))
            if spider.imports_dump
            else None
        )
        crawler.signals.connect(spider.end_import, signal=signals.spider_closed)
        return spider

    def dump_import(self, batches: AsyncGenerator[ItemBatch]) -> AsyncGenerator[ItemBatch]:
        """``batches`` as the source ``start()`` reads, ended by ``end_import`` at close."""
        self.import_source = self._until_ended(batches)
        return self.import_source

    async def _until_ended(self, batches: AsyncGenerator[ItemBatch]) -> AsyncGenerator[ItemBatch]:
        try:
            async with aclosing(batches) as opened:
                async for batch in opened:
                    yield batch
        finally:
            self.import_ended.set()

    async def end_import(self) -> None:
        """At spider close, end an import the engine no longer reads: before the crawl
        returns, the batch being read ahead is finished and the dump and the store
        connection are closed.

        Scrapy 2.19 stops pulling ``start()`` once the spider is closing and never closes
        it: left to the garbage collector, it closed the dump under the read-ahead thread
        ("I/O operation on closed file") and kept the store file open.
        """
        self.import_stopping.set()
        source = self.import_source
        if source is None:
            return
        if isinstance(source, AsyncGeneratorType) and source.ag_running:
            # The engine is in a step of it: the reader sees the closing spider and ends.
            await self.import_ended.wait()
        else:
            await source.aclose()

    async def fetch_dump_file(self, location: str) -> DownloadResult:
        """The local file of ``location`` (``fetch_dump``); one ERROR line and a close
        (``dump_download_failed``, ``dump_not_found``) when there is none."""
        try:
            return await fetch_dump(self.crawler, location)
        except DownloadError as error:
            self.logger.error("%s: cannot download the dump: %s", self.name, error)
            raise CloseSpider("dump_download_failed") from None
        except FileNotFoundError as error:
            self.logger.error("%s: %s", self.name, error)
            raise CloseSpider("dump_not_found") from None

    async def work_dump(
        self,
        dump: DumpFile,
        work: LineWork,
        chunks: AsyncIterator[tuple[Lines, Any, NoteT]],
        count: Callable[[NoteT, WorkedChunk], int],
        tally: DumpTally,
        *,
        item_class: type[ContentItem] | Callable[[NoteT], type[ContentItem]],
        limit: int | None,
        label: str,
        dump_name: str,
    ) -> AsyncGenerator[ItemBatch]:
        """``chunks`` of lines worked by ``work`` in ``DUMP_WORKERS`` processes, sent on in
        the order they were read as one batch each, short ones joined up to
        ``DUMP_CHUNK_LINES`` records a batch (``PreparedBatch`` of ``item_class``, or of the
        class it gives a chunk's note, when the workers made the store records);
        ``count`` counts each on the reactor and answers the records so far. Once read,
        ``tally`` is judged: complete when read to its end within ``DUMP_MAX_BAD_LINE_SHARE``;
        a worker dying twice on one chunk fails the import (``<source>/import/failed``),
        nothing sent is lost."""
        flow = self.flow
        # Set in from_crawler whenever the run imports a dump.
        assert flow is not None
        progress = Progress(label, dump.size, self.progress_interval, log=self.logger)
        workers = ChunkWorkers(
            self.dump_workers,
            logging.getLogger().getEffectiveLevel(),
            preload=(type(work).__module__,),
            chunk_lines=self.chunk_lines,
        )
        stats = self.crawler.stats
        last: NoteT | None = None
        failed = False
        # The records of short chunks (a re-import's, their unchanged lines skipped) go on
        # together, up to DUMP_CHUNK_LINES of them, as a first import's do: the
        # DUMP_MAX_PENDING_ITEMS batches in the pipelines then hold enough records to fill
        # the next store batch while one is written, whatever the share of changed lines.
        held: ItemBatch | None = None
        try:
            # With a limit, one chunk at a time: each is cut to the records still wanted.
            worked = workers.worked(work, chunks, self.import_stopping, ahead=1 if limit else None)
            async with aclosing(worked) as results:
                async for note, chunk in results:
                    if chunk.stopped or not flow.open():
                        break
                    last = note
                    for key, value in chunk.stats.items():
                        stats.inc_value(key, value)
                    log_worked(chunk)
                    records = count(note, chunk)
                    ready: list[ItemBatch] = []
                    if chunk.records or chunk.items:
                        kind = item_class if isinstance(item_class, type) else item_class(note)
                        batch = self._batch_of(kind, chunk)
                        joined = held.joined(batch) if held is not None else batch
                        if held is not None and (joined is None or len(joined) > self.chunk_lines):
                            # Another item class, or more than a chunk's lines: the records
                            # held go on first (a batch never holds more than a chunk's).
                            ready.append(held)
                            joined = batch
                        held = joined
                    if held is not None and (limit or note.end or len(held) >= self.chunk_lines):
                        ready.append(held)
                        held = None
                    taken = True
                    for batch in ready:
                        yield batch
                        taken = await flow.sent()
                        if not taken:
                            break
                    if not taken:
                        break
                    progress.update(note.position, records)
        except DumpWorkerError as error:
            failed = True
            stats.set_value(f"{self.dump_source}/import/failed", 1)
            self.logger.error("Import of %s failed: %s", dump_name, error)
        finally:
            workers.close()
        if held is not None and flow.open():
            # Worked before the import stopped or failed: stored all the same.
            yield held
            await flow.sent()
        if workers.restarts:
            stats.inc_value(f"{self.dump_source}/import/worker_restarts", workers.restarts)
        stats.max_value(f"{self.dump_source}/import/worker_processes", workers.workers)
        tally.complete = not failed and last is not None and last.end and last.stream_error is None
        if import_failed(self.crawler, self.dump_source, dump_name, tally.lines, tally.bad_lines):
            tally.complete = False
        await flow.drained()

    def _batch_of(self, item_class: type[ContentItem], chunk: WorkedChunk) -> ItemBatch:
        if not self.prepare_records:
            return ItemBatch(chunk.items)
        source = item_class.source
        return PreparedBatch(
            item_class,
            [
                Record.worked(key, body, hash_, source, fetched_at=fetched_at, revision=revision)
                for key, body, hash_, revision, fetched_at in chunk.records
            ],
        )

    async def unchanged_dump(self, key: str, download: DownloadResult, shown: str) -> bool:
        """Whether ``download`` is the very file a complete earlier import read (``key``'s
        sync state: same size and ETag/Last-Modified, or for a local file the same size and
        modification time); then one INFO line says why it is not read. Never with
        ``-a force=1``."""
        sync = self.crawler.get_extension(SyncState)
        if self.force or sync is None:
            return False
        previous = await sync.load(key)
        if not previous or not previous.get("complete"):
            return False
        if dump_identity(previous) != dump_identity(self.dump_state(download)):
            return False
        self.crawler.stats.inc_value(f"{self.dump_source}/import/unchanged_dump")
        self.logger.info(
            "%s: %s is unchanged since its complete import of %s (%s): not read again "
            "(-a force=1 reads it)",
            self.name,
            shown,
            previous.get("finished_at"),
            "same ETag/Last-Modified and size"
            if previous.get("etag") or previous.get("last_modified")
            else "same size and modification time",
        )
        return True

    @staticmethod
    def dump_state(download: DownloadResult) -> Json:
        """What the sync state keeps of a dump file to know it again."""
        return {
            "file": str(download.path),
            "size": download.size,
            "etag": download.etag,
            "last_modified": download.last_modified,
            "modified_ns": download.path.stat().st_mtime_ns,
        }

    def stage_dump(
        self, key: str, shown: str, download: DownloadResult, counts: Json, complete: bool
    ) -> None:
        """Stage ``key`` with the ``SyncState`` extension: the dump, its validators and
        ``counts``; saved only if the run finishes cleanly (every batch stored)."""
        sync = self.crawler.get_extension(SyncState)
        if sync is None:
            return
        sync.stage(
            key,
            {
                "dump": shown,
                **self.dump_state(download),
                "download": download.outcome,
                **counts,
                "complete": complete,
                "finished_at": utc_now(),
            },
        )


def dump_identity(state: Json) -> tuple[Any, ...]:
    """What makes two dump files one: the server's validators when it gave any, else
    (a local file) its modification time; and the size."""
    if state.get("etag") or state.get("last_modified"):
        return (state.get("size"), state.get("etag"), state.get("last_modified"))
    return (state.get("size"), state.get("file"), state.get("modified_ns"))
