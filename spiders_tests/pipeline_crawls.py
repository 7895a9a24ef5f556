"""What the pipeline tests share: a spider that yields the items it is given, movies to give
it, and one item through the validation pipeline on its own."""

from __future__ import annotations

from typing import Any

from scrapy import Spider
from scrapy.statscollectors import StatsCollector
from scrapy.utils.test import get_crawler

from contentcrawl.items import MovieItem
from contentcrawl.pipelines.validation import ValidationPipeline
from contentcrawl.sources.base import ContentSpider


class ItemsSpider(ContentSpider):
    """Yields the items it is given: the pipelines are what is under test."""

    name = "test_items"
    slot = "test"

    def __init__(self, items: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items = items

    async def start(self):  # type: ignore[override]
        for item in self.items:
            yield item


def movies(count: int, **fields: Any) -> list[MovieItem]:
    """Movies 1 to ``count``, titled ``Movie <id>``, each with ``fields``."""
    return [MovieItem(tmdb_id=i, title=f"Movie {i}", **fields) for i in range(1, count + 1)]


def validated(item: Any) -> tuple[Any, StatsCollector]:
    """``item`` after the validation pipeline of a test crawler, and that crawler's stats."""
    crawler = get_crawler(Spider)
    ValidationPipeline.from_crawler(crawler).process_item(item)
    return item, crawler.stats
