"""Images pipeline: posters, covers, logos and photos to IMAGES_STORE, off unless IMAGES_ENABLED.

Images never hold a record back. A record's downloads share one deadline,
``IMAGES_TIMEOUT`` seconds after the record reached the pipeline: a download still waiting
for its slot then fails unsent, one on the wire times out (``contentcrawl.middlewares.pacing``),
and the record goes on to the store with the images it got. A failed image is not retried
within the crawl (a dead host would only fail again); each image host has a download slot
of its own, whose pauses are capped (``backoff_max`` in ``DOWNLOAD_SLOTS``) and hold no
other slot.

A record stored without all its images is counted in ``images/<collection>/missing`` and
noted in the store's sync state (``images_missing/<spider>``). The next crawl of the same
spider with images enabled fetches those first, before its own requests, and rewrites
each record that got them all (``images/<collection>/recovered``); a record it still
cannot complete stays noted. That replay stops at the first batch that gets no image at
all (the host is still down), leaving the rest for the crawl after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import Counter, defaultdict
from time import monotonic
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.images import ImagesPipeline
from twisted.python.failure import Failure

from contentcrawl.batches import records_of
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.items import ITEM_CLASSES, ContentItem
from contentcrawl.pacing import DOWNLOAD_DEADLINE, host_slot
from contentcrawl.records import to_record
from contentcrawl.redaction import redact_text
from contentcrawl.store.base import META

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.pipelines.media import MediaPipeline

    from contentcrawl.store import Record, Store

logger = logging.getLogger(__name__)

# Request meta key: the record folder a download belongs to (a batch item has many).
IMAGE_FOLDER = "contentcrawl_image_folder"
# Records whose missing images one replay step fetches at once.
REPLAY_BATCH = 100
ITEM_CLASS_OF = {item_class.collection: item_class for item_class in ITEM_CLASSES}


class ImageUnavailable(IgnoreRequest):
    """An image that could not be fetched: the record goes on without it."""


class ContentImagesPipeline(ImagesPipeline):
    """Scrapy's ImagesPipeline with per-record paths, a download slot per image host and a
    deadline per record (see the module).

    Files land at ``<collection>/<source id>/<sha1 of URL>.jpg`` under IMAGES_STORE, so a
    record's images sit together and a re-run finds them (IMAGES_EXPIRES days). Requests
    ride the ``<source>_images@<host>`` slot (``openlibrary_covers@<host>`` for Open
    Library), with the settings of ``<source>_images``. A failed download is counted in
    ``images/<collection>/failed`` and never drops the record.
    """

    # Set by from_crawler.
    timeout: float
    # (collection, key) -> URLs of the record's images this crawl did not get.
    missing: dict[tuple[str, Any], list[str]]
    # (collection, key) of every record this crawl fetched images for (or found gone).
    seen: set[tuple[str, Any]]

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("IMAGES_ENABLED"):
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled ContentImagesPipeline: IMAGES_ENABLED is off")
            raise NotConfigured
        pipeline = super().from_crawler(crawler)
        pipeline.timeout = crawler.settings.getfloat("IMAGES_TIMEOUT")
        if pipeline.timeout <= 0:
            raise ValueError(f"IMAGES_TIMEOUT must be above 0, not {pipeline.timeout!r}")
        pipeline.missing = {}
        pipeline.seen = set()
        crawler.signals.connect(pipeline.replay_missing, signal=signals.spider_opened)
        return pipeline

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        deadline = monotonic() + self.timeout
        return [
            request
            for record in records_of(item)
            for request in self._requests_of(record, deadline)
        ]

    def _requests_of(self, record: ContentItem, deadline: float) -> list[Request]:
        return [
            Request(
                url,
                callback=NO_CALLBACK,
                meta={
                    "download_slot": host_slot(image_slot(record.source), urlsplit(url).netloc),
                    IMAGE_FOLDER: record_folder(record),
                    DOWNLOAD_DEADLINE: deadline,
                    "download_timeout": self.timeout,
                    # The next crawl fetches it again: within this one a dead host only
                    # fails again, and a retry would outlive the record's deadline.
                    "dont_retry": True,
                },
            )
            for url in self._urls_of(record)
        ]

    def _urls_of(self, record: ContentItem) -> list[str]:
        return getattr(record, self.images_urls_field, None) or []

    def media_failed(
        self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo
    ) -> NoReturn:
        # Stock MediaPipeline logs every failed download as an ERROR, which would mark the
        # whole crawl failed (and keep its sync point back) for a missing poster. As an
        # IgnoreRequest it is logged at DEBUG; _record_completed logs and counts it.
        reason = f"{type(failure.value).__name__}: {failure.value}"
        super().media_failed(Failure(ImageUnavailable(reason)), request, info)

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        digest = hashlib.sha1(request.url.encode()).hexdigest()  # noqa: S324 - a file name
        folder = request.meta.get(IMAGE_FOLDER)
        if folder is None and isinstance(item, ContentItem):
            folder = record_folder(item)
        return f"{folder or 'other'}/{digest}.jpg"

    def item_completed(self, results: list[Any], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        # Results come in the order of get_media_requests: each record's URLs in turn.
        position = 0
        for record in records_of(item):
            count = len(self._urls_of(record))
            self._record_completed(record, results[position : position + count])
            position += count
        return item

    def _record_completed(self, record: ContentItem, results: list[Any]) -> None:
        stats = self.crawler.stats
        key = getattr(record, record.key_field, None)
        missing = []
        for url, (ok, result) in zip(self._urls_of(record), results, strict=True):
            if ok:
                stats.inc_value(f"images/{record.collection}/downloaded")
                continue
            missing.append(url)
            stats.inc_value(f"images/{record.collection}/failed")
            logger.warning(
                "Image for %s %r failed: %s",
                record.collection,
                key,
                redact_text(str(result.value)) or type(result.value).__name__,
            )
        self.seen.add((record.collection, key))
        if missing:
            stats.inc_value(f"images/{record.collection}/missing")
            self.missing[(record.collection, key)] = missing
        else:
            self.missing.pop((record.collection, key), None)
        if hasattr(record, self.images_result_field):
            setattr(record, self.images_result_field, [result for ok, result in results if ok])

    # -- images earlier crawls missed ------------------------------------------------------
    def _ledger_name(self) -> str:
        spider = self.crawler.spider
        assert spider is not None  # read from spider_opened on, while the spider is open
        return f"images_missing/{spider.name}"

    async def replay_missing(self) -> None:
        """Fetch the images earlier crawls of this spider missed; rewrite completed records."""
        name = self._ledger_name()
        noted = await crawl_store(self.crawler).run(lambda store: store.get_state(name))
        entries = (noted or {}).get("records") or []
        if entries:
            logger.info("Fetching the images of %d records earlier crawls missed", len(entries))
        for start in range(0, len(entries), REPLAY_BATCH):
            if not await self._replay_batch(entries[start : start + REPLAY_BATCH]):
                logger.info("Image hosts still fail: the rest waits for the next crawl")
                break

    async def _replay_batch(self, entries: list[dict[str, Any]]) -> bool:
        """Fetch one batch's images, rewrite the records that got them all; False if none did."""
        for entry in entries:
            # Gone from the store, or completed below: either way no longer missing.
            self.seen.add((entry["collection"], entry["key"]))
        records = await crawl_store(self.crawler).run(stored_records, entries)
        await asyncio.gather(*(self.process_item(record) for record in records))
        recovered = [
            record
            for record in records
            if (record.collection, getattr(record, record.key_field)) not in self.missing
        ]
        rewritten = await crawl_store(self.crawler).run(rewrite, recovered)
        for collection, count in rewritten.items():
            self.crawler.stats.inc_value(f"images/{collection}/recovered", count)
        return bool(recovered)

    async def close_spider(self) -> None:
        """Note the records still missing images for the next crawl of this spider."""

        def save(store: Store) -> None:
            noted = store.get_state(self._ledger_name()) or {}
            kept = [
                entry
                for entry in noted.get("records") or []
                if (entry["collection"], entry["key"]) not in self.seen
            ]
            kept += [
                {"collection": collection, "key": key, "urls": urls}
                for (collection, key), urls in self.missing.items()
            ]
            if kept or noted:
                store.set_state(self._ledger_name(), {"records": kept})

        await crawl_store(self.crawler).run(save)


