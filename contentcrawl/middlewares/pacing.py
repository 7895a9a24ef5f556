"""The one owner of every pause: each download slot's rate, backoff and learnt rate.

``PacingMiddleware`` holds each request of a limited slot until the slot's next start
(``contentcrawl.pacing.SlotClock``): its configured ``rate`` (``DOWNLOAD_SLOTS``), lowered
by 429/503 answers and raised again by successes (``AimdRate``), and a backoff pause after
a failure (``Retry-After``, or exponential). Scrapy's stock downloader then sends it: the
slot's ``concurrency`` and ``delay`` there are Scrapy's, and ``delay`` is AutoThrottle's to
raise when a server answers slowly; the published limit is this middleware's ``rate``.
Account limits shared by every worker (``RedisAccountLimits``) are the same role in Redis:
with ``REDIS_URL`` set, the add-on takes the local ``rate`` off those slots.

A request waiting here is already in the downloader's ``active`` set, so
``CONCURRENT_REQUESTS`` and ``engine.needs_backout()`` still bound how many wait.

A request with ``meta["download_deadline"]`` (a ``time.monotonic()`` value) that is still
waiting when the deadline passes, or when its slot is paused as it arrives, or when the
crawl is stopping, fails unsent with ``DeadlinePassed``: an image a record no longer waits
for takes no room from the next ones. Released, it gets what is left of the deadline as
its download timeout.

A stopping crawl (one Ctrl-C, a scrapyd cancel, ``CLOSESPIDER_*``) waits for every request
the downloader holds. Those still waiting here (behind a backoff pause of up to
``RETRY_AFTER_MAX``, or one a second at MusicBrainz) are handed back to the scheduler
unsent instead, through ``HandBackMiddleware``: the crawl stops at once, and a ``JOBDIR`` or
the shared Redis queue keeps them for the next run.

A ``<slot>@<host>`` key (``contentcrawl.pacing.host_slot``: one image slot per image host,
so a dead host's pauses and queue hold no other host) takes ``DOWNLOAD_SLOTS[<slot>]``:
here, and in the stock downloader, whose slot settings get the same entry before the
request reaches it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.utils.misc import load_object

from contentcrawl.pacing import (
    DOWNLOAD_DEADLINE,
    SlotClock,
    SlotRates,
    configured_slot,
    parse_retry_after,
)
from contentcrawl.scrapy_internals import spider_closing

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

# Request meta: the slot whose open requests this one counts in, until it leaves.
OPEN_IN_SLOT = "pacing_open_in_slot"
# Answers that say "too fast": they lower the slot's learnt rate (contentcrawl.pacing).
RATE_REFUSALS = frozenset({429, 503})


class RequestHandedBack(Exception):  # noqa: N818 - not an error: what carries it back
    """A request given back unsent because the crawl is stopping."""

    def __init__(self, request: Request) -> None:
        super().__init__(f"handed back unsent: {request.method} {request.url}")
        self.request = request


class DeadlinePassed(Exception):  # noqa: N818 - named for what happened, as Scrapy's are
    """A request with a ``download_deadline`` not sent: the deadline passed while it waited
    for its slot, its slot was paused, or the crawl is stopping."""

    def __init__(self, request: Request) -> None:
        super().__init__(f"not sent before its deadline: {request.method} {request.url}")
        self.request = request


@dataclass
class _Slot:
    """One slot's pacing: its clock, open requests and the requests waiting for a start."""

    key: str
    clock: SlotClock
    concurrency: int
    backoff_max: float
    failures: int = 0  # consecutive failures
    open: int = 0
    waiting: deque[tuple[Request, asyncio.Future[None]]] = field(default_factory=deque)
    timer: asyncio.TimerHandle | None = None


