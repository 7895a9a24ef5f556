"""Open Library: monthly dumps of editions, works and authors, streamed into items.

A dump line is ``type \\t key \\t revision \\t last_modified \\t JSON``. The base spider
downloads (or opens) the dump, reads it in batches on a worker thread, maps each line with
a pure mapper below and yields each batch from ``start()`` as one ``ItemBatch``; no request
goes through Scrapy's downloader, whose buffered bodies cannot hold a 9 GB file. Keys stay
in Open Library's own form (``/books/OL1M``, ``/works/OL1W``, ``/authors/OL1A``) so they
join across kinds.

To add a dump kind: subclass ``OpenLibraryDumpSpider``, set ``dump_kind`` and
``record_type``, implement ``map_record``; override ``prepare``/``enrich`` to look things
up in the store per batch (as the books spider does for author names, with ``uses_store``).
What was imported (dump, validators, counts) is staged with the ``SyncState`` extension as
``<spider name>/dump`` and saved when the run finishes cleanly.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request, signals
from scrapy.exceptions import CloseSpider

from contentcrawl.dates import normalise_date
from contentcrawl.dumps import (
    BATCH_LINES,
    DownloadError,
    DownloadResult,
    DumpFile,
    DumpReadError,
    ItemFlow,
    Progress,
    fetch_dump,
    fewer_gc_passes,
    import_failed,
    is_url,
    reading_ahead,
)
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import AuthorItem, BookItem, ContentItem, ItemBatch, Json, WorkItem
from contentcrawl.redaction import redact_url
from contentcrawl.sources.base import TEXT, Argument, ContentSpider
from contentcrawl.store import Store, build_store
from contentcrawl.store.base import utc_now

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


# --- pure helpers and mappers -------------------------------------------------------------


def text_value(value: Any) -> str | None:
    """A text field that is a string or ``{"type": "/type/text", "value": ...}`` (QUIRKS)."""
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) else None


def str_list(value: Any) -> list[str]:
    """The strings of a list field (anything else in it is ignored)."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, str)]


def unique(values: Iterable[str]) -> list[str]:
    """``values`` without repeats, first occurrence kept (editions list an author twice)."""
    return list(dict.fromkeys(values))


def ref_keys(value: Any) -> list[str]:
    """Keys of a reference list ``[{"key": "/authors/OL1A"}, ...]``, repeats removed."""
    if not isinstance(value, list):
        return []
    keys = (entry.get("key") for entry in value if isinstance(entry, dict))
    return unique(key for key in keys if isinstance(key, str) and key)


def work_author_keys(value: Any) -> list[str]:
    """Author keys of a work: ``[{"author": {"key": ...} | "/authors/...", "type": ...}]``."""
    if not isinstance(value, list):
        return []
    keys: list[str] = []
    for entry in value:
        author = entry.get("author") if isinstance(entry, dict) else None
        if isinstance(author, dict):
            author = author.get("key")
        if isinstance(author, str) and author:
            keys.append(author)
    return unique(keys)


def positive_ids(value: Any) -> list[int]:
    """Cover/photo ids, without the ``-1`` placeholders the dumps carry (QUIRKS)."""
    if not isinstance(value, list):
        return []
    return [
        entry
        for entry in value
        if isinstance(entry, int) and not isinstance(entry, bool) and entry > 0
    ]


def image_url(base: str, image_id: int) -> str:
    """Large image URL on the covers server: ``{base}/id/{id}-L.jpg``."""
    return f"{base.rstrip('/')}/id/{image_id}-L.jpg"


def clean_isbn(value: str) -> str:
    """An ISBN without hyphens or spaces, check digit ``x`` upper-cased."""
    return value.replace("-", "").replace(" ", "").upper()


