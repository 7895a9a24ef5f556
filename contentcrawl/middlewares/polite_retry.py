"""Retries with redacted logs and a give-up signal; the pauses between them are the pacer's."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from scrapy import Request
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.utils.response import response_status_message

from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.signals import request_gave_up

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)


class PoliteRetryMiddleware(RetryMiddleware):
    """RetryMiddleware whose log lines carry no credential, and which says when it gives up.

    A response in ``RETRY_HTTP_CODES`` or an exception in ``RETRY_EXCEPTIONS`` is retried
    as by the stock middleware; the retry waits for its slot's backoff pause, which
    ``contentcrawl.middlewares.pacing.PacingMiddleware`` sets from the same answer. A
    request out of retries counts ``retry/<slot>/gave_up`` and sends
    ``contentcrawl.signals.request_gave_up``.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler.settings)
        self.crawler = crawler
        self.retry_logger = _RedactingLogger(logger, {})

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PoliteRetryMiddleware:
        return cls(crawler)

    # Scrapy 2.14+ calls these without ``spider`` (it passes one only to methods that require
    # it); its own signatures still accept the deprecated argument, hence the ignores.
    def process_response(  # type: ignore[override]
        self, request: Request, response: Response
    ) -> Request | Response:
        if response.status not in self.retry_http_codes or request.meta.get("dont_retry", False):
            return response
        reason = str(response.status)
        retry = self._retry_or_give_up(request, response_status_message(response.status), reason)
        return retry or response

    def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception
    ) -> Request | None:
        if not isinstance(exception, self.exceptions_to_retry):
            return None
        if request.meta.get("dont_retry", False):
            return None
        return self._retry_or_give_up(request, exception, type(exception).__name__)

    # -- retry or give up -------------------------------------------------------------
    def _retry_or_give_up(
        self, request: Request, retry_reason: str | Exception, reason: str
    ) -> Request | None:
        spider = self.crawler.spider
        assert spider is not None  # the downloader only runs while a spider is open
        retry = get_retry_request(
            request,
            spider=spider,
            reason=retry_reason,
            max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
            # An adapter, not the Logger the stub asks for: get_retry_request only calls
            # debug and log, which LoggerAdapter has.
            logger=self.retry_logger,  # type: ignore[arg-type]
            give_up_log_level=request.meta.get("give_up_log_level", self.give_up_log_level),
        )
        if retry is not None:
            return retry
        # The downloader wrote meta["download_slot"] on the way out.
        key = request.meta.get("download_slot") or self.crawler.engine.downloader.get_slot_key(
            request
        )
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