class PacingMiddleware:
    """Downloader middleware: a request of a slot with a ``rate``, or of a paused slot, waits
    here for the slot's next start; answers and errors set the slot's rate and pauses.

    ``DOWNLOAD_SLOTS`` keys it reads: ``rate`` (requests/s, the published limit),
    ``pace`` (keep the rate, not a minimum gap: see ``SlotClock``), ``concurrency`` (open
    requests; a slot with a rate releases no more) and ``backoff_max`` (its longest pause;
    default ``RETRY_AFTER_MAX``). A response in ``RETRY_HTTP_CODES`` or an exception in
    ``RETRY_EXCEPTIONS`` pauses its whole slot for ``Retry-After`` seconds (capped at
    ``RETRY_AFTER_MAX``) or, without one, ``RETRY_BACKOFF_BASE * 2**(n-1)`` seconds after the
    slot's n-th consecutive failure (capped at ``RETRY_BACKOFF_MAX``, ± ``RETRY_BACKOFF_JITTER``).
    Place it after the retry middleware (a higher order number), so it sees every answer
    before a retry is made of it.
    """

    # Seconds between two looks at whether the crawl is stopping or a deadline passed.
    CHECK_INTERVAL = 0.25

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.slot_settings = settings.getdict("DOWNLOAD_SLOTS")
        self.rates = SlotRates(self.slot_settings)
        self.default_concurrency = settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE")
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX")
        self.backoff_jitter = settings.getfloat("RETRY_BACKOFF_JITTER")
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX")
        self.failure_codes = {int(code) for code in settings.getlist("RETRY_HTTP_CODES")}
        self.failure_exceptions = tuple(
            load_object(name) if isinstance(name, str) else name
            for name in settings.getlist("RETRY_EXCEPTIONS")
        )
        self.slots: dict[str, _Slot] = {}
        self._check: asyncio.Task[None] | None = None
        crawler.signals.connect(self._request_left, signal=signals.request_left_downloader)
        crawler.signals.connect(self._spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    # -- holding requests ---------------------------------------------------------------
    async def process_request(self, request: Request) -> None:
        key = self._slot_key(request)
        slot = self._slot(key)
        now = monotonic()
        if slot.clock.interval == 0 and slot.clock.resume_at <= now:
            return
        deadline = request.meta.get(DOWNLOAD_DEADLINE)
        if deadline is not None and now < slot.clock.resume_at:
            # Something waits for it only until its deadline (an image, its record): while
            # the slot is paused for failing, it would wait only to fail again.
            raise DeadlinePassed(request)
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiting.append((request, released))
        self._release(slot)
        await released
        if deadline is not None:
            # Leaving now: what is left of the deadline bounds the download too.
            timeout = request.meta.get("download_timeout", float("inf"))
            request.meta["download_timeout"] = max(0.001, min(timeout, deadline - monotonic()))

    def _release(self, slot: _Slot) -> None:
        """Release the slot's waiting requests whose start has come, in order; wake up for
        the next one."""
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        while slot.waiting and slot.open < slot.concurrency:
            now = monotonic()
            start = slot.clock.next_start()
            if start > now:
                slot.timer = asyncio.get_running_loop().call_later(start - now, self._release, slot)
                return
            request, released = slot.waiting.popleft()
            if released.done():
                continue
            slot.clock.started(now)
            if slot.clock.interval:
                # Open until it leaves the downloader (or fails on its way there).
                slot.open += 1
                request.meta[OPEN_IN_SLOT] = slot.key
            released.set_result(None)

    def _request_left(self, request: Request) -> None:
        key = request.meta.pop(OPEN_IN_SLOT, None)
        slot = None if key is None else self.slots.get(key)
        if slot is not None:
            slot.open -= 1
            self._release(slot)

    async def _check_waiting(self) -> None:
        while True:
            await asyncio.sleep(self.CHECK_INTERVAL)
            closing = spider_closing(self.crawler)
            now = monotonic()
            for slot in self.slots.values():
                for request, released in slot.waiting:
                    if released.done():
                        continue
                    deadline = request.meta.get(DOWNLOAD_DEADLINE)
                    if deadline is not None and (closing or deadline < now):
                        # Something waits for it until the deadline (an image, its record);
                        # a stopping crawl does not wait for it at all.
                        released.set_exception(DeadlinePassed(request))
                    elif closing:
                        # An error, so the middlewares take their credentials off the
                        # request on the way back (process_exception); HandBackMiddleware
                        # makes it a request again.
                        released.set_exception(RequestHandedBack(request))
                slot.waiting = deque(item for item in slot.waiting if not item[1].done())

    def _spider_opened(self) -> None:
        self._check = asyncio.ensure_future(self._check_waiting())

    def _spider_closed(self) -> None:
        if self._check is not None:
            self._check.cancel()
        for slot in self.slots.values():
            if slot.timer is not None:
                slot.timer.cancel()

    # -- learning from answers ------------------------------------------------------------
    def process_response(self, request: Request, response: Response) -> Response:
        self._request_left(request)
        key = self._slot_key(request)
        if response.status in RATE_REFUSALS:
            self._refused(key, request)
        if response.status in self.failure_codes:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self._failed(key, str(response.status), retry_after)
        else:
            self._succeeded(key)
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        self._request_left(request)
        if isinstance(exception, self.failure_exceptions):
            self._failed(self._slot_key(request), type(exception).__name__, None)

    def _refused(self, key: str, request: Request) -> None:
        rate = self.rates.get(key)
        if rate is None:
            return
        now = monotonic()
        # download_latency: seconds from the request's start to its answer.
        sent_at = now - request.meta.get("download_latency", 0.0)
        if rate.refused(sent_at, now):
            logger.info(
                "Download slot %r refused: its rate falls to %.2f requests/s", key, rate.rate
            )

    def _failed(self, key: str, reason: str, retry_after: float | None) -> None:
        slot = self._slot(key)
        stats = self.crawler.stats
        stats.inc_value(f"retry/{key}/{reason}")
        now = monotonic()
        # A failure that arrives while the slot is paused answers a request sent before
        # the pause: the same overload, so it does not escalate the backoff.
        if now >= slot.clock.resume_at:
            slot.failures += 1
        wait = self._backoff_wait(slot.failures) if retry_after is None else retry_after
        wait = min(wait, slot.backoff_max)
        imposed = slot.clock.pause(now + wait, now)
        if not imposed:
            return
        # Seconds are fractional; the stub's ``count: int`` is narrower than the collector,
        # which adds any number.
        stats.inc_value(f"retry/{key}/backoff_seconds", round(imposed, 3))  # type: ignore[arg-type]
        logger.info(
            "Pausing download slot %r for %.2f s after %s (%d consecutive failures)",
            key,
            wait,
            reason,
            slot.failures,
        )
        self._release(slot)

    def _succeeded(self, key: str) -> None:
        slot = self._slot(key)
        rate = self.rates.get(key)
        if rate is not None:
            rate.succeeded()
        # A success that arrives during the pause was sent before it: it says nothing yet.
        if monotonic() < slot.clock.resume_at:
            return
        if slot.failures:
            logger.info("Download slot %r resumed", key)
        slot.failures = 0

    def _backoff_wait(self, failures: int) -> float:
        wait = min(self.backoff_max, self.backoff_base * 2 ** max(0, failures - 1))
        return wait * (1 + random.uniform(-self.backoff_jitter, self.backoff_jitter))  # noqa: S311

    # -- slots ----------------------------------------------------------------------------
    def _slot_key(self, request: Request) -> str:
        # The downloader writes meta["download_slot"] only after the middlewares.
        return request.meta.get("download_slot") or self.crawler.engine.downloader.get_slot_key(
            request
        )

    def _slot(self, key: str) -> _Slot:
        slot = self.slots.get(key)
        if slot is not None:
            return slot
        configured = configured_slot(key)
        conf: dict[str, Any] = self.slot_settings.get(configured, {})
        if key != configured and conf:
            # The stock downloader builds a new slot from its DOWNLOAD_SLOTS entry, read
            # into per_slot_settings: a per-host slot gets its configured slot's.
            self.crawler.engine.downloader.per_slot_settings.setdefault(key, conf)
        slot = self.slots[key] = _Slot(
            key=key,
            clock=SlotClock(self.rates.get(key), paced=bool(conf.get("pace"))),
            concurrency=int(conf.get("concurrency", self.default_concurrency)),
            backoff_max=float(conf.get("backoff_max", self.retry_after_max)),
        )
        return slot


class HandBackMiddleware:
    """Downloader middleware, outermost: a request handed back unsent
    (``RequestHandedBack``) goes back to the scheduler, past the duplicate filter."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls()

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if isinstance(exception, RequestHandedBack):
            return request.replace(dont_filter=True)
        return None
