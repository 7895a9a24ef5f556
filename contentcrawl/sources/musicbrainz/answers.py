"""MusicBrainz ws/2 answers checked for the spider: pages, looked-up entities, lost requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError

from contentcrawl.items import Json
from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.sources.musicbrainz.mappers import is_mbid, whole_number
from contentcrawl.sources.musicbrainz.queries import body_start, error_message, json_object

if TYPE_CHECKING:
    import logging

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure


class AnswerChecks:
    """What the spider's callbacks make of ws/2's answers: an answer they cannot use loses
    its request, counted as ``musicbrainz/requests/failed`` and logged with its URL redacted."""

    def __init__(
        self, crawler: Crawler, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> None:
        # Not crawler.stats yet: the spider builds this in from_crawler, before the crawl
        # has set its stats.
        self.crawler = crawler
        self.logger = logger

    def page(
        self, response: Response, list_key: str, count_key: str, what: str
    ) -> tuple[list[Any], int] | None:
        """A search or browse page's entries and total, or None (counted, logged) if it is not."""
        payload = json_object(response)
        entries = payload.get(list_key) if payload else None
        total = whole_number(payload.get(count_key)) if payload else None
        if not isinstance(entries, list) or total is None:
            self._lost_answer(response, f"not {what}: {body_start(response)!r}")
            return None
        return entries, total

    def entity(self, response: Response, what: str) -> Json | None:
        """A lookup's entity, whose ``id`` is an MBID, or None (counted, logged) if it is not."""
        payload = json_object(response)
        if payload is None or not is_mbid(payload.get("id")):
            self._lost_answer(response, f"not {what}: {body_start(response)!r}")
            return None
        return payload

    def _lost_answer(self, response: Response, detail: str) -> None:
        """The request of an answer that is not what it asked for: lost."""
        # Scrapy sets the request of every response it hands to a callback.
        assert response.request is not None
        self.lost(response.request, detail)

    def lost(self, request: Request, detail: str) -> None:
        """A request that got no usable answer: counted, logged."""
        self.crawler.stats.inc_value("musicbrainz/requests/failed")
        self.logger.error(
            "MusicBrainz request lost: GET %s: %s", redact_url(request.url), redact_text(detail)
        )


def failure_detail(failure: Failure) -> str:
    """Why a request got no answer, for a log line: ws/2's error, not sent, or the exception."""
    if isinstance(failure.value, HttpError):
        response = failure.value.response
        return f"HTTP {response.status}: {error_message(response)}"
    if isinstance(failure.value, IgnoreRequest):
        return f"not sent ({failure.value})"
    return f"{type(failure.value).__name__}: {failure.value}"
