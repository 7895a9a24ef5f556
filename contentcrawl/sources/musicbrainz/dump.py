"""MusicBrainz JSON dumps: ``<entity>.tar.xz`` archives streamed line by line into items.

The dumps live under ``MUSICBRAINZ_DUMPS_URL``: the file ``LATEST`` names the newest
directory (``20240501-001001``), which holds ``artist.tar.xz``, ``release-group.tar.xz``
and the other entities. An archive holds small metadata files (``TIMESTAMP``,
``JSON_DUMPS_SCHEMA_NUMBER``, ``COPYING``…) and ``mbdump/<entity>``: one JSON document per
line, the entity JSON ws/2 answers a lookup with, every include present.

Nothing here holds a whole file: the spider's ``fetch_dump_file`` downloads (resumably, and
not again when the server's copy is unchanged), ``DumpFile`` decompresses the xz layer as a
stream, ``tarfile`` reads the tar layer in streaming mode (``r|``) and the data member is
read a line at a time, in chunks on a thread (``lines.EntityChunks``) whose lines worker
processes parse, map and make store records of (``DumpSpider.work_dump``), while
``ItemFlow`` keeps the batches waiting for the pipelines few. A JSON-lines file
(``mbdump/artist`` taken out of its archive, ``artist.jsonl``, ``release-group.json.gz``) is
read the same way, its entity named by its file name. A file a complete earlier import read
(same size and ETag/Last-Modified, or size and modification time) is not read again; in a
file that is read, a line whose digest a stored record holds as its revision is not
worked again (``Store.held_revisions``).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Protocol

from scrapy.exceptions import CloseSpider

from contentcrawl.batches import ItemBatch
from contentcrawl.dumps import (
    DownloadResult,
    DumpFile,
    fewer_gc_passes,
    is_url,
)
from contentcrawl.dumps.workers import LineWork, WorkedChunk
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ContentItem, Json
from contentcrawl.redaction import redact_url
from contentcrawl.scrapy_internals import spider_closing
from contentcrawl.sources.musicbrainz.archive import (
    DATA_PREFIX,
    ArchiveLines,
    is_archive,
    plain_entity,
    plain_lines,
)
from contentcrawl.sources.musicbrainz.lines import (
    EntityChunks,
    EntityLineWorker,
    EntityNote,
    Lines,
    Mapper,
    line_keys,
    line_revisions,
)
from contentcrawl.store import Store, StoreError

if TYPE_CHECKING:
    import logging

    from scrapy import Request
    from scrapy.crawler import Crawler

    from contentcrawl.sources.dump_spider import DumpTally

_LATEST = re.compile(r"\d{8}-\d{6}")


class DumpImportSpider(Protocol):
    """What a dump import uses of the spider it runs in (``MusicBrainzSpider`` has it all)."""

    name: str
    crawler: Crawler
    limit: int | None
    dumps: list[str]
    dumps_url: str
    dump_slot: str
    entities: list[str]
    chunk_lines: int
    prepare_records: bool
    rework: bool

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def request(self, url: str, **kwargs: Any) -> Request: ...

    async def fetch_dump_file(self, location: str) -> DownloadResult: ...

    async def unchanged_dump(self, key: str, download: DownloadResult, shown: str) -> bool: ...

    def work_dump(
        self,
        dump: DumpFile,
        work: LineWork,
        chunks: AsyncIterator[tuple[Lines, Any, EntityNote]],
        count: Callable[[EntityNote, WorkedChunk], int],
        tally: DumpTally,
        *,
        item_class: Callable[[EntityNote], type[ContentItem]],
        limit: int | None,
        label: str,
        dump_name: str,
    ) -> AsyncGenerator[ItemBatch]: ...

    def stage_dump(
        self, key: str, shown: str, download: DownloadResult, counts: Json, complete: bool
    ) -> None: ...


class DumpImport:
    """One dump file (a path or URL) imported in a spider's ``start()``; see ``items()``.

    ``limit``: records to read from it at most (None: all).
    """

    def __init__(
        self,
        spider: DumpImportSpider,
        location: str,
        mappers: Mapping[str, Mapper],
        item_classes: Mapping[str, type[ContentItem]],
        limit: int | None = None,
    ) -> None:
        self.spider = spider
        self.limit = limit
        self.location = location
        self.mappers = mappers
        self.item_classes = item_classes
        self.shown = redact_url(location) if is_url(location) else location
        self.download: DownloadResult | None = None
        self.metadata: dict[str, str] = {}
        self.lines = 0
        self.records: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.unchanged = 0
        self.bad_lines = 0
        self.complete = False
        # Collection -> whether it held records when this import read its first lines.
        self.held_records: dict[str, bool] = {}

    @property
    def file_name(self) -> str:
        """The dump's file name (``artist.tar.xz``), which names its sync state."""
        return self.download.path.name if self.download is not None else self.shown

    async def items(self) -> AsyncGenerator[ItemBatch]:
        """The dump's records in batches, its lines worked in ``DUMP_WORKERS`` processes;
        stages ``<spider>/dump/<file name>`` when read. A file a complete earlier import
        read is not read again (unless ``-a force=1``)."""
        spider = self.spider
        self.download = await spider.fetch_dump_file(self.location)
        path = self.download.path
        entity = None if is_archive(path.name) else plain_entity(path.name)
        if entity is not None and entity not in self.mappers:
            spider.logger.error(
                "%s: cannot tell which entity %s holds: name a JSON-lines dump after its "
                "entity (%s, optionally .jsonl and .gz/.bz2/.xz) or give the .tar.xz archive",
                spider.name,
                path,
                ", ".join(self.mappers),
            )
            raise CloseSpider("dump_unknown_entity")
        state_key = f"{spider.name}/dump/{self.file_name}"
        if await spider.unchanged_dump(state_key, self.download, self.shown):
            return
        spider.logger.info(
            "%s: importing %s (%s, %s bytes, limit %s)",
            spider.name,
            self.shown,
            self.download.outcome,
            f"{self.download.size:,}",
            self.limit or "none",
        )
        with fewer_gc_passes(), DumpFile(path) as dump:
            if entity is None:
                archive = ArchiveLines(dump.stream)
                self.metadata = archive.metadata
                lines: Iterator[tuple[str, int, bytes]] = iter(archive)
            else:
                lines = plain_lines(dump, entity)
            batches = spider.work_dump(
                dump,
                EntityLineWorker(self.mappers, spider.prepare_records),
                self._chunks(EntityChunks(dump, lines, self.mappers)),
                self._count,
                self,
                item_class=self._item_class,
                limit=self.limit,
                label=f"{spider.name} {self.file_name}",
                dump_name=self.file_name,
            )
            # aclosing: closing this import stops the reader (and the workers) before the
            # dump file is closed under them.
            try:
                async with aclosing(batches) as opened:
                    async for batch in opened:
                        yield batch
            finally:
                await self._build_revision_indexes()
        self._finish(state_key)

    async def _build_revision_indexes(self) -> None:
        """The revision indexes of the collections this import found empty (their first
        import: ``defer_revision_index``)."""
        for collection, held in self.held_records.items():
            if not held:
                await self._revision_index(collection, build=True)

    async def _revision_index(self, collection: str, *, build: bool) -> None:
        """Build or drop the index of ``collection``'s revisions: a store that cannot only
        costs speed (re-imports read the whole table until the store's next opening)."""

        def step(store: Store) -> None:
            if build:
                store.build_revision_index(collection)
            else:
                store.defer_revision_index(collection)

        try:
            await crawl_store(self.spider.crawler).run(step)
        except StoreError as error:
            self.spider.logger.warning(
                "%s: cannot %s the index of revisions of %s: %s",
                self.spider.name,
                "build" if build else "drop",
                collection,
                error,
            )

    async def _chunks(self, chunks: EntityChunks) -> AsyncIterator[tuple[Lines, str, EntityNote]]:
        """Chunks of one entity's lines read in a thread, less the lines whose record the
        store holds at their revision (``_changed_lines``), each with its entity (the
        workers' context) and the reader's note."""
        while True:
            budget = self.spider.chunk_lines
            if self.limit is not None:
                # One record at most per line: never more than the limit still wants.
                budget = min(budget, self.limit - sum(self.records.values()))
                if budget <= 0:
                    return
            looked_up = frozenset(
                entity
                for entity, item_class in self.item_classes.items()
                if self.held_records.get(item_class.collection)
            )
            lines, note, revisions = await asyncio.to_thread(self._read, chunks, budget, looked_up)
            if lines and await self._skips_unchanged(note.entity):
                lines = await self._changed_lines(lines, note, revisions)
            yield lines, note.entity, note
            if note.end:
                return

    @staticmethod
    def _read(
        chunks: EntityChunks, budget: int, looked_up: frozenset[str]
    ) -> tuple[Lines, EntityNote, list[int] | None]:
        """``chunks.read(budget)``, and the digests of its lines when their entity is one
        of ``looked_up``: taken on the reader's thread, which waits for the store's, rather
        than on the store's thread, which the writes of changed lines keep busy."""
        lines, note = chunks.read(budget)
        return lines, note, line_revisions(lines) if note.entity in looked_up else None

    async def _skips_unchanged(self, entity: str) -> bool:
        """Whether the lines of ``entity`` are looked up in the store before they are
        worked: never with ``-a rework=1``, and only if its collection held records when
        this import read its first lines. A first import skips nothing, so it does not pay
        for the digests of its lines; it writes without the index of revisions
        (``defer_revision_index``)."""
        if self.spider.rework:
            return False
        collection = self.item_classes[entity].collection
        held = self.held_records.get(collection)
        if held is None:
            held = await crawl_store(self.spider.crawler).run(
                lambda store: store.last_updated(collection) is not None
            )
            self.held_records[collection] = held
            if not held:
                await self._revision_index(collection, build=False)
        return held

    async def _changed_lines(
        self, lines: Lines, note: EntityNote, revisions: list[int] | None
    ) -> Lines:
        """``lines`` less those whose digest (``revisions``, or taken here when the reader
        did not) a stored record holds as its revision (one query), counted in
        ``note.unchanged``."""
        collection = self.item_classes[note.entity].collection
        digests = (
            revisions if revisions is not None else await asyncio.to_thread(line_revisions, lines)
        )
        held = await crawl_store(self.spider.crawler).run(
            lambda store: store.held_revisions(collection, digests, lambda: line_keys(lines))
        )
        if not held:
            return lines
        changed = [line for line, digest in zip(lines, digests, strict=True) if digest not in held]
        note.unchanged = len(lines) - len(changed)
        return changed

    def _item_class(self, note: EntityNote) -> type[ContentItem]:
        return self.item_classes[note.entity]

    def _count(self, note: EntityNote, chunk: WorkedChunk) -> int:
        """Count a chunk's lines, records, unchanged, skipped and bad lines; the records so
        far."""
        spider = self.spider
        stats = spider.crawler.stats
        self.lines += note.lines
        stats.inc_value("musicbrainz/dump/lines", note.lines)
        if note.unchanged:
            self.unchanged += note.unchanged
            stats.inc_value("musicbrainz/import/unchanged_revision", note.unchanged)
        records = len(chunk.records) + len(chunk.items)
        if records:
            self.records[note.entity] += records
            stats.inc_value(f"musicbrainz/dump/records/{note.entity}", records)
        for entity, count in note.skipped.items():
            self.skipped[entity] += count
            stats.inc_value(f"musicbrainz/dump/skipped/{entity}", count)
        for line_number, reason, detail in chunk.bad:
            self._bad_line(reason)
            spider.logger.warning(
                "%s %s line %d skipped (%s): %s",
                self.file_name,
                note.entity,
                line_number,
                reason,
                detail[:200],
            )
        if note.stream_error is not None:
            line_number, reason, detail = note.stream_error
            self._bad_line(reason)
            # Everything after the break is lost: an error (the sync state is not saved).
            spider.logger.error(
                "%s is %s: %s line %d and everything after it unreadable: %s",
                self.file_name,
                reason,
                note.entity or "?",
                line_number,
                detail[:200],
            )
        return sum(self.records.values())

    def _bad_line(self, reason: str) -> None:
        self.bad_lines += 1
        stats = self.spider.crawler.stats
        stats.inc_value("musicbrainz/dump/bad_lines")
        stats.inc_value(f"musicbrainz/dump/bad_lines/{reason}")

    def _finish(self, state_key: str) -> None:
        spider = self.spider
        records = sum(self.records.values())
        if self.complete and not self.records and not self.unchanged and not self.bad_lines:
            spider.logger.error(
                "%s: no %s data in %s (members: %s)",
                spider.name,
                " or ".join(f"{DATA_PREFIX}{entity}" for entity in self.mappers),
                self.file_name,
                ", ".join(self.metadata) or "none",
            )
        spider.logger.info(
            "%s: %s: %d records (%s) from %d lines, %d bad lines%s%s%s",
            spider.name,
            self.file_name,
            records,
            ", ".join(f"{count} {entity}" for entity, count in sorted(self.records.items())),
            self.lines,
            self.bad_lines,
            f", {self.unchanged} lines at the revision already stored skipped"
            if self.unchanged
            else "",
            f", dump of {self.metadata['TIMESTAMP']}" if "TIMESTAMP" in self.metadata else "",
            "" if self.complete else ", not read to its end",
        )
        if self.download is None:
            return
        spider.stage_dump(
            state_key,
            self.shown,
            self.download,
            {
                "timestamp": self.metadata.get("TIMESTAMP"),
                "schema": self.metadata.get("JSON_DUMPS_SCHEMA_NUMBER"),
                "lines": self.lines,
                "records": dict(self.records),
                "bad_lines": self.bad_lines,
            },
            self.complete,
        )


