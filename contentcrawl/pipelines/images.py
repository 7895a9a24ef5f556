"""Images pipeline: posters, covers, logos and photos to IMAGES_STORE, off unless IMAGES_ENABLED."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.images import ImagesPipeline

from contentcrawl.items import ContentItem
from contentcrawl.redaction import redact_text

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.pipelines.media import MediaPipeline

logger = logging.getLogger(__name__)


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
            raise NotConfigured("IMAGES_ENABLED is off")
        return super().from_crawler(crawler)

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        if not isinstance(item, ContentItem):
            return []
        urls = ItemAdapter(item).get(self.images_urls_field) or []
        slot = image_slot(item.source)
        return [Request(url, callback=NO_CALLBACK, meta={"download_slot": slot}) for url in urls]

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        digest = hashlib.sha1(request.url.encode()).hexdigest()  # noqa: S324 - a file name
        if isinstance(item, ContentItem):
            key = str(ItemAdapter(item).get(item.key_field)).strip("/").replace("/", "_")
            return f"{item.collection}/{key}/{digest}.jpg"
        return f"other/{digest}.jpg"

    def item_completed(self, results: list[Any], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        collection = getattr(item, "collection", "other")
        for ok, result in results:
            if ok:
                self.crawler.stats.inc_value(f"images/{collection}/downloaded")
            else:
                self.crawler.stats.inc_value(f"images/{collection}/failed")
                logger.warning(
                    "Image for %s %r failed: %s",
                    collection,
                    ItemAdapter(item).get(getattr(item, "key_field", "")),
                    redact_text(str(result.value)),
                )
        return super().item_completed(results, item, info)


def image_slot(source: str) -> str:
    """The download slot of a source's images (its CDN has its own limits)."""
    return "openlibrary_covers" if source == "openlibrary" else f"{source}_images"
