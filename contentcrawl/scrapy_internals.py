"""The few private Scrapy attributes the project still reads, each behind one function.

Scrapy 2.19 leaves no public way to do these; each function names the upstream issue whose
fix would let it go. Nothing else in the project touches a private Scrapy attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.core.engine import ExecutionEngine


def spider_close_started(engine: ExecutionEngine) -> bool:
    """Whether ``close_spider_async()`` has begun (or ended) for the engine's spider.

    It starts by giving the engine's private slot a ``closing`` Deferred and drops the
    slot when done; no public flag says so. Waits for scrapy/scrapy#7029 (items yielded
    from ``start()`` and the spider's close).
    """
    slot = engine._slot
    return slot is None or slot.closing is not None


def let_scraper_close(engine: ExecutionEngine) -> None:
    """Tell a closing scraper whose start items are all done that it may finish closing.

    Scrapy checks that after a response's items only, never after items yielded from
    ``start()``, so without this the close would wait for ever. Waits for
    scrapy/scrapy#7029.
    """
    engine.scraper._check_if_closing()
