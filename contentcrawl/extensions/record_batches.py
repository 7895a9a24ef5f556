"""Scrapy's per-item extensions, made to see the records an item carries.

A dump import sends its records through the pipelines 1,000 at a time, one ``ItemBatch``
item each, and a ``DeletionMark`` carries no record at all (``contentcrawl/items.py``).
Scrapy's own counts, feed exports and ``CLOSESPIDER_ITEMCOUNT`` work per item; each class
here makes one of them work per record, so a dump spider behaves like any other spider to
whoever runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.extensions.closespider import CloseSpider
from scrapy.extensions.feedexport import FeedExporter

from contentcrawl.batches import DeletionMark, ItemBatch, record_count

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler


class RecordCounts:
    """Makes ``item_scraped_count`` count records: the others of each scraped ``ItemBatch``
    are added, a ``DeletionMark`` takes its count back.

    Scrapy's core stats count one per item; a batch of 1,000 records would count 1, and the
    progress lines, run records and monitors that read the stat would be off by that much.
    A batch emptied by validation takes its own count back too.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        crawler.signals.connect(self.item_scraped, signal=signals.item_scraped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def item_scraped(self, item: Any) -> None:
        count = record_count(item)
        if count != 1:
            self.crawler.stats.inc_value("item_scraped_count", count - 1)


class RecordFeedExporter(FeedExporter):
    """Feed exports (``-o``/``-O``, ``FEEDS``) with one exported item per record.

    Each record of a batch goes through the feed as a scraped item would, so every format
    writes records, ``item_classes`` filters on the record's class and
    ``batch_item_count`` counts records. A deletion mark is not exported.
    """

    def item_scraped(self, item: Any, spider: Spider) -> None:
        if isinstance(item, ItemBatch):
            for record in item.items:
                super().item_scraped(record, spider)
        elif not isinstance(item, DeletionMark):
            super().item_scraped(item, spider)


class RecordCloseSpider(CloseSpider):
    """``CLOSESPIDER_ITEMCOUNT`` counted in records.

    The crawl closes once the count reaches the setting; as with Scrapy's own count, what
    is already in the pipelines is still stored, so a batch can carry it past the setting
    (``-a limit=N`` stops at exactly N).
    """

    def item_scraped(self, item: Any, spider: Spider) -> None:
        before = self.counter["itemcount"]
        self.counter["itemcount"] += record_count(item)
        self.counter["pagecount_since_last_item"] = 0
        limit = self.close_on["itemcount"]
        if limit and before < limit <= self.counter["itemcount"]:
            self._close_spider("closespider_itemcount")
