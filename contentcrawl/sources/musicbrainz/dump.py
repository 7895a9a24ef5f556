"""MusicBrainz JSON dumps: ``<entity>.tar.xz`` archives streamed line by line into items.

The dumps live under ``MUSICBRAINZ_DUMPS_URL``: the file ``LATEST`` names the newest
directory (``20240501-001001``), which holds ``artist.tar.xz``, ``release-group.tar.xz``
and the other entities. An archive holds small metadata files (``TIMESTAMP``,
``JSON_DUMPS_SCHEMA_NUMBER``, ``COPYING``…) and ``mbdump/<entity>``: one JSON document per
line, the entity JSON ws/2 answers a lookup with, every include present.

Nothing here holds a whole file: ``contentcrawl.dumps.fetch_dump`` downloads (resumably, and
not again when the server's copy is unchanged), ``DumpFile`` decompresses the xz layer as a
stream, ``tarfile`` reads the tar layer in streaming mode (``r|``) and the data member is
read a line at a time, in batches on a worker thread, while ``ItemFlow`` keeps the items
waiting for the pipelines few. A JSON-lines file (``mbdump/artist`` taken out of its
archive, ``artist.jsonl``, ``release-group.json.gz``) is read the same way, its entity
named by its file name.
"""

from __future__ import annotations

import json
import lzma
import re
import tarfile
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

from scrapy.exceptions import CloseSpider

from contentcrawl.dumps import (
    BATCH_LINES,
    DownloadError,
    DownloadResult,
    DumpFile,
    DumpReadError,
    Progress,
    fetch_dump,
    fewer_gc_passes,
    import_failed,
    is_url,
    reading_ahead,
    spider_closing,
)
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import ContentItem, ItemBatch, Json
from contentcrawl.redaction import redact_url
from contentcrawl.store.base import utc_now

if TYPE_CHECKING:
    import logging

    from scrapy import Request
    from scrapy.crawler import Crawler

    from contentcrawl.dumps import ItemFlow

DATA_PREFIX = "mbdump/"
# Members outside mbdump/ up to this size are kept as metadata (TIMESTAMP and friends).
METADATA_MAX_BYTES = 4096
_LATEST = re.compile(r"\d{8}-\d{6}")
_ARCHIVE_SUFFIXES = (".tar", ".tar.xz", ".tar.gz", ".tar.bz2")
_COMPRESSION_SUFFIXES = (".xz", ".gz", ".bz2")
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")

Mapper = Callable[[Mapping[str, Any]], ContentItem]


class DumpImportSpider(Protocol):
    """What a dump import uses of the spider it runs in (``MusicBrainzSpider`` has it all)."""

    name: str
    crawler: Crawler
    limit: int | None
    dumps: list[str]
    dumps_url: str
    dump_slot: str
    entities: list[str]
    progress_interval: float
    flow: ItemFlow

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def request(self, url: str, **kwargs: Any) -> Request: ...


class BadLineError(ValueError):
    """One dump line that cannot become a record; ``reason`` names its stat."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def is_archive(name: str) -> bool:
    """Whether a dump file name is a tar archive (``artist.tar.xz``) rather than JSON lines."""
    return name.lower().endswith(_ARCHIVE_SUFFIXES)


def plain_entity(name: str) -> str:
    """The entity a JSON-lines file holds, by name (``artist.jsonl.gz`` → ``artist``)."""
    stem = name.lower()
    for suffixes in (_COMPRESSION_SUFFIXES, _JSON_SUFFIXES):
        for suffix in suffixes:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
    return stem


def parse_entity_line(line: bytes) -> Json:
    """The JSON object of one dump line; ``BadLineError`` when it is not one with an ``id``."""
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as error:
        # RecursionError: nesting deeper than the json module can follow.
        raise BadLineError("json", str(error)) from None
    if not isinstance(doc, dict):
        raise BadLineError("json", f"a JSON {type(doc).__name__}, not an object")
    if not isinstance(doc.get("id"), str):
        raise BadLineError("fields", f"no id: {line[:120]!r}")
    return doc


class ArchiveLines:
    """``(entity, line number, line)`` of every ``mbdump/<entity>`` member of a tar stream.

    ``stream`` is the decompressed archive (``DumpFile.stream``); members are visited in
    archive order and never held whole: small members outside ``mbdump/`` land in
    ``metadata`` (name → text) as they pass. A truncated or corrupt archive raises
    ``DumpReadError`` naming the line after the last one read.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.metadata: dict[str, str] = {}
        self.members: list[str] = []
        self.line_number = 0

    def __iter__(self) -> Iterator[tuple[str, int, bytes]]:
        try:
            with tarfile.open(fileobj=self.stream, mode="r|") as archive:
                for member in archive:
                    yield from self._member(archive, member)
        except EOFError as error:
            raise DumpReadError(self.line_number + 1, "truncated", str(error)) from None
        except tarfile.ReadError as error:
            reason = "truncated" if "unexpected end" in str(error) else "corrupt"
            raise DumpReadError(self.line_number + 1, reason, str(error)) from None
        except (OSError, zlib.error, lzma.LZMAError, tarfile.TarError) as error:
            raise DumpReadError(self.line_number + 1, "corrupt", str(error)) from None

    def _member(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo
    ) -> Iterator[tuple[str, int, bytes]]:
        if not member.isfile():
            return
        name = member.name.removeprefix("./")
        self.members.append(name)
        handle = archive.extractfile(member)
        if handle is None:
            return
        if name.startswith(DATA_PREFIX):
            entity = name[len(DATA_PREFIX) :]
            self.line_number = 0
            for line in handle:
                self.line_number += 1
                yield entity, self.line_number, line.rstrip(b"\r\n")
            # A member shorter than its header says: tarfile pads it silently.
            if handle.tell() < member.size:
                raise EOFError(f"{name} ended at byte {handle.tell()} of {member.size}")
        elif member.size <= METADATA_MAX_BYTES:
            self.metadata[name] = handle.read().decode("utf-8", "replace").strip()