def as_int(value: Any) -> int | None:
    """An integer field, or None when it is missing or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    # isdecimal, not isdigit: int() rejects digits such as "²" that isdigit accepts.
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    return None


def full_title(doc: Json) -> str | None:
    """The title with its ``title_prefix`` ("The ", "La ", "L'") put back in front."""
    title = text_value(doc.get("title"))
    prefix = text_value(doc.get("title_prefix"))
    if not prefix or not title:
        return title
    if prefix[-1].isspace() or prefix.endswith("'"):
        return prefix + title
    return f"{prefix} {title}"


def best_date(raw: str | None) -> str | None:
    """ISO form of a free-text date; the raw text when unreadable (validation counts it)."""
    try:
        return normalise_date(raw)
    except ValueError:
        return raw


def edition_identifiers(doc: Json) -> Json:
    """``identifiers`` plus the ids editions keep at top level (OCLC, LCCN, Internet Archive)."""
    identifiers = doc.get("identifiers")
    merged: Json = dict(identifiers) if isinstance(identifiers, dict) else {}
    oclc = str_list(doc.get("oclc_numbers"))
    # Older editions spell it "oclc_number" (seen in the editions dump); both are kept.
    legacy_oclc = doc.get("oclc_number")
    if legacy_oclc:
        oclc = unique([*oclc, *str_list(legacy_oclc)])
    if oclc:
        merged.setdefault("oclc", oclc)
    lccn = str_list(doc.get("lccn"))
    if lccn:
        merged.setdefault("lccn", lccn)
    ocaid = doc.get("ocaid")
    if isinstance(ocaid, str) and ocaid:
        merged.setdefault("ocaid", [ocaid])
    return merged


def links_of(value: Any) -> list[Json]:
    """``[{"title", "url"}]`` of a links field (the ``type`` reference is dropped)."""
    if not isinstance(value, list):
        return []
    return [
        {"title": entry.get("title"), "url": entry["url"]}
        for entry in value
        if isinstance(entry, dict) and isinstance(entry.get("url"), str)
    ]


def edition_links(doc: Json) -> list[Json]:
    """An edition's links: ``links`` plus the older ``uris`` (titled by the parallel
    ``uri_descriptions``) and ``url`` lists, each URL once."""
    links = links_of(doc.get("links"))
    uris = str_list(doc.get("uris"))
    descriptions = doc.get("uri_descriptions")
    titles = descriptions if isinstance(descriptions, list) else []
    for index, uri in enumerate(uris):
        title = titles[index] if index < len(titles) else None
        links.append({"title": title if isinstance(title, str) else None, "url": uri})
    links.extend({"title": None, "url": url} for url in str_list(doc.get("url")))
    by_url: dict[str, Json] = {}
    for link in links:
        by_url.setdefault(link["url"], link)
    return list(by_url.values())


def contributors_of(doc: Json) -> list[Json]:
    """``[{"role", "name"}]`` from ``contributors`` and the older free-text ``contributions``
    ("Translated by X"), in that order."""
    found: list[Json] = []
    entries = doc.get("contributors")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            role = entry.get("role")
            found.append({"role": role if isinstance(role, str) else None, "name": entry["name"]})
    found.extend({"role": None, "name": name} for name in str_list(doc.get("contributions")))
    return found


def toc_entries(value: Any) -> list[Json]:
    """A table of contents as ``[{"level", "label", "title", "pagenum"}]``: entries are
    objects, or plain strings in older records."""
    if not isinstance(value, list):
        return []
    entries: list[Json] = []
    for entry in value:
        if isinstance(entry, str):
            entries.append({"level": 0, "label": None, "title": entry, "pagenum": None})
        elif isinstance(entry, dict):
            entries.append(
                {
                    "level": as_int(entry.get("level")) or 0,
                    "label": text_value(entry.get("label")),
                    "title": text_value(entry.get("title")),
                    "pagenum": text_value(entry.get("pagenum")),
                }
            )
    return entries


def object_of(value: Any) -> Json:
    """A copy of an object field; {} when it is absent or not an object."""
    return dict(value) if isinstance(value, dict) else {}


def key_names(value: Any) -> list[str]:
    """Last parts of a reference list's keys (``[{"key": "/languages/eng"}]`` → ``eng``)."""
    return [key.rsplit("/", 1)[-1] for key in ref_keys(value)]


def one_text(value: Any) -> str | None:
    """A text field some records hold as a one-string list (``translation_of``)."""
    if isinstance(value, list):
        texts = str_list(value)
        return "; ".join(texts) if texts else None
    return text_value(value)


