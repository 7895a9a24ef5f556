"""Dumps in a crawl: fetching a dump for a spider, judging an import, and ItemFlow backpressure."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from scrapy import signals

from contentcrawl.dumps.download import (
    DownloadError,
    DownloadResult,
    download_dump,
    is_url,
    local_path,
)
from contentcrawl.dumps.read import BadLineLimit
from contentcrawl.scrapy_internals import let_scraper_close, spider_closing

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

# The package's logger: the log lines keep the name they had before the package split.
logger = logging.getLogger(__package__)


def import_failed(crawler: Crawler, source: str, dump: str, lines: int, bad_lines: int) -> bool:
    """Judge an import by its bad lines; past ``BadLineLimit`` log one ERROR, set the stat
    ``<source>/import/failed`` and return True (the caller then marks the dump not complete)."""
    limit = BadLineLimit.from_settings(crawler.settings)
    if not limit.exceeded(lines, bad_lines):
        return False
    crawler.stats.set_value(f"{source}/import/failed", 1)
    logger.error(
        "Import of %s failed: %d of %d lines are bad (DUMP_MAX_BAD_LINE_SHARE %s): "
        "not a usable dump, its sync state is not advanced",
        dump,
        bad_lines,
        max(lines, bad_lines),
        limit.max_share,
    )
    return True


async def fetch_dump(crawler: Crawler, location: str) -> DownloadResult:
    """The local file for ``location``: a path is used in place (outcome ``local``), a URL
    downloaded (resumably).

    The download runs in a worker thread; settings: ``DUMPS_DIR``, ``USER_AGENT``,
    ``DOWNLOAD_TIMEOUT``, ``DUMP_DOWNLOAD_RETRIES``, ``DUMP_PROGRESS_INTERVAL``. Stats:
    ``dumps/download/<outcome>`` (downloaded, resumed, not_modified, failed) and
    ``dumps/download/bytes``. Raises ``DownloadError`` or ``FileNotFoundError``.
    """
    if not is_url(location):
        path = local_path(location)
        if not path.is_file():
            raise FileNotFoundError(f"no dump file at {path}")
        return DownloadResult(path, "local", 0, path.stat().st_size, None, None)
    settings = crawler.settings
    stats = crawler.stats
    cancel = threading.Event()
    try:
        result = await asyncio.to_thread(
            download_dump,
            location,
            settings.get("DUMPS_DIR") or "data/dumps",
            user_agent=settings.get("USER_AGENT") or "contentcrawl",
            timeout=settings.getfloat("DOWNLOAD_TIMEOUT"),
            retries=settings.getint("DUMP_DOWNLOAD_RETRIES"),
            progress_interval=settings.getfloat("DUMP_PROGRESS_INTERVAL"),
            cancel=cancel,
        )
    except asyncio.CancelledError:
        # The crawl is stopping: let the worker thread stop between two chunks.
        cancel.set()
        raise
    except DownloadError:
        stats.inc_value("dumps/download/failed")
        raise
    stats.inc_value(f"dumps/download/{result.outcome}")
    stats.inc_value("dumps/download/bytes", result.bytes_received)
    return result


class ItemFlow:
    """Backpressure and closing for items yielded from ``start()``.

    Scrapy hands each start item to the pipelines and asks for the next one at once, so a
    fast reader would pile items (and store batches) up in memory. ``await flow.sent()``
    after each yield returns at once until ``max_pending`` items are in the pipelines, then
    waits until half of them have been scraped, dropped or failed. ``await flow.drained()``
    before ``start()`` ends lets the engine see the crawl idle, and close, at once (it
    otherwise notices only at its next 5 s heartbeat).

    A spider closed before its ``start()`` ends (``CLOSESPIDER_*``, a monitor, Ctrl-C) needs
    two things Scrapy 2.19 does not do for start items: ``sent()`` answers False, so the
    reader stops instead of reading the rest of its file into a closing crawl; and once the
    last item in the pipelines is done, the closing scraper is told it is idle (Scrapy
    checks that after a response's items only, so the close would wait for ever). A timer
    looks every ``CLOSE_CHECK_INTERVAL`` while the spider is open: the close can begin while
    ``start()`` waits at a ``yield`` with no item in the pipelines, and Scrapy then neither
    asks ``start()`` for more nor finishes an item, so no event of the crawl would see it.
    """

    # Seconds between two looks for a close whose last start items are done.
    CLOSE_CHECK_INTERVAL = 0.05

    def __init__(self, crawler: Crawler, max_pending: int) -> None:
        self.crawler = crawler
        self.max_pending = max(1, max_pending)
        self.pending = 0
        self._level = 0
        self._reached: asyncio.Event | None = None
        self._close_watch: asyncio.TimerHandle | None = None
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(self._finished, signal=signal)
        crawler.signals.connect(self._watch_the_close, signal=signals.spider_opened)
        crawler.signals.connect(self._stop_watching, signal=signals.spider_closed)

    def _watch_the_close(self, **_: Any) -> None:
        """Now and every ``CLOSE_CHECK_INTERVAL`` until it is done: let a closing scraper
        finish once its start items are (an item's signal handlers run before the scraper
        counts the item done, so one look may come too early)."""
        self._close_watch = None
        if spider_closing(self.crawler) and self._closing_scraper_let_go():
            return
        self._close_watch = asyncio.get_running_loop().call_later(
            self.CLOSE_CHECK_INTERVAL, self._watch_the_close
        )

    def _closing_scraper_let_go(self) -> bool:
        """Tell the closing scraper it is idle if it is; whether nothing is left to watch."""
        engine = self.crawler.engine
        if engine.spider is None or engine.scraper.slot is None:
            return True
        closing = engine.scraper.slot.closing
        if closing is None:
            # Not closing yet: the engine closes the downloader first.
            return False
        if closing.called:
            return True
        if engine.scraper.slot.is_idle():
            let_scraper_close(engine)
            return True
        return False

    def _stop_watching(self, **_: Any) -> None:
        if self._close_watch is not None:
            self._close_watch.cancel()
            self._close_watch = None

    def _finished(self, **_: Any) -> None:
        self.pending -= 1
        if self._reached is not None and self.pending <= self._level:
            self._reached.set()

    async def sent(self) -> bool:
        """Count one item handed to the engine and wait while the pipelines are full; False
        once the spider is closing: the caller reads no further."""
        self.pending += 1
        if self.pending >= self.max_pending:
            await self._wait_for(self.max_pending // 2)
        return self.open()

    def open(self) -> bool:
        """Whether the spider still takes items. Once it is closing the caller sends none:
        Scrapy would still take them, into pipelines that may have closed."""
        return not spider_closing(self.crawler)

    async def drained(self) -> None:
        """Wait until every item sent has left the pipelines."""
        await self._wait_for(0)

    async def _wait_for(self, level: int) -> None:
        if self.pending <= level:
            return
        self._level = level
        self._reached = asyncio.Event()
        try:
            await self._reached.wait()
        finally:
            self._reached = None
