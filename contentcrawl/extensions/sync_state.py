"""Sync state: cursors and watermarks that advance only when a crawl finishes cleanly."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from scrapy import signals

from contentcrawl.store import Store, build_store

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


class SyncState:
    """Reads cursors from the store's ``sync_state`` and saves staged ones at a clean finish.

    A spider reads a cursor with ``await sync.load(name)`` and, as it makes progress,
    ``sync.stage(name, value)``. Staged values are written when the spider closes with
    reason ``finished`` and the run logged no error, gave up no request and lost no store
    batch; otherwise they are discarded and the next run starts from the old cursor. This
    lives in the store, not in JOBDIR, so it survives a crash and is shared by workers.

    Spiders reach it as ``self.crawler.get_extension(SyncState)``.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self._staged: dict[str, dict[str, Any]] = {}
        self._store: Store | None = None
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def _open_store(self) -> Store:
        if self._store is None:
            store = build_store(self.crawler.settings)
            store.open()
            self._store = store
        return self._store

    async def load(self, name: str) -> dict[str, Any] | None:
        """The saved value of a cursor (None before the first clean run)."""
        return await asyncio.to_thread(lambda: self._open_store().get_state(name))

    def stage(self, name: str, value: dict[str, Any]) -> None:
        """Remember a cursor's new value; saved only if this run finishes cleanly."""
        self._staged[name] = value

    def clean_finish_problems(self, reason: str) -> list[str]:
        """Why this run does not count as clean (empty when it does)."""
        stats = self.crawler.stats.get_stats()
        problems = []
        if reason != "finished":
            problems.append(f"finish reason {reason!r}")
        errors = stats.get("log_count/ERROR", 0)
        if errors:
            problems.append(f"{errors} errors logged")
        for key, value in stats.items():
            if value and (
                (key.endswith(("/gave_up", "/failed")) and key.startswith(("retry/", "store/")))
                # A dump import judged failed for its bad lines (contentcrawl.dumps).
                or key.endswith("/import/failed")
            ):
                problems.append(f"{key}={value}")
        return problems

    async def _spider_closed(self, spider: Spider, reason: str) -> None:
        try:
            if not self._staged:
                return
            problems = self.clean_finish_problems(reason)
            if problems:
                self.crawler.stats.inc_value("sync_state/not_saved", len(self._staged))
                logger.warning(
                    "Run did not finish cleanly (%s): sync state not advanced for %s",
                    ", ".join(problems),
                    ", ".join(sorted(self._staged)),
                )
                return
            store = await asyncio.to_thread(self._open_store)
            for name, value in self._staged.items():
                await asyncio.to_thread(store.set_state, name, value)
                logger.info("Sync state %s advanced to %s", name, value)
            self.crawler.stats.inc_value("sync_state/saved", len(self._staged))
        finally:
            if self._store is not None:
                await asyncio.to_thread(self._store.close)
                self._store = None