def book_from_edition(doc: Json, *, covers_url: str, revision: int | None = None) -> BookItem:
    """A ``BookItem`` from an edition record (dump JSON column or ``/books/<id>.json``)."""
    cover_ids = positive_ids(doc.get("covers"))
    cover_urls = [image_url(covers_url, cover_id) for cover_id in cover_ids]
    raw_date = text_value(doc.get("publish_date"))
    works = ref_keys(doc.get("works"))
    return BookItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        title=full_title(doc),
        subtitle=text_value(doc.get("subtitle")),
        author_keys=ref_keys(doc.get("authors")),
        work_key=works[0] if works else None,
        publish_date_raw=raw_date,
        publish_date=best_date(raw_date),
        copyright_date=text_value(doc.get("copyright_date")),
        edition_name=text_value(doc.get("edition_name")),
        by_statement=text_value(doc.get("by_statement")),
        description=text_value(doc.get("description")),
        notes=text_value(doc.get("notes")),
        first_sentence=text_value(doc.get("first_sentence")),
        physical_format=text_value(doc.get("physical_format")),
        physical_dimensions=text_value(doc.get("physical_dimensions")),
        weight=text_value(doc.get("weight")),
        pagination=text_value(doc.get("pagination")),
        publishers=str_list(doc.get("publishers")),
        publish_places=str_list(doc.get("publish_places")),
        publish_country=text_value(doc.get("publish_country")),
        series=str_list(doc.get("series")),
        contributors=contributors_of(doc),
        other_titles=str_list(doc.get("other_titles")),
        # "work_title" is the older, single-valued spelling (seen in the editions dump).
        work_titles=unique([*str_list(doc.get("work_titles")), *str_list(doc.get("work_title"))]),
        translation_of=one_text(doc.get("translation_of")),
        translated_from=key_names(doc.get("translated_from")),
        table_of_contents=toc_entries(doc.get("table_of_contents")),
        isbn_10=unique(clean_isbn(isbn) for isbn in str_list(doc.get("isbn_10"))),
        isbn_13=unique(clean_isbn(isbn) for isbn in str_list(doc.get("isbn_13"))),
        number_of_pages=as_int(doc.get("number_of_pages")),
        languages=key_names(doc.get("languages")),
        subjects=str_list(doc.get("subjects")),
        # Editions spell these both ways ("subject_place" and "subject_places").
        subject_places=unique(
            [*str_list(doc.get("subject_places")), *str_list(doc.get("subject_place"))]
        ),
        subject_people=str_list(doc.get("subject_people")),
        subject_times=unique(
            [*str_list(doc.get("subject_times")), *str_list(doc.get("subject_time"))]
        ),
        genres=str_list(doc.get("genres")),
        lc_classifications=str_list(doc.get("lc_classifications")),
        dewey_decimal_class=str_list(doc.get("dewey_decimal_class")),
        classifications=object_of(doc.get("classifications")),
        identifiers=edition_identifiers(doc),
        links=edition_links(doc),
        cover_ids=cover_ids,
        cover_urls=cover_urls,
        image_urls=list(cover_urls),
    )


def work_from_doc(doc: Json, *, covers_url: str, revision: int | None = None) -> WorkItem:
    """A ``WorkItem`` from a work record (dump JSON column or ``/works/<id>.json``)."""
    cover_ids = positive_ids(doc.get("covers"))
    cover_urls = [image_url(covers_url, cover_id) for cover_id in cover_ids]
    return WorkItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        title=full_title(doc),
        subtitle=text_value(doc.get("subtitle")),
        author_keys=work_author_keys(doc.get("authors")),
        description=text_value(doc.get("description")),
        first_sentence=text_value(doc.get("first_sentence")),
        first_publish_date=text_value(doc.get("first_publish_date")),
        lc_classifications=str_list(doc.get("lc_classifications")),
        dewey_number=str_list(doc.get("dewey_number")),
        subjects=str_list(doc.get("subjects")),
        subject_places=str_list(doc.get("subject_places")),
        subject_people=str_list(doc.get("subject_people")),
        subject_times=str_list(doc.get("subject_times")),
        links=links_of(doc.get("links")),
        cover_ids=cover_ids,
        cover_urls=cover_urls,
        image_urls=list(cover_urls),
    )


