"""TMDB's answers read for its spiders: JSON bodies, listed ids, TMDB's own error text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import CloseSpider
from scrapy.http import TextResponse
from scrapy.spidermiddlewares.httperror import HttpError

from contentcrawl.items import Json
from contentcrawl.sources.tmdb.listings import listed_ids

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure

    from contentcrawl.sources.tmdb.plans import Logger


class AnswerReader:
    """What one TMDB spider's callbacks make of an answer: the JSON object of a 200, the
    entries of a listing page with an id; what is unusable is counted under ``stat_prefix``
    and logged, and a 401 closes the spider."""

    def __init__(
        self, crawler: Crawler, logger: Logger, *, stat_prefix: str, api_kind: str
    ) -> None:
        # Not crawler.stats yet: the spider builds this in from_crawler, before the crawl
        # has set its stats.
        self.crawler = crawler
        self.logger = logger
        self.stat_prefix = stat_prefix
        self.api_kind = api_kind
        self.rejected = False

    def payload(self, response: Response, tmdb_id: int | None = None) -> Json | None:
        """The JSON body of a 200; 401 closes the spider, a listing's 404 is a failure (a
        record's 404 never comes here: it is the record's deletion mark)."""
        if response.status == 401:
            self.crawler.stats.inc_value("tmdb/auth/rejected")
            if self.rejected:
                # Requests in flight when the first 401 arrived: already reported.
                raise CloseSpider("tmdb_unauthorized")
            self.rejected = True
            self.logger.error(
                "TMDB rejected the credentials (HTTP 401: %s): check TMDB_READ_ACCESS_TOKEN "
                "or TMDB_API_KEY. Closing.",
                status_message(response),
            )
            raise CloseSpider("tmdb_unauthorized")
        if response.status == 404:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
            self.logger.error("TMDB listing not found: %s", status_message(response))
            return None
        try:
            payload = json_body(response)
        except ValueError:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
            self.logger.warning("TMDB answered non-JSON for %s %s", self.api_kind, tmdb_id)
            return None
        if not isinstance(payload, dict):
            self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
            self.logger.warning("TMDB answered a non-object for %s %s", self.api_kind, tmdb_id)
            return None
        return payload

    def listed(self, payload: Json, listing: str) -> list[tuple[Json, int]]:
        """The entries of a changes or list page with an id; the others counted and logged."""
        listed, unusable = listed_ids(payload)
        for entry in unusable:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/{listing}/invalid")
            self.logger.warning("Skipping a TMDB %s entry without an id: %.200r", listing, entry)
        return listed


def json_body(response: Response) -> Any:
    """The decoded JSON body; ValueError when the body is not even text."""
    if not isinstance(response, TextResponse):
        raise ValueError(f"a {type(response).__name__} is not JSON")
    return response.json()


def status_message(response: Response) -> str:
    """TMDB's own error text, whichever of its error shapes the body has: ``status_message``
    (with ``status_code``, sometimes ``success: false`` or ``failure: true``) or an
    ``errors`` list (422)."""
    try:
        body = json_body(response)
    except ValueError:
        return f"HTTP {response.status}"
    if isinstance(body, dict):
        if "status_message" in body:
            return f"status_code {body.get('status_code')}: {body['status_message']}"
        if body.get("errors"):
            return "; ".join(map(str, body["errors"]))
    return f"HTTP {response.status}"


def failure_reason(failure: Failure) -> str:
    """Why a request failed for good, for a log line: its HTTP status, or the exception."""
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    return f"{type(failure.value).__name__}: {failure.value}"