def plain_lines(dump: DumpFile, entity: str) -> Iterator[tuple[str, int, bytes]]:
    """``(entity, line number, line)`` of a JSON-lines dump file."""
    for number, line in dump.lines():
        yield entity, number, line


@dataclass
class Batch:
    """What one trip to the worker thread read."""

    items: list[ContentItem] = field(default_factory=list)
    lines: int = 0
    bad: list[tuple[str, int, str, str]] = field(default_factory=list)  # entity, line, why
    # The archive broke here (truncated or corrupt): nothing after it is readable.
    broken: tuple[str, int, str, str] | None = None
    skipped: Counter[str] = field(default_factory=Counter)  # entity → lines not imported
    records: Counter[str] = field(default_factory=Counter)  # entity → records
    position: int = 0
    end: bool = False


class DumpImport:
    """One dump file (a path or URL) imported in a spider's ``start()``; see ``items()``.

    ``limit``: records to read from it at most (None: all).
    """

    def __init__(
        self,
        spider: DumpImportSpider,
        location: str,
        mappers: Mapping[str, Mapper],
        limit: int | None = None,
    ) -> None:
        self.spider = spider
        self.limit = limit
        self.location = location
        self.mappers = mappers
        self.shown = redact_url(location) if is_url(location) else location
        self.download: DownloadResult | None = None
        self.metadata: dict[str, str] = {}
        self.lines = 0
        self.records: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.bad_lines = 0
        self.complete = False

    @property
    def file_name(self) -> str:
        """The dump's file name (``artist.tar.xz``), which names its sync state."""
        return self.download.path.name if self.download is not None else self.shown

    async def items(self) -> AsyncIterator[ItemBatch]:
        """The dump's records in batches; stages ``<spider>/dump/<file name>`` when read."""
        spider = self.spider
        try:
            self.download = await fetch_dump(spider.crawler, self.location)
        except DownloadError as error:
            spider.logger.error("%s: cannot download the dump: %s", spider.name, error)
            raise CloseSpider("dump_download_failed") from None
        except FileNotFoundError as error:
            spider.logger.error("%s: %s", spider.name, error)
            raise CloseSpider("dump_not_found") from None
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
            async for item in self._read(dump, lines):
                yield item
        self._finish()

    async def _read(
        self, dump: DumpFile, lines: Iterator[tuple[str, int, bytes]]
    ) -> AsyncIterator[ItemBatch]:
        """The dump's records, a batch at a time; the next batch is read while one flows."""
        spider = self.spider
        progress = Progress(
            f"{spider.name} {self.file_name}",
            dump.size,
            spider.progress_interval,
            log=spider.logger,
        )
        last: Batch | None = None
        async with reading_ahead(
            lambda budget: self._read_batch(dump, lines, budget), self.limit
        ) as batches:
            async for last in batches:
                self._count(last)
                if last.items:
                    yield ItemBatch(last.items)
                    if not await spider.flow.sent():
                        break
                progress.update(last.position, sum(self.records.values()))
        self.complete = last is not None and last.end and last.broken is None
        if import_failed(spider.crawler, "musicbrainz", self.file_name, self.lines, self.bad_lines):
            self.complete = False
        await spider.flow.drained()

    def _read_batch(
        self, dump: DumpFile, lines: Iterator[tuple[str, int, bytes]], budget: int
    ) -> Batch:
        batch = Batch()
        entity = ""
        try:
            for entity, number, line in lines:
                batch.lines += 1
                mapper = self.mappers.get(entity)
                if mapper is None:
                    batch.skipped[entity] += 1
                elif line.strip():
                    try:
                        batch.items.append(mapper(parse_entity_line(line)))
                        batch.records[entity] += 1
                    except BadLineError as bad:
                        batch.bad.append((entity, number, bad.reason, bad.detail))
                    except (KeyError, TypeError, ValueError, AttributeError) as error:
                        batch.bad.append((entity, number, "fields", repr(error)))
                if len(batch.items) >= budget or batch.lines >= BATCH_LINES:
                    break
            else:
                batch.end = True
        except DumpReadError as error:
            batch.broken = (entity or "?", error.line_number, error.reason, error.detail)
            batch.end = True
        batch.position = dump.position
        return batch

    def _count(self, batch: Batch) -> None:
        spider = self.spider
        stats = spider.crawler.stats
        self.lines += batch.lines
        stats.inc_value("musicbrainz/dump/lines", batch.lines)
        for entity, count in batch.records.items():
            self.records[entity] += count
            stats.inc_value(f"musicbrainz/dump/records/{entity}", count)
        for entity, count in batch.skipped.items():
            self.skipped[entity] += count
            stats.inc_value(f"musicbrainz/dump/skipped/{entity}", count)
        for entity, line_number, reason, detail in batch.bad:
            self.bad_lines += 1
            stats.inc_value("musicbrainz/dump/bad_lines")
            stats.inc_value(f"musicbrainz/dump/bad_lines/{reason}")
            spider.logger.warning(
                "%s %s line %d skipped (%s): %s",
                self.file_name,
                entity,
                line_number,
                reason,
                detail[:200],
            )
        if batch.broken is not None:
            entity, line_number, reason, detail = batch.broken
            self.bad_lines += 1
            stats.inc_value("musicbrainz/dump/bad_lines")
            stats.inc_value(f"musicbrainz/dump/bad_lines/{reason}")
            # Everything after the break is lost: an error (the sync state is not saved).
            spider.logger.error(
                "%s is %s: %s line %d and everything after it unreadable: %s",
                self.file_name,
                reason,
                entity,
                line_number,
                detail[:200],
            )

    def _finish(self) -> None:
        spider = self.spider
        records = sum(self.records.values())
        if self.complete and not self.records and not self.bad_lines:
            spider.logger.error(
                "%s: no %s data in %s (members: %s)",
                spider.name,
                " or ".join(f"{DATA_PREFIX}{entity}" for entity in self.mappers),
                self.file_name,
                ", ".join(self.metadata) or "none",
            )
        spider.logger.info(
            "%s: %s: %d records (%s) from %d lines, %d bad lines%s%s",
            spider.name,
            self.file_name,
            records,
            ", ".join(f"{count} {entity}" for entity, count in sorted(self.records.items())),
            self.lines,
            self.bad_lines,
            f", dump of {self.metadata['TIMESTAMP']}" if "TIMESTAMP" in self.metadata else "",
            "" if self.complete else ", not read to its end",
        )
        sync = spider.crawler.get_extension(SyncState)
        if sync is None or self.download is None:
            return
        download = self.download
        # Saved by SyncState only if the run finishes cleanly (every batch stored).
        sync.stage(
            f"{spider.name}/dump/{self.file_name}",
            {
                "dump": self.shown,
                "file": str(download.path),
                "size": download.size,
                "etag": download.etag,
                "last_modified": download.last_modified,
                "download": download.outcome,
                "timestamp": self.metadata.get("TIMESTAMP"),
                "schema": self.metadata.get("JSON_DUMPS_SCHEMA_NUMBER"),
                "lines": self.lines,
                "records": dict(self.records),
                "bad_lines": self.bad_lines,
                "complete": self.complete,
                "finished_at": utc_now(),
            },
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
    spider: DumpImportSpider, mappers: Mapping[str, Mapper]
) -> AsyncIterator[ItemBatch]:
    """Record batches of the dumps named by ``-a dump=`` (else the latest ones), in order;
    ``-a limit=N`` counts the records of all of them."""
    locations = spider.dumps or await latest_dump_urls(spider)
    imported = 0
    for location in locations:
        remaining = None if spider.limit is None else spider.limit - imported
        if remaining is not None and remaining <= 0:
            return
        dump_import = DumpImport(spider, location, mappers, limit=remaining)
        async for item in dump_import.items():
            yield item
        imported += sum(dump_import.records.values())
        if spider_closing(spider.crawler):
            return
