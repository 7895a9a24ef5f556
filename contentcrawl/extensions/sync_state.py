"""Sync state: cursors and watermarks that advance only when a crawl finishes cleanly."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.verdict import run_verdict

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler

    from contentcrawl.store import Store

logger = logging.getLogger(__name__)


class SyncState:
    """Reads cursors from the store's ``sync_state`` and saves staged ones at a clean finish.

    A spider reads a cursor with ``await sync.load(name)`` and, as it makes progress,
    ``sync.stage(name, value)``. Staged values are written when the spider closes and the
    run was clean (``contentcrawl.verdict``, the verdict the run record and the exit code
    give too); otherwise they are discarded and the next run starts from the old cursor. This
    lives in the store, not in JOBDIR, so it survives a crash and is shared by workers; it is
    read and written through the crawl's store (``CrawlStore``).

    Spiders reach it as ``self.crawler.get_extension(SyncState)``.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._staged: dict[str, dict[str, Any]] = {}
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def load(self, name: str) -> dict[str, Any] | None:
        """The saved value of a cursor (None before the first clean run)."""
        return await crawl_store(self.crawler).run(lambda store: store.get_state(name))

    def stage(self, name: str, value: dict[str, Any]) -> None:
        """Remember a cursor's new value; saved only if this run finishes cleanly."""
        self._staged[name] = value

    async def _spider_closed(self, spider: Spider, reason: str) -> None:
        # The first close handler to ask: the verdict is decided here, before the monitors
        # and the run recorder log their own lines, and they all get this one.
        verdict = run_verdict(self.crawler, reason)
        if not self._staged:
            return
        if not verdict.ok:
            self.crawler.stats.inc_value("sync_state/not_saved", len(self._staged))
            logger.warning(
                "Run did not finish cleanly (%s): sync state not advanced for %s",
                "; ".join(verdict.problems),
                ", ".join(sorted(self._staged)),
            )
            return
        await crawl_store(self.crawler).run(save_states, self._staged)
        for name, value in self._staged.items():
            logger.info("Sync state %s advanced to %s", name, value)
        self.crawler.stats.inc_value("sync_state/saved", len(self._staged))


def save_states(store: Store, states: dict[str, dict[str, Any]]) -> None:
    """Save each of ``states`` under its name (blocking: run it on the store's thread)."""
    for name, value in states.items():
        store.set_state(name, value)