async def latest_dump_urls(spider: DumpImportSpider) -> list[str]:
    """``<MUSICBRAINZ_DUMPS_URL>/<LATEST>/<entity>.tar.xz`` for each of the spider's entities."""
    url = f"{spider.dumps_url}/LATEST"
    request = spider.request(url, meta={"download_slot": spider.dump_slot}, dont_filter=True)
    try:
        response = await spider.crawler.engine.download_async(request)
    except Exception as error:
        spider.logger.error("%s: cannot read %s: %r", spider.name, redact_url(url), error)
        raise CloseSpider("dump_latest_unavailable") from None
    name = response.body.decode("utf-8", "replace").strip()
    if response.status != 200 or not _LATEST.fullmatch(name):
        spider.logger.error(
            "%s: %s answered HTTP %d %.80r, not the name of a dump",
            spider.name,
            redact_url(url),
            response.status,
            name,
        )
        raise CloseSpider("dump_latest_unavailable")
    spider.logger.info("%s: latest MusicBrainz dump is %s", spider.name, name)
    return [f"{spider.dumps_url}/{name}/{entity}.tar.xz" for entity in spider.entities]


async def import_dumps(
    spider: DumpImportSpider,
    mappers: Mapping[str, Mapper],
    item_classes: Mapping[str, type[ContentItem]],
) -> AsyncGenerator[ItemBatch]:
    """Record batches of the dumps named by ``-a dump=`` (else the latest ones), in order;
    ``-a limit=N`` counts the records of all of them."""
    locations = spider.dumps or await latest_dump_urls(spider)
    imported = 0
    for location in locations:
        remaining = None if spider.limit is None else spider.limit - imported
        if remaining is not None and remaining <= 0:
            return
        dump_import = DumpImport(spider, location, mappers, item_classes, limit=remaining)
        async for item in dump_import.items():
            yield item
        imported += sum(dump_import.records.values())
        if spider_closing(spider.crawler):
            return
