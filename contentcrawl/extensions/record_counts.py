"""Keeps ``item_scraped_count`` a count of records when items are record batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import signals

from contentcrawl.items import ItemBatch

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


class RecordCounts:
    """Adds the other records of each scraped ``ItemBatch`` to ``item_scraped_count``.

    Scrapy's core stats count one per item; a batch of 1,000 records would count 1, and the
    progress lines, run records and monitors that read the stat would be off by that much.
    A batch emptied by validation takes its own count back.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def item_scraped(self, item: Any) -> None:
        if isinstance(item, ItemBatch):
            self.crawler.stats.inc_value("item_scraped_count", len(item) - 1)
