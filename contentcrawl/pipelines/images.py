"""Images pipeline: posters, covers, logos and photos to IMAGES_STORE, off unless IMAGES_ENABLED."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.images import ImagesPipeline

from contentcrawl.items import ContentItem, records_of
from contentcrawl.redaction import redact_text

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.pipelines.media import MediaPipeline

logger = logging.getLogger(__name__)

# Request meta key: the record folder a download belongs to (a batch item has many).
IMAGE_FOLDER = "contentcrawl_image_folder"


class ContentImagesPipeline(ImagesPipeline):
    """Scrapy's ImagesPipeline with per-record paths and the source's image download slot.

    Files land at ``<collection>/<source id>/<sha1 of URL>.jpg`` under IMAGES_STORE, so a
    record's images sit together and a re-run finds them (IMAGES_EXPIRES days). Requests
    ride the ``<source>_images`` slot (``openlibrary_covers`` for Open Library). A failed
    download is counted in ``images/<collection>/failed`` and never drops the record.
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("IMAGES_ENABLED"):
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled ContentImagesPipeline: IMAGES_ENABLED is off")
            raise NotConfigured
        return super().from_crawler(crawler)

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        return [request for record in records_of(item) for request in self._requests_of(record)]

    def _requests_of(self, record: ContentItem) -> list[Request]:
        meta = {"download_slot": image_slot(record.source), IMAGE_FOLDER: record_folder(record)}
        return [Request(url, callback=NO_CALLBACK, meta=meta) for url in self._urls_of(record)]

    def _urls_of(self, record: ContentItem) -> list[str]:
        return getattr(record, self.images_urls_field, None) or []

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
        for ok, result in results:
            if ok:
                stats.inc_value(f"images/{record.collection}/downloaded")
            else:
                stats.inc_value(f"images/{record.collection}/failed")
                logger.warning(
                    "Image for %s %r failed: %s",
                    record.collection,
                    getattr(record, record.key_field, None),
                    redact_text(str(result.value)),
                )
        if hasattr(record, self.images_result_field):
            setattr(record, self.images_result_field, [result for ok, result in results if ok])


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
