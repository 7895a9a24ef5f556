"""Retries that slow a whole download slot: Retry-After, exponential backoff, a give-up signal."""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.utils.response import response_status_message

from contentcrawl.downloader import DOWNLOAD_DEADLINE, DeadlinePassed
from contentcrawl.pacing import configured_slot
from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.signals import request_gave_up

if TYPE_CHECKING:
    from scrapy.core.downloader import Slot
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from contentcrawl.pacing import AimdRate

logger = logging.getLogger(__name__)

# Answers that say "too fast": they lower the slot's learnt rate (contentcrawl.pacing).
RATE_REFUSALS = frozenset({429, 503})
# A zero delay would switch off the downloader's gate that holds a paused slot.
SMALLEST_DELAY = 0.001


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


@dataclass
class SlotBackoff:
    """Backoff state of one download slot."""

    failures: int = 0  # consecutive failures
    resume_at: float = 0.0  # time.monotonic() before which no request of the slot starts
    active: bool = False  # paused: AutoThrottle keeps off the slot's delay until a success


class PoliteRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that pauses the failing request's whole download slot before retrying,
    and lowers the slot's rate when the server says it is too fast.

    A response in ``RETRY_HTTP_CODES`` or an exception in ``RETRY_EXCEPTIONS`` holds every
    request of the slot for ``Retry-After`` seconds (capped at ``RETRY_AFTER_MAX``) or, without
    one, for ``BACKOFF_BASE * 2**(n-1)`` seconds after the slot's n-th consecutive failure
    (capped at ``BACKOFF_MAX``, ± ``BACKOFF_JITTER``); a slot whose ``DOWNLOAD_SLOTS`` entry
    sets ``backoff_max`` never pauses longer than that (image hosts), and a request with a
    ``download_deadline`` fails at once (``DeadlinePassed``) while its slot is paused. A
    429 or 503 also multiplies the slot's rate (``contentcrawl.pacing.AimdRate``, held by
    the downloader) by a factor and each success adds to it again, up to the configured
    limit: after the pause the slot goes on at that rate. A request out of retries sends
    ``contentcrawl.signals.request_gave_up``.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler.settings)
        self.crawler = crawler
        settings = crawler.settings
        self.backoff_base = settings.getfloat("BACKOFF_BASE")
        self.backoff_max = settings.getfloat("BACKOFF_MAX")
        self.backoff_jitter = settings.getfloat("BACKOFF_JITTER")
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX")
        self.slot_backoff_max = {
            key: float(conf["backoff_max"])
            for key, conf in settings.getdict("DOWNLOAD_SLOTS").items()
            if "backoff_max" in conf
        }
        self.backoffs: dict[str, SlotBackoff] = {}
        self.retry_logger = _RedactingLogger(logger, {})

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PoliteRetryMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        backoff = self.backoffs.get(self._slot_key(request))
        if backoff is None or not backoff.active:
            return
        if DOWNLOAD_DEADLINE in request.meta and time.monotonic() < backoff.resume_at:
            # Something waits for it only until its deadline (an image, its record): while
            # the slot is paused for failing, it would wait only to fail again.
            raise DeadlinePassed(request)
        request.meta["autothrottle_dont_adjust_delay"] = True

    def process_response(self, request: Request, response: Response) -> Request | Response:
        if response.status in RATE_REFUSALS:
            self._refused(request)
        if response.status not in self.retry_http_codes:
            self._succeeded(request)
            return response
        reason = str(response.status)
        self._failed(request, reason, parse_retry_after(response.headers.get("Retry-After")))
        if request.meta.get("dont_retry", False):
            return response
        retry = self._retry_or_give_up(request, response_status_message(response.status), reason)
        return retry or response

    def process_exception(self, request: Request, exception: Exception) -> Request | None:
        if not isinstance(exception, self.exceptions_to_retry):
            return None
        reason = type(exception).__name__
        self._failed(request, reason, None)
        if request.meta.get("dont_retry", False):
            return None
        return self._retry_or_give_up(request, exception, reason)

    # -- the slot ---------------------------------------------------------------------
    def _slot_key(self, request: Request) -> str:
        # The downloader writes meta["download_slot"] only after process_request.
        return request.meta.get("download_slot") or self.crawler.engine.downloader.get_slot_key(
            request
        )

    def _slot(self, request: Request) -> tuple[str, Slot | None]:
        key = self._slot_key(request)
        return key, self.crawler.engine.downloader.slots.get(key)

    def _rate(self, key: str) -> AimdRate | None:
        # PacedDownloader holds the learnt rates; another downloader has none to update.
        rates = getattr(self.crawler.engine.downloader, "rates", None)
        return None if rates is None else rates.get(key)

    def _backoff_wait(self, failures: int) -> float:
        wait = min(self.backoff_max, self.backoff_base * 2 ** max(0, failures - 1))
        return wait * (1 + random.uniform(-self.backoff_jitter, self.backoff_jitter))  # noqa: S311

    def _longest_pause(self, key: str) -> float:
        return self.slot_backoff_max.get(configured_slot(key), self.retry_after_max)

    def _failed(self, request: Request, reason: str, retry_after: float | None) -> None:
        key, slot = self._slot(request)
        stats = self.crawler.stats
        stats.inc_value(f"retry/{key}/{reason}")
        backoff = self.backoffs.setdefault(key, SlotBackoff())
        now = time.monotonic()
        # A failure that arrives while the slot is paused answers a request sent before
        # the pause: the same overload, so it does not escalate the backoff.
        if now >= backoff.resume_at:
            backoff.failures += 1
        wait = self._backoff_wait(backoff.failures) if retry_after is None else retry_after
        wait = min(wait, self._longest_pause(key))
        imposed = max(0.0, now + wait - max(backoff.resume_at, now))
        if not imposed:
            return
        backoff.resume_at = now + wait
        stats.inc_value(f"retry/{key}/backoff_seconds", round(imposed, 3))
        logger.info(
            "Pausing download slot %r for %.2f s after %s (%d consecutive failures)",
            key,
            wait,
            reason,
            backoff.failures,
        )
        if slot is not None:
            self._hold(slot, backoff)

    def _hold(self, slot: Slot, backoff: SlotBackoff) -> None:
        backoff.active = True
        slot.delay = max(slot.delay, SMALLEST_DELAY)
        # The downloader starts a slot's next request at lastseen + delay (± jitter), see
        # scrapy.core.downloader.Downloader._process_queue: place lastseen so that even the
        # shortest jittered delay ends at resume_at.
        shortest = slot.delay * max(0.0, 1.0 - slot.jitter)
        slot.lastseen = max(slot.lastseen, backoff.resume_at - shortest)
        # Requests already queued in the slot went through process_request before the
        # pause; AutoThrottle must not lower the delay on their responses either.
        for queued in slot.active:
            queued.meta["autothrottle_dont_adjust_delay"] = True

    def _refused(self, request: Request) -> None:
        key, slot = self._slot(request)
        rate = self._rate(key)
        if rate is None:
            return
        now = time.monotonic()
        # download_latency: seconds from the request's start to its answer.
        sent_at = now - request.meta.get("download_latency", 0.0)
        if not rate.refused(sent_at, now):
            return
        logger.info("Download slot %r refused: its rate falls to %.2f requests/s", key, rate.rate)
        if slot is not None:
            slot.delay = max(slot.delay, rate.delay)

    def _succeeded(self, request: Request) -> None:
        key, slot = self._slot(request)
        backoff = self.backoffs.get(key)
        paused = backoff is not None and backoff.active
        rate = self._rate(key)
        if rate is not None:
            previous = rate.delay
            # Only a delay nobody else raised follows the rate down (SlotAutoThrottle brings
            # a raised one down to the rate's delay by itself), and never during a pause:
            # the downloader's gate that holds it is placed for the delay it had then.
            if rate.succeeded() and slot is not None and not paused and slot.delay <= previous:
                slot.delay = rate.delay
        # A success that arrives during the pause was sent before it: it says nothing yet.
        if backoff is None or time.monotonic() < backoff.resume_at:
            return
        backoff.failures = 0
        if paused:
            backoff.active = False
            logger.info("Download slot %r resumed", key)

    # -- retry or give up -------------------------------------------------------------
    def _retry_or_give_up(
        self, request: Request, retry_reason: str | Exception, reason: str
    ) -> Request | None:
        spider = self.crawler.spider
        retry = get_retry_request(
            request,
            spider=spider,
            reason=retry_reason,
            max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
            logger=self.retry_logger,  # an adapter: get_retry_request only calls debug and log
            give_up_log_level=request.meta.get("give_up_log_level", self.give_up_log_level),
        )
        if retry is not None:
            return retry
        key = self._slot_key(request)
        self.crawler.stats.inc_value(f"retry/{key}/gave_up")
        self.crawler.signals.send_catch_log(
            signal=request_gave_up,
            request=request,
            reason=reason,
            attempts=request.meta.get("retry_times", 0) + 1,
            spider=spider,
        )
        return None


class _RedactingLogger(logging.LoggerAdapter):
    """Passes get_retry_request's log lines on with request URLs and reasons redacted."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs  # keep the caller's extra={"spider": ...}

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().log(level, msg, *(_redacted(arg) for arg in args), **kwargs)


def _redacted(arg: Any) -> Any:
    if isinstance(arg, dict):
        return {name: _redacted(value) for name, value in arg.items()}
    if isinstance(arg, Request):
        return f"<{arg.method} {redact_url(arg.url)}>"
    if isinstance(arg, BaseException):
        # Timeouts name the URL in their message ("Getting <url> took longer than ...").
        return redact_text(f"{type(arg).__name__}: {arg}")
    if isinstance(arg, str):
        return redact_text(arg)
    return arg
