"""The few things Scrapy offers no public way to do, each in one function.

Each function's docstring names the upstream Scrapy issue that would make it unnecessary;
when that lands, the function goes and its callers use the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


def spider_closing(crawler: Crawler) -> bool:
    """Whether the crawl's spider is closing or closed (or the engine stopping).

    Scrapy has no public flag or signal for it (only ``spider_closed``, once every request
    the downloader holds has finished): ``ExecutionEngine.close_spider_async()`` starts by
    giving the engine's private slot a ``closing`` Deferred, and drops the slot when done.
    Upstream: scrapy/scrapy#2969 (stop at once, dropping the requests the downloader holds,
    yet run the shutdown code).
    """
    try:
        engine = crawler.engine
    except RuntimeError:  # the crawl has not started
        return False
    if not engine.running:
        return True
    slot = engine._slot  # no public way: see the docstring
    return slot is None or slot.closing is not None
