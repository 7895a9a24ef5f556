"""Base spider every source builds on: download slot, spider arguments, start-up log line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import scrapy

from contentcrawl.extensions.distributed import DistributedRun

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


class ContentSpider(scrapy.Spider):
    """A spider of one source: its requests ride the source's named download slot.

    Subclasses set ``slot`` (a key of ``DOWNLOAD_SLOTS``) and build requests with
    ``self.request(...)``. Spider arguments arrive as strings (``-a name=value``, scrapyd
    job arguments); unknown ones, such as scrapyd's ``_job``, are accepted and ignored.
    """

    slot: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = parse_limit(kwargs.get("limit"))
        # As given, for the run record (contentcrawl.extensions.runs masks secret names).
        self.arguments: dict[str, Any] = dict(kwargs)
        # The shared Redis run when REDIS_URL is set: see join_distributed_run().
        self.distributed: DistributedRun | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        # Every argument given: a subclass's own (mode, dump, ...) never reach __init__ here.
        spider.arguments = dict(kwargs)
        return spider

    @property
    def job_state(self) -> dict[str, Any] | None:
        """What Scrapy keeps for this spider in ``JOBDIR`` (``spider.state``, saved when the
        spider closes), for the run that resumes a stopped one; None without ``JOBDIR``.

        Scrapy restores the stopped run's queue and duplicate filter, and calls ``start()``
        again: a spider whose ``start()`` plans its work from something that changes between
        runs (the clock, the store, a daily file) keeps its plan here to pick it up again.
        """
        return getattr(self, "state", None)

    def resumed(self, name: str, value: Any) -> Any:
        """``value``, or what the stopped run this one resumes kept under ``name`` (JOBDIR)."""
        state = self.job_state
        return value if state is None else state.setdefault(name, value)

    def join_distributed_run(self) -> DistributedRun | None:
        """Find the shared Redis run (``contentcrawl.extensions.distributed``; None without
        ``REDIS_URL``). From ``start()`` on: extensions do not exist before the crawl."""
        self.distributed = self.crawler.get_extension(DistributedRun)
        return self.distributed

    async def read_source(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """What ``start()`` yields of the run's source: all of it when alone; in a distributed
        run, all of it on the one worker that holds the run's lock (a dump import, or the
        requests that seed the shared queue), nothing on the others, which take requests
        from the queue or stand by to take the source over if that worker dies."""
        if self.distributed is not None:
            source = self.distributed.start(source)
        async for request_or_item in source:
            yield request_or_item

    def account_for_page(self, page: str, found: Iterable[str | None]) -> None:
        """A distributed run: record the keys a listing page found (records, next pages; None
        is nothing to check), then settle the page itself, so a worker killed in between
        leaves the page or its finds to the reconcile."""
        if self.distributed is not None:
            self.distributed.record_ids(key for key in found if key is not None)
            self.distributed.settle(page)

    def settle_key(self, key: str) -> None:
        """A distributed run: a key that ends without a record of its own (a 404, a merged
        or filtered record), which the reconcile must not ask for again."""
        if self.distributed is not None:
            self.distributed.settle(key)

    def request(self, url: str, **kwargs: Any) -> scrapy.Request:
        """A request in this source's download slot (its rate limit), whatever the host."""
        meta = kwargs.pop("meta", None) or {}
        meta.setdefault("download_slot", self.slot)
        return scrapy.Request(url, meta=meta, **kwargs)


def parse_limit(value: str | int | None) -> int | None:
    """``-a limit=N``: a positive record count, or None for no limit."""
    if value in (None, ""):
        return None
    limit = int(value)
    if limit < 1:
        raise ValueError(f"limit must be a positive number, not {value!r}")
    return limit
