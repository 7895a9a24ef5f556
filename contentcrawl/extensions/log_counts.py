"""``log_count/<LEVEL>`` per crawl when several crawls share one process (``scrapy syncall``).

Scrapy's ``LogCount`` puts one handler per crawler on the root logger, so each crawler
counts every record of the process: an error of the TMDB job would fail the IGDB job's
error monitor. ``LogCounts`` counts a record for its own crawl only. A record names its
crawl by the spider it is logged for (Scrapy's and ``spider.logger``'s records carry it)
or by the crawl that was running when it was logged (``counted_for``, a context variable
every task and callback of that crawl inherits). A record logged inside
``counted_for_no_crawl()`` is the process's own (syncall's line on a finished job) and
counted by none. A record that says neither (one from a worker thread) is counted by every
crawl, as Scrapy does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from scrapy import signals

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler

# The crawl a record is counted for: a Crawler, _NO_CRAWL, or None when unknown.
_running_crawl: ContextVar[object] = ContextVar("contentcrawl_running_crawl", default=None)
_NO_CRAWL = object()


@contextmanager
def counted_for(crawler: Crawler) -> Iterator[None]:
    """Start the crawl inside this block: the records its tasks log are counted for it."""
    token = _running_crawl.set(crawler)
    try:
        yield
    finally:
        _running_crawl.reset(token)


@contextmanager
def counted_for_no_crawl() -> Iterator[None]:
    """Log the process's own records inside this block: no crawl counts them (syncall's
    ERROR on a failed job must not fail the jobs still running)."""
    token = _running_crawl.set(_NO_CRAWL)
    try:
        yield
    finally:
        _running_crawl.reset(token)


class LogCounts:
    """Replaces ``scrapy.extensions.logcount.LogCount`` (see the module docstring)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.handler: _CrawlLogCounter | None = None
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def spider_opened(self, spider: Spider) -> None:
        level = self.crawler.settings.get("LOG_LEVEL")
        self.handler = _CrawlLogCounter(self.crawler, spider, level=level)
        logging.root.addHandler(self.handler)

    def spider_closed(self, spider: Spider) -> None:
        if self.handler is not None:
            logging.root.removeHandler(self.handler)
            self.handler = None


class _CrawlLogCounter(logging.Handler):
    def __init__(self, crawler: Crawler, spider: Spider, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crawler = crawler
        self.spider = spider

    def emit(self, record: logging.LogRecord) -> None:
        spider = getattr(record, "spider", None)
        if spider is not None:
            if spider is not self.spider:
                return
        else:
            running = _running_crawl.get()
            if running is not None and running is not self.crawler:
                return
        self.crawler.stats.inc_value(f"log_count/{record.levelname}")