def stored_records(store: Store, entries: list[dict[str, Any]]) -> list[ContentItem]:
    """The stored records the ledger ``entries`` name, as items (those still stored)."""
    records = []
    for entry in entries:
        item_class = ITEM_CLASS_OF.get(entry["collection"])
        if item_class is None:
            continue
        doc = store.get(entry["collection"], entry["key"])
        if doc is None:
            continue
        meta = doc.get(META) or {}
        names = {field.name for field in dataclasses.fields(item_class)}
        content = {name: value for name, value in doc.items() if name in names}
        content.update(revision=meta.get("revision"), fetched_at=meta.get("fetched_at"))
        records.append(item_class(**content))
    return records


def rewrite(store: Store, records: list[ContentItem]) -> Counter[str]:
    """Store ``records`` again (with their images now); how many per collection (blocking)."""
    by_collection: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_collection[record.collection].append(to_record(record))
    for collection, same in by_collection.items():
        store.upsert_many(collection, same)
    return Counter({collection: len(same) for collection, same in by_collection.items()})


def record_folder(record: ContentItem) -> str:
    """``<collection>/<source id>``: where a record's images go under IMAGES_STORE.

    An Open Library key gives its last part (``/books/OL1M`` → ``books/OL1M``): the
    collection already says the rest.
    """
    key = str(getattr(record, record.key_field, None)).strip("/").rsplit("/", 1)[-1]
    return f"{record.collection}/{key}"


def image_slot(source: str) -> str:
    """The download slot of a source's images (its CDN has its own limits)."""
    return "openlibrary_covers" if source == "openlibrary" else f"{source}_images"