def author_from_doc(doc: Json, *, photos_url: str, revision: int | None = None) -> AuthorItem:
    """An ``AuthorItem`` from an author record (dump JSON column or ``/authors/<id>.json``)."""
    photo_ids = positive_ids(doc.get("photos"))
    photo_urls = [image_url(photos_url, photo_id) for photo_id in photo_ids]
    return AuthorItem(
        ol_key=doc["key"],
        revision=revision if revision is not None else as_int(doc.get("revision")),
        name=text_value(doc.get("name")),
        personal_name=text_value(doc.get("personal_name")),
        fuller_name=text_value(doc.get("fuller_name")),
        title=text_value(doc.get("title")),
        alternate_names=str_list(doc.get("alternate_names")),
        # Validation normalises each date and keeps the text in its "_raw" twin.
        birth_date=text_value(doc.get("birth_date")),
        death_date=text_value(doc.get("death_date")),
        date=text_value(doc.get("date")),
        bio=text_value(doc.get("bio")),
        wikipedia=text_value(doc.get("wikipedia")),
        links=links_of(doc.get("links")),
        remote_ids=object_of(doc.get("remote_ids")),
        photo_ids=photo_ids,
        photo_urls=photo_urls,
        image_urls=list(photo_urls),
    )


# --- dump lines ---------------------------------------------------------------------------


