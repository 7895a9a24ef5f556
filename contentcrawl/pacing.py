"""Pacing, pure: when a slot's next request may start, and the rate it learns under a limit.

A slot's configured ``rate`` (``DOWNLOAD_SLOTS``) is the source's published limit (TMDB
~40/s, IGDB 4/s, MusicBrainz 1/s). A server may enforce less: a shared IP, a plan with a
lower quota, a proxy. ``AimdRate`` keeps one slot's rate: each success adds a little to it,
up to the configured limit; each 429/503 multiplies it by ``DECREASE``. The rate then saws
just below the limit the server really enforces, drawing one refusal per ``RECOVERY_REQUESTS``
successes whatever that limit is. ``SlotRates`` holds one ``AimdRate`` per limited slot of
``DOWNLOAD_SLOTS``. ``SlotClock`` turns one slot's rate and backoff pause into start times,
and ``parse_retry_after`` reads how long a server asks a slot to pause.

Pure: no Scrapy, no monotonic clock of its own (callers pass ``time.monotonic()`` values).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

# A refusal leaves this share of the rate: 0.8 keeps about 90 % of the enforced limit on
# average over the saw-tooth, and converges from 40/s to 5/s in ten refusals.
DECREASE = 0.8
# Successes that bring the rate back to where it was refused: about one refusal per this
# many requests once settled (0.4 % at 250).
RECOVERY_REQUESTS = 250
# Request meta: the time.monotonic() after which a request still waiting for its slot fails
# unsent (contentcrawl.middlewares.pacing).
DOWNLOAD_DEADLINE = "download_deadline"
# ``<configured slot>@<host>``: a slot of its own per host that takes its settings from the
# configured one (one image slot per image host, so one dead host holds no other).
HOST_SLOT_SEPARATOR = "@"


def configured_slot(key: str) -> str:
    """The ``DOWNLOAD_SLOTS`` entry a slot key takes its settings from."""
    return key.split(HOST_SLOT_SEPARATOR, 1)[0]


def host_slot(configured: str, host: str) -> str:
    """The key of ``configured``'s slot for ``host`` (its settings, its own queue and pauses)."""
    return f"{configured}{HOST_SLOT_SEPARATOR}{host}"


class AimdRate:
    """One slot's rate (requests/s): additive increase on success, multiplicative decrease
    on a refusal, never above ``limit``."""

    def __init__(
        self,
        limit: float,
        *,
        decrease: float = DECREASE,
        recovery_requests: int = RECOVERY_REQUESTS,
    ) -> None:
        if limit <= 0:
            raise ValueError(f"a rate limit must be above 0, not {limit!r}")
        if not 0 < decrease < 1:
            raise ValueError(f"the decrease factor must be between 0 and 1, not {decrease!r}")
        if recovery_requests < 1:
            raise ValueError(f"recovery_requests must be at least 1, not {recovery_requests!r}")
        self.limit = limit
        self.decrease = decrease
        self.recovery_requests = recovery_requests
        self.rate = limit
        self.step = 0.0  # requests/s added per success since the last decrease
        self.decreased_at = float("-inf")

    @property
    def delay(self) -> float:
        """Seconds between two request starts at the current rate."""
        return 1.0 / self.rate

    def succeeded(self) -> bool:
        """Count a success; True if the rate rose."""
        if self.rate >= self.limit:
            return False
        self.rate = min(self.limit, self.rate + self.step)
        return True

    def refused(self, sent_at: float, now: float) -> bool:
        """Count a 429/503 to a request sent at ``sent_at``; True if the rate fell.

        A refusal of a request sent before the last decrease answers the old, faster rate:
        it is the same overload, so it does not decrease the rate again.
        """
        if sent_at < self.decreased_at:
            return False
        refused_rate = self.rate
        self.rate = refused_rate * self.decrease
        # Back to the refused rate in RECOVERY_REQUESTS successes: the saw-tooth's period
        # in requests is the same at 1/s as at 40/s.
        self.step = (refused_rate - self.rate) / self.recovery_requests
        self.decreased_at = now
        return True


class SlotRates:
    """The ``AimdRate`` of each slot whose ``DOWNLOAD_SLOTS`` entry has a ``rate`` above zero
    (a per-host slot gets its own, from its configured slot's rate)."""

    def __init__(self, slots: Mapping[str, Mapping[str, Any]], **options: Any) -> None:
        self.limits = {
            key: float(conf["rate"])
            for key, conf in slots.items()
            if float(conf.get("rate") or 0) > 0
        }
        self.options = options
        self.rates: dict[str, AimdRate] = {}

    def get(self, key: str) -> AimdRate | None:
        """The slot's rate; None for a slot without a configured limit."""
        rate = self.rates.get(key)
        if rate is None:
            limit = self.limits.get(configured_slot(key))
            if limit is None:
                return None
            rate = self.rates[key] = AimdRate(limit, **self.options)
        return rate


class SlotClock:
    """When one slot's next request may start: one ``interval`` of its rate after the
    previous start, and not before its backoff pause (``resume_at``) ends.

    A ``paced`` slot counts the interval from when the previous start was *due*, so timers
    that fire a little late (about a millisecond on asyncio, more on a busy machine) do not
    add up: 39/s runs at 39/s. A start may then come a little less than one interval after
    a late one, so a paced slot's rate needs a margin under a strict per-second limit. An
    unpaced slot counts it from the previous *actual* start: a minimum gap, for hard rules
    such as MusicBrainz's. After an idle spell (a start more than one interval late) either
    kind counts from now.
    """

    def __init__(self, rate: AimdRate | None, *, paced: bool) -> None:
        self.rate = rate
        self.paced = paced
        self.last_start = float("-inf")
        self.resume_at = float("-inf")

    @property
    def interval(self) -> float:
        """Seconds between two starts at the slot's current rate (0: no rate limit)."""
        return 0.0 if self.rate is None else self.rate.delay

    def next_start(self) -> float:
        """The earliest ``time.monotonic()`` at which the slot's next request may start."""
        return max(self.last_start + self.interval, self.resume_at)

    def started(self, now: float) -> None:
        """Record a start at ``now``."""
        due = self.last_start + self.interval
        if self.paced and self.interval and due <= now < due + self.interval:
            self.last_start = due
        else:
            self.last_start = now

    def pause(self, until: float, now: float) -> float:
        """Start nothing before ``until``; return the seconds this adds to the pause."""
        added = max(0.0, until - max(self.resume_at, now))
        self.resume_at = max(self.resume_at, until)
        return added


def parse_retry_after(value: str | bytes | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP-date); None if unreadable."""
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
