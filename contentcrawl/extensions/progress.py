"""Progress of long crawls: a periodic log line and, on a terminal, a live status line."""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, TextIO

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet.task import LoopingCall

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def progress_text(done: int, total: int | None, elapsed: float) -> str:
    """``1,200/5,000 records (24.0%), 40.0/s, ETA 0:01:35`` (without a total: count and rate)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if not total:
        return f"{done:,} records, {rate:.1f}/s"
    remaining = max(total - done, 0)
    eta = str(timedelta(seconds=round(remaining / rate))) if rate else "?"
    return f"{done:,}/{total:,} records ({100.0 * done / total:.1f}%), {rate:.1f}/s, ETA {eta}"


class Progress:
    """Logs records done (scraped + dropped), rate and, when known, total and ETA.

    The total is the spider's ``progress_total`` attribute when it has one (an int, or None
    while unknown). Every ``PROGRESS_LOG_INTERVAL`` seconds one INFO line; when stderr is a
    terminal (and ``PROGRESS_LIVE`` is on) a status line redrawn every second as well.
    ``PROGRESS_LOG_INTERVAL = 0`` switches the extension off.
    """

    def __init__(self, crawler: Crawler, stream: TextIO | None = None) -> None:
        settings = crawler.settings
        self.interval = settings.getfloat("PROGRESS_LOG_INTERVAL")
        if self.interval <= 0:
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled Progress: PROGRESS_LOG_INTERVAL is 0")
            raise NotConfigured
        self.crawler = crawler
        self.stream = stream or sys.stderr
        self.live = settings.getbool("PROGRESS_LIVE") and self.stream.isatty()
        self._started = time.monotonic()
        self._tasks: list[LoopingCall] = []
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def status(self) -> str:
        """The current progress text."""
        stats = self.crawler.stats
        done = (stats.get_value("item_scraped_count") or 0) + (
            stats.get_value("item_dropped_count") or 0
        )
        total = getattr(self.crawler.spider, "progress_total", None)
        return progress_text(done, total, time.monotonic() - self._started)

    def spider_opened(self, spider: Spider) -> None:
        self._started = time.monotonic()
        self._tasks.append(self._every(self.interval, self.log, spider))
        if self.live:
            self._tasks.append(self._every(1.0, self.draw, spider))

    def _every(
        self, seconds: float, function: Callable[[Spider], None], spider: Spider
    ) -> LoopingCall:
        task = LoopingCall(function, spider)
        task.start(seconds, now=False)
        return task

    def log(self, spider: Spider) -> None:
        """Write the periodic progress log line."""
        logger.info("Progress of %s: %s", spider.name, self.status())

    def draw(self, spider: Spider) -> None:
        """Redraw the live status line (terminal only)."""
        self.stream.write(f"\r\x1b[K{spider.name}: {self.status()}")
        self.stream.flush()

    def spider_closed(self, spider: Spider) -> None:
        for task in self._tasks:
            if task.running:
                task.stop()
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
        logger.info("Progress of %s at close: %s", spider.name, self.status())