class BadLineError(ValueError):
    """A dump line that cannot become a record; ``reason`` names its stat."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class DumpLine:
    """One parsed dump line."""

    type: str
    key: str
    revision: int
    last_modified: str
    doc: Json


def parse_line(line: bytes, wanted_type: str | None = None) -> DumpLine | str:
    """The parsed line, or its type (a str) when it is not ``wanted_type``; ``BadLineError``.

    The type is checked before the JSON is parsed, so skipping other kinds costs little.
    The key column wins over a missing ``key`` in the JSON.
    """
    columns = line.split(b"\t", 4)
    if len(columns) != 5:
        raise BadLineError("columns", f"{len(columns)} tab-separated columns, expected 5")
    type_, key = columns[0].decode("utf-8", "replace"), columns[1].decode("utf-8", "replace")
    if wanted_type is not None and type_ != wanted_type:
        return type_
    if not key.startswith("/"):
        raise BadLineError("key", f"no record key in the key column ({key!r})")
    try:
        revision = int(columns[2])
    except ValueError:
        raise BadLineError("revision", f"revision {columns[2][:40]!r} is not a number") from None
    try:
        doc = json.loads(columns[4])
    except (ValueError, RecursionError) as error:
        # RecursionError: nesting deeper than the json module can follow.
        raise BadLineError("json", str(error)) from None
    if not isinstance(doc, dict):
        raise BadLineError("json", f"JSON column is a {type(doc).__name__}, not an object")
    doc.setdefault("key", key)
    return DumpLine(type_, key, revision, columns[3].decode("utf-8", "replace"), doc)


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


class OpenLibraryDumpSpider(ContentSpider):
    """Imports one Open Library dump kind; ``-a dump=PATH_OR_URL`` and ``-a limit=N``.

    Without ``dump`` the latest dump of the kind under ``OPENLIBRARY_DUMPS_URL`` is used.
    Bad lines are counted (``openlibrary/bad_lines[/<reason>]``), logged with their line
    number and skipped; a progress line is logged every ``PROGRESS_INTERVAL`` seconds.
    """

    slot = "openlibrary_dumps"
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
        self.source: AsyncGenerator[ItemBatch, None] | None = None
        # Set when the import has ended, closed or not, its dump and store connection too.
        self.import_ended = asyncio.Event()

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
        spider.progress_interval = settings.getfloat("PROGRESS_INTERVAL", 30.0)
        spider.flow = ItemFlow(crawler, settings.getint("DUMP_MAX_PENDING_ITEMS", 4))
        crawler.signals.connect(spider.end_import, signal=signals.spider_closed)
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
        self.source = self._import()
        return self.source

    async def end_import(self) -> None:
        """At spider close, end an import the engine no longer reads: before the crawl
        returns, the batch being read ahead is finished and the dump and the store
        connection are closed.

        Scrapy 2.19 stops pulling ``start()`` once the spider is closing and never closes
        it: left to the garbage collector, it closed the dump under the read-ahead thread
        ("I/O operation on closed file") and kept the store file open.
        """
        source = self.source
        if source is None:
            return
        if source.ag_running:
            # The engine is in a step of it: the reader sees the closing spider and ends.
            await self.import_ended.wait()
        else:
            await source.aclose()

    def distributed_key(self, request_or_item: Any) -> str | None:
        """None: records come from the dump itself, there is no request to fetch again.

        A worker that dies mid-import loses its lock; the worker taking over reads the dump
        again from the start, and what was stored already costs no write.
        """
        return None

    def distributed_request(self, key: str) -> Request:
        raise ValueError(f"{self.name} imports a dump and has no request for {key!r}")

    async def _import(self) -> AsyncGenerator[ItemBatch, None]:
        try:
            async with aclosing(self._import_dump()) as batches:
                async for batch in batches:
                    yield batch
        finally:
            self.import_ended.set()

    async def _import_dump(self) -> AsyncGenerator[ItemBatch, None]:
        shown = self.shown_location
        try:
            self.download = await fetch_dump(self.crawler, self.location)
        except DownloadError as error:
            self.logger.error("%s: cannot download the dump: %s", self.name, error)
            raise CloseSpider("dump_download_failed") from None
        except FileNotFoundError as error:
            self.logger.error("%s: %s", self.name, error)
            raise CloseSpider("dump_not_found") from None
        store = build_store(self.settings) if self.uses_store else None
        try:
            if store is not None:
                await asyncio.to_thread(store.open)
                await asyncio.to_thread(self.prepare, store)
            # aclosing: closing this import closes the reader (and waits for its read-ahead)
            # before the dump file is closed under it.
            with fewer_gc_passes(), DumpFile(self.download.path) as dump:
                async with aclosing(self._read(dump)) as batches:
                    async for batch in batches:
                        yield batch
            await self.flow.drained()
        finally:
            if store is not None:
                await asyncio.to_thread(store.close)
        sync = self.crawler.get_extension(SyncState)
        if sync is not None:
            # Saved by SyncState only if the run finishes cleanly (every batch stored).
            sync.stage(f"{self.name}/dump", self._state(shown))

    async def _read(self, dump: DumpFile) -> Any:
        """Items of the dump, read batch by batch; the next batch is read while these flow."""
        progress = Progress(self.name, dump.size, self.progress_interval, log=self.logger)
        lines = dump.lines()
        last: Batch | None = None
        async with reading_ahead(
            lambda budget: self._read_batch(dump, lines, budget), self.limit
        ) as batches:
            async for batch in batches:
                if not self.flow.open():
                    # Read but not sent (nor counted): the spider is closing.
                    break
                last = batch
                self._count(last)
                if last.items:
                    self.records += len(last.items)
                    self.crawler.stats.inc_value("openlibrary/records", len(last.items))
                    yield ItemBatch(last.items)
                    if not await self.flow.sent():
                        break
                progress.update(last.position, self.records)
        self.complete = last is not None and last.end and last.stream_error is None
        if import_failed(self.crawler, "openlibrary", self.dump_file, self.lines, self.bad_lines):
            self.complete = False

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

    def _count(self, batch: Batch) -> None:
        stats = self.crawler.stats
        self.lines += batch.lines
        stats.inc_value("openlibrary/lines", batch.lines)
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

    @property
    def dump_file(self) -> str:
        """The local dump file (or, before it is known, the location asked for)."""
        if self.download is not None:
            return str(self.download.path)
        return self.shown_location

    def _state(self, shown: str) -> Json:
        download = self.download
        assert download is not None
        return {
            "dump": shown,
            "file": str(download.path),
            "size": download.size,
            "etag": download.etag,
            "last_modified": download.last_modified,
            "download": download.outcome,
            "lines": self.lines,
            "records": self.records,
            "bad_lines": self.bad_lines,
            "complete": self.complete,
            "finished_at": utc_now(),
        }

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
