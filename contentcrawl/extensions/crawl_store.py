"""The crawl's one store: opened once, used on its one thread, closed when the engine stops.

Every component of a crawl that reads or writes the store (the store pipeline, sync state,
run records, saved failures, image bookkeeping, token caches, the dump imports) reaches it
through this extension: ``await crawl_store(crawler).run(function, *args)`` calls
``function(store, *args)`` on the store's thread. One connection per crawl, and writes in
the order they were asked for, whichever component asked.

The store opens on the first call. If it cannot be opened, every call raises that same
``StoreError`` without trying again (an unreachable MongoDB costs its connect timeout once,
not once per component). It closes on ``engine_stopped``, after every ``spider_closed``
handler (run record, sync state) had its last write.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from scrapy import signals

from contentcrawl.store import Store, StoreError, build_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy.crawler import Crawler

Params = ParamSpec("Params")
Result = TypeVar("Result")


class CrawlStore:
    """Owns the crawl's store and the one thread every store call runs on."""

    def __init__(self, crawler: Crawler) -> None:
        self.store: Store = build_store(crawler.settings)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._opening: asyncio.Future[None] | None = None
        self._closed = False
        crawler.signals.connect(self.close, signal=signals.engine_stopped)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    @property
    def description(self) -> str:
        """Which store this is, without credentials (for logs)."""
        return self.store.description

    async def open(self) -> None:
        """Open the store once; raises its ``StoreError`` (the same one on every call)."""
        if self._closed:
            raise StoreError("the crawl's store is closed")
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._on_thread(self.store.open))
        await asyncio.shield(self._opening)

    async def run(
        self,
        function: Callable[Concatenate[Store, Params], Result],
        *args: Params.args,
        **kwargs: Params.kwargs,
    ) -> Result:
        """``function(store, *args, **kwargs)`` on the store's thread, once it is open."""
        await self.open()
        return await self._on_thread(lambda: function(self.store, *args, **kwargs))

    async def close(self) -> None:
        """Close the store (if it was opened) and its thread; later calls raise."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._opening is not None and await self._opened():
                await self._on_thread(self.store.close)
        finally:
            self._executor.shutdown(wait=False)

    async def _opened(self) -> bool:
        """Whether the open that was started succeeded (waiting for it if need be)."""
        assert self._opening is not None
        try:
            await asyncio.shield(self._opening)
        except Exception:
            return False
        return True

    async def _on_thread(self, function: Callable[[], Result]) -> Result:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)


def crawl_store(crawler: Crawler) -> CrawlStore:
    """The crawl's ``CrawlStore`` (enabled in ``EXTENSIONS`` by the project settings)."""
    service = crawler.get_extension(CrawlStore)
    if service is None:
        raise RuntimeError("contentcrawl.extensions.crawl_store.CrawlStore is not enabled")
    return service
