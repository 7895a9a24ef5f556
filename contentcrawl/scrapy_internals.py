"""The few private Scrapy attributes the project still reads, each behind one function.

Scrapy 2.19 leaves no public way to do these; each function names the upstream issue whose
fix would let it go. Nothing else in the project touches a private Scrapy attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy.core.engine import ExecutionEngine

if TYPE_CHECKING:
    from scrapy import Request
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


def set_request_url(request: Request, url: str) -> None:
    """Change ``request``'s URL in place, as a downloader middleware about to send it.

    ``Request.replace(url=...)`` is the public way, but a new request returned from a
    downloader middleware's ``process_request`` goes back to the scheduler and through every
    middleware again, which is what a credential added for the download must avoid.
    Upstream removed the URL setter for ``replace()`` (scrapy/scrapy#6134); no issue asks
    for an in-place change in downloader middlewares yet.
    """
    request._set_url(url)  # no public way: see the docstring


def wake_engine(crawler: Crawler) -> None:
    """Have a running engine look at its scheduler and its idleness now.

    An idle engine looks again only on its fixed heartbeat (scrapy/scrapy#1618 added it, at
    5 s, with no setting), and only ``ExecutionEngine.crawl()`` wakes it sooner, by
    scheduling a request. A shared Redis queue gets requests from other workers at any time.
    """
    slot = crawler.engine._slot  # no public way: see the docstring
    if slot is not None and slot.closing is None:
        slot.nextcall.schedule()


def let_scraper_close(engine: ExecutionEngine) -> None:
    """Tell a closing scraper whose start items are all done that it may finish closing.

    Scrapy checks that after a response's items only, never after items yielded from
    ``start()``, so without this the close would wait for ever. Waits for
    scrapy/scrapy#7029.
    """
    engine.scraper._check_if_closing()


def set_engine_heartbeat_interval(seconds: float) -> None:
    """Make every engine started from now on look for idleness every ``seconds``.

    When the last item leaves the pipelines with no download in flight, nothing wakes the
    engine until this heartbeat (5 s, a class attribute with no setting) finds the spider
    idle, so every crawl ends that much later. The wait was traced to this hard-coded
    heartbeat in scrapy-plugins/scrapy-zyte-api#235; no Scrapy setting exists for it yet.
    """
    ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = seconds
