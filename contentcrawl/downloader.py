"""Scrapy's downloader, where a slot may keep its delay as a pace: 39/s runs at 39/s.

Stock Scrapy starts a slot's next request ``delay`` after the previous one *actually*
started. Each timer fires a little late (about a millisecond on asyncio, more on a busy
machine) and the lateness adds up: a 25 ms slot runs at about 37 requests/s, not 40. A slot
with ``"pace": True`` in ``DOWNLOAD_SLOTS`` starts its next request ``delay`` after the
previous one was *due*, so lateness is not carried over: its rate is the configured one.
Its starts may then come a little closer than ``delay`` after a late one, so a paced
slot's rate needs a margin under a strict per-second limit (TMDB, IGDB). Slots without
``pace`` keep the stock minimum gap, for hard rules such as MusicBrainz's.

A slot key ``<slot>@<host>`` (``contentcrawl.pacing.host_slot``) is a slot of its own that
takes the settings of ``DOWNLOAD_SLOTS[<slot>]``: one image slot per image host, so a dead
host's pauses and queue hold no other host. ``rates`` (``contentcrawl.pacing.SlotRates``)
holds each limited slot's learnt rate, which ``PoliteRetryMiddleware`` updates and
``SlotAutoThrottle`` keeps as the slot's floor.

A request with ``meta["download_deadline"]`` (a ``time.monotonic()`` value) that is still
waiting in its slot when the deadline passes, or when the crawl is stopping, fails unsent
with ``DeadlinePassed``: an image a record no longer waits for takes no room from the next
ones. Leaving its slot, it gets what is left of the deadline as its download timeout.

A stopping crawl (one Ctrl-C, a scrapyd cancel, ``CLOSESPIDER_*``) waits for every request
the downloader holds. Those still waiting for their slot's next start (behind a backoff
pause of up to ``RETRY_AFTER_MAX``, or one a second at MusicBrainz) are handed back to the
scheduler unsent instead, through ``HandBackMiddleware``: the crawl stops at once, and a
``JOBDIR`` or the shared Redis queue keeps them for the next run.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.core.downloader import Downloader, Slot
from scrapy.utils.asyncio import create_looping_call

from contentcrawl.dumps import spider_closing
from contentcrawl.pacing import SlotRates, configured_slot

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

_LASTSEEN = Slot.__dict__["lastseen"]
# Request meta: the time.monotonic() after which a request still in its slot's queue fails.
DOWNLOAD_DEADLINE = "download_deadline"


class PacedSlot(Slot):
    """A download slot whose start times advance by its delay, not by its timers' lateness.

    The downloader records each start as ``lastseen = now``; a start that happens within one
    delay after it was due is recorded as the due time instead. After an idle spell (a start
    later than that) the pace restarts from now, and values in the future (a backoff pause
    set by ``PoliteRetryMiddleware``) are kept as they are. Slots with jitter are left alone:
    their delay is random on purpose.
    """

    __slots__ = ()

    @property  # type: ignore[override]
    def lastseen(self) -> float:
        return _LASTSEEN.__get__(self)

    @lastseen.setter
    def lastseen(self, value: float) -> None:
        previous = _LASTSEEN.__get__(self)
        due = previous + self.delay
        if (
            previous
            and self.delay
            and not self.jitter
            and due <= value < due + self.delay
            and value <= monotonic()
        ):
            value = due
        _LASTSEEN.__set__(self, value)


class RequestHandedBack(Exception):  # noqa: N818 - not an error: what carries it back
    """A request the downloader gives back unsent because the crawl is stopping."""

    def __init__(self, request: Request) -> None:
        super().__init__(f"handed back unsent: {request.method} {request.url}")
        self.request = request


class DeadlinePassed(Exception):  # noqa: N818 - named for what happened, as Scrapy's are
    """A request with a ``download_deadline`` not sent: the deadline passed while it waited
    in its slot, or the crawl is stopping."""

    def __init__(self, request: Request) -> None:
        super().__init__(f"not sent before its deadline: {request.method} {request.url}")
        self.request = request


class PacedDownloader(Downloader):
    """The stock downloader; slots with ``"pace": True`` in ``DOWNLOAD_SLOTS`` are paced,
    ``<slot>@<host>`` slots take ``<slot>``'s settings, queued requests past their deadline
    fail unsent, and a stopping crawl gets back the requests still waiting in a slot (see
    the module)."""

    # Seconds between two looks at whether the crawl is stopping or a deadline passed.
    CLOSING_CHECK_INTERVAL = 0.25

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.rates = SlotRates(self.per_slot_settings)
        self._closing_check = create_looping_call(self._check_queues)
        crawler.signals.connect(self._start_closing_check, signal=signals.spider_opened)

    def _start_closing_check(self) -> None:
        self._closing_check.start(self.CLOSING_CHECK_INTERVAL, now=False)

    def _check_queues(self) -> None:
        closing = spider_closing(self.crawler)
        now = monotonic()
        for slot in self.slots.values():
            waiting = list(slot.queue)
            slot.queue.clear()
            for request, deferred in waiting:
                deadline = request.meta.get(DOWNLOAD_DEADLINE)
                if deadline is not None and (closing or deadline < now):
                    # Something waits for it until the deadline (an image, its record); a
                    # stopping crawl does not wait for it at all.
                    deferred.errback(DeadlinePassed(request))
                elif closing:
                    # An error, so the middlewares take their credentials off the request
                    # on the way back (process_exception); HandBackMiddleware makes it a
                    # request again.
                    deferred.errback(RequestHandedBack(request))
                else:
                    slot.queue.append((request, deferred))

    def close(self) -> None:
        if self._closing_check.running:
            self._closing_check.stop()
        super().close()

    async def _download(self, slot: Slot, request: Request) -> Response:
        deadline = request.meta.get(DOWNLOAD_DEADLINE)
        if deadline is not None:
            # Leaving the queue now: what is left of the deadline bounds the download too.
            timeout = request.meta.get("download_timeout", float("inf"))
            request.meta["download_timeout"] = max(0.001, min(timeout, deadline - monotonic()))
        return await super()._download(slot, request)

    def _get_slot(self, request: Request, spider: Spider | None = None) -> tuple[str, Slot]:
        wanted = self.get_slot_key(request)
        configured = configured_slot(wanted)
        if wanted != configured and configured in self.per_slot_settings:
            # The stock downloader builds a slot from per_slot_settings[key]: a per-host
            # slot gets its configured slot's entry.
            self.per_slot_settings.setdefault(wanted, self.per_slot_settings[configured])
        new = wanted not in self.slots
        key, slot = super()._get_slot(request)
        if new:
            # A slot dropped while idle (the stock downloader's slot GC) comes back at the
            # rate it had learnt, not at its configured one.
            slot.delay = max(slot.delay, self.rates.delay(key, slot.delay))
        if type(slot) is Slot and self.per_slot_settings.get(key, {}).get("pace"):
            # Same memory layout (PacedSlot adds behaviour, no field): switch it in place
            # rather than copy how the base class builds slots from DOWNLOAD_SLOTS.
            slot.__class__ = PacedSlot
        return key, slot


class HandBackMiddleware:
    """Downloader middleware, outermost: a request the downloader handed back unsent
    (``RequestHandedBack``) goes back to the scheduler, past the duplicate filter."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls()

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if isinstance(exception, RequestHandedBack):
            return request.replace(dont_filter=True)
        return None
