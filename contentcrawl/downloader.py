"""Scrapy's downloader, where a slot may keep its delay as a pace: 39/s runs at 39/s.

Stock Scrapy starts a slot's next request ``delay`` after the previous one *actually*
started. Each timer fires a little late (about a millisecond on asyncio, more on a busy
machine) and the lateness adds up: a 25 ms slot runs at about 37 requests/s, not 40. A slot
with ``"pace": True`` in ``DOWNLOAD_SLOTS`` starts its next request ``delay`` after the
previous one was *due*, so lateness is not carried over: its rate is the configured one.
Its starts may then come a little closer than ``delay`` after a late one, so a paced
slot's rate needs a margin under a strict per-second limit (TMDB, IGDB). Slots without
``pace`` keep the stock minimum gap, for hard rules such as MusicBrainz's.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING

from scrapy.core.downloader import Downloader, Slot

if TYPE_CHECKING:
    from scrapy import Request, Spider

_LASTSEEN = Slot.__dict__["lastseen"]


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


class PacedDownloader(Downloader):
    """The stock downloader; slots with ``"pace": True`` in ``DOWNLOAD_SLOTS`` are paced."""

    def _get_slot(self, request: Request, spider: Spider | None = None) -> tuple[str, Slot]:
        key, slot = super()._get_slot(request)
        if type(slot) is Slot and self.per_slot_settings.get(key, {}).get("pace"):
            # Same memory layout (PacedSlot adds behaviour, no field): switch it in place
            # rather than copy how the base class builds slots from DOWNLOAD_SLOTS.
            slot.__class__ = PacedSlot
        return key, slot
