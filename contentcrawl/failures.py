"""Dead letters: what a request out of retries leaves in the store, and replaying it.

``contentcrawl.extensions.runs.RunRecorder`` turns every ``request_gave_up`` signal of a
spider's own request into a failure record (``dead_letter_for``) kept in the store's
``failures`` collection. A source spider that mixes in ``ReplaysFailures`` and sends
``-a mode=failed`` to ``self.replay_failures()`` re-requests them; the recorder clears
each one whose replay is answered (any status but a retryable one: a 404 means the record
is gone, which is an answer too).

A failure record holds what the request needs to be made again, minus every secret: the
URL without credential parameters, the method, a text body, the callback and errback
names, JSON-able ``cb_kwargs`` and a few meta keys. Authentication is added again on the
way out by the source's own middleware. A spider whose requests cannot be rebuilt that way
overrides ``requests_for_failures``.

The recorder (an extension) and the spiders both use this module, so it belongs to neither
room: it imports only the crawl's store (``CrawlStore``) and the store and redaction helpers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scrapy import Request, Spider

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.redaction import SECRET_PARAMS, redact_text
from contentcrawl.store.base import utc_now

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.utils.log import SpiderLoggerAdapter

# The meta key a replayed request carries: the key of the failure it answers for.
REPLAY_META = "dead_letter"
# Meta keys worth keeping for a replay; the rest is per-download state (retry counts,
# latency, proxies) or a source's bookkeeping that a fresh request must not inherit.
REPLAYED_META = (
    # The record a request is for when its callback arguments don't say (a browse page):
    # a replay that fails again is the same dead letter, not a second one.
    "record_id",
    "download_slot",
    "handle_httpstatus_list",
    "handle_httpstatus_all",
    "dont_redirect",
)
# Headers a rebuilt request needs; credentials are never among them.
REPLAYED_HEADERS = ("Content-Type", "Accept")


def strip_secrets(url: str) -> str:
    """``url`` with credential query parameters and a userinfo password removed, not masked.

    A masked ``api_key=***`` would be sent as is on replay (auth middlewares never replace
    a credential the caller set); removed, the source's middleware adds the real one.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
    query = urlencode(
        [
            (name, value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
            if name.lower() not in SECRET_PARAMS
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def record_id_of(request: Request, spider: Spider) -> Any:
    """The id of the record a request fetches: ``meta["record_id"]`` or its key-field kwarg."""
    if "record_id" in request.meta:
        return request.meta["record_id"]
    item_class = getattr(spider, "item_class", None)
    key_field = getattr(item_class, "key_field", None)
    if key_field is not None:
        return request.cb_kwargs.get(key_field)
    return None


def _method_name(spider: Spider, function: Any) -> str | None:
    """The name of a spider method used as a callback, None for anything else."""
    if function is None:
        return "parse"
    if getattr(function, "__self__", None) is spider:
        return function.__name__
    return None


def _json_or_none(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def replayable(request: Request, spider: Spider) -> dict[str, Any] | None:
    """What rebuilding ``request`` needs, secrets removed; None if it cannot be rebuilt."""
    callback = _method_name(spider, request.callback)
    errback = _method_name(spider, request.errback) if request.errback else None
    cb_kwargs = _json_or_none(request.cb_kwargs)
    if callback is None or (request.errback and errback is None) or cb_kwargs is None:
        return None
    try:
        body = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    meta = {name: request.meta[name] for name in REPLAYED_META if name in request.meta}
    headers = {
        name: value.decode("latin-1")
        for name in REPLAYED_HEADERS
        if (value := request.headers.get(name)) is not None
    }
    return {
        "url": strip_secrets(request.url),
        "method": request.method,
        "body": redact_text(body),
        "headers": headers,
        "callback": callback,
        "errback": errback,
        "cb_kwargs": cb_kwargs,
        "meta": _json_or_none(meta) or {},
        "priority": request.priority,
    }


def dead_letter_for(request: Request, *, reason: str, attempts: int, spider: Spider) -> dict:
    """The failure record of a request out of retries (for ``Store.put_failure``)."""
    item_class = getattr(spider, "item_class", None)
    record_id = record_id_of(request, spider)
    url = strip_secrets(request.url)
    if record_id is not None:
        key = f"{spider.name}:{record_id}"
    else:
        # No record id (a listing page): the request itself is the identity.
        body = redact_text(request.body.decode("utf-8", "replace"))
        identity = f"{request.method} {url} {body}".encode()
        digest = hashlib.blake2b(identity, digest_size=8).hexdigest()
        key = f"{spider.name}:request:{digest}"
    return {
        "key": key,
        "spider": spider.name,
        "source": getattr(item_class, "source", None) or getattr(spider, "slot", None),
        "kind": getattr(item_class, "collection", None),
        "id": _json_or_none(record_id),
        "url": url,
        "error": redact_text(reason),
        "attempts": attempts,
        "last_try": utc_now(),
        "request": replayable(request, spider),
    }


def request_from_dead_letter(failure: dict[str, Any], spider: Spider) -> Request | None:
    """The request a failure record describes, marked as its replay; None if not replayable."""
    stored = failure.get("request")
    if not stored:
        return None
    callback = getattr(spider, stored["callback"], None)
    errback = getattr(spider, stored["errback"], None) if stored.get("errback") else None
    if callback is None or (stored.get("errback") and errback is None):
        return None
    meta = {**stored.get("meta", {}), REPLAY_META: failure["key"]}
    return Request(
        stored["url"],
        method=stored.get("method", "GET"),
        body=stored.get("body") or None,
        headers=stored.get("headers") or None,
        callback=callback,
        errback=errback,
        cb_kwargs=stored.get("cb_kwargs") or {},
        meta=meta,
        priority=stored.get("priority", 0),
        dont_filter=True,
    )


class ReplaysFailures:
    """Spider mixin: ``replay_failures()`` re-requests the spider's pending dead letters.

    A source base spider lists it before ``ContentSpider`` and, for ``-a mode=failed``,
    yields from ``self.replay_failures()`` in ``start()``. Override
    ``requests_for_failures`` when stored requests cannot simply be rebuilt (a source
    whose URLs embed a date, or that should batch ids into one request).
    """

    name: str
    crawler: Crawler
    logger: SpiderLoggerAdapter
    # Dead letters replayed per run at most (the rest wait for the next replay).
    replay_limit: ClassVar[int | None] = None

    async def replay_failures(self) -> AsyncIterator[Request]:
        """The requests replaying this spider's pending failures."""
        limit = self.crawler.settings.getint("FAILURES_REPLAY_LIMIT") or self.replay_limit
        failures = await crawl_store(self.crawler).run(
            lambda store: store.pending_failures(self.name, limit)
        )
        self.logger.info("Replaying %d failed requests of %s", len(failures), self.name)
        self.crawler.stats.set_value("failures/replay/pending", len(failures))
        for request in self.requests_for_failures(failures):
            yield request

    def requests_for_failures(self, failures: Iterable[dict[str, Any]]) -> Iterable[Request]:
        """Requests for failure records; each carries ``meta["dead_letter"]`` (its key)."""
        spider = cast("Spider", self)
        for failure in failures:
            request = request_from_dead_letter(failure, spider)
            if request is None:
                self.crawler.stats.inc_value("failures/replay/not_replayable")
                self.logger.warning(
                    "Failure %s cannot be replayed: no stored request", failure["key"]
                )
                continue
            self.crawler.stats.inc_value("failures/replay/requested")
            yield request
