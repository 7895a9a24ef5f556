"""The IGDB base spider: the probe, parallel id-range paging, sync point and replays."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from contentcrawl.extensions.distributed import cap_worker_requests
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.failures import ReplaysFailures
from contentcrawl.items import ContentItem
from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.sources.base import Argument, ContentSpider, choice
from contentcrawl.sources.igdb.mappers import (
    DEFAULT_IMAGE_URL,
    Json,
    unexpanded_fields,
    valid_id,
)
from contentcrawl.sources.igdb.queries import (
    MAX_PAGE_SIZE,
    apicalypse,
    count_query,
    multiquery,
    page_key,
    plan_ranges,
    probe_key,
)

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

DEFAULT_API_URL = "https://api.igdb.com/v4"
MODES = ("full", "incremental", "failed")
# Items handed to the pipelines between two returns to the event loop (see parse_page).
ITEMS_PER_TURN = 5


class IgdbSpider(ReplaysFailures, ContentSpider):
    """Pages one IGDB endpoint by parallel id ranges, in full or incremental mode.

    Spider arguments: ``mode`` (``full`` or ``incremental``; by default incremental once a
    clean run has been recorded, full before), ``limit`` (stop after that many records; a
    limited run never moves the sync point).
    """

    slot = "igdb"
    endpoint: ClassVar[str]
    # The store collection of to_item's records.
    collection: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    expanded_fields: ClassVar[tuple[str, ...]] = ()
    spider_arguments: ClassVar[dict[str, Argument]] = {"mode": choice(*MODES)}
    # Read from the settings by from_crawler.
    api_url: str
    image_base_url: str
    page_size: int
    max_ranges: int
    sync_overlap: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode: str | None = self.options.get("mode")
        self.emitted = 0
        # The next incremental run reads what changed after this moment.
        self.started_at = int(time.time())
        self.where: list[str] = []

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        # Cover downloads take downloader room too (contentcrawl.pipelines.images).
        images = (f"{cls.slot}_images",) if settings.getbool("IMAGES_ENABLED") else ()
        cap_worker_requests(settings, cls.slot, *images)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.api_url = (settings.get("IGDB_API_URL") or DEFAULT_API_URL).rstrip("/")
        spider.image_base_url = settings.get("IGDB_IMAGE_URL") or DEFAULT_IMAGE_URL
        spider.page_size = max(1, min(MAX_PAGE_SIZE, settings.getint("IGDB_PAGE_SIZE")))
        spider.max_ranges = max(1, settings.getint("IGDB_PARALLEL_RANGES"))
        spider.sync_overlap = max(0, settings.getint("IGDB_SYNC_OVERLAP"))
        return spider

    @property
    def state_name(self) -> str:
        """Name of this spider's sync point in the store."""
        return f"{self.name}/sync"

    def to_item(self, payload: Mapping[str, Any]) -> ContentItem:
        """The item for one record of ``endpoint`` (it has a valid ``id``)."""
        raise NotImplementedError

    # -- crawl ----------------------------------------------------------------------
    async def start(self) -> AsyncIterator[Request]:
        sync = self.crawler.get_extension(SyncState)
        if sync is None:
            raise RuntimeError(f"{self.name} needs the SyncState extension (EXTENSIONS)")
        self.sync = sync
        sync_point = await sync.load(self.state_name)
        synced_at = sync_point.get("synced_at") if sync_point else None
        mode = self.mode or ("incremental" if synced_at is not None else "full")
        if mode == "incremental" and synced_at is None:
            self.logger.warning(
                "No clean %s run recorded yet: incremental mode reads everything", self.name
            )
        if mode == "incremental" and synced_at is not None:
            self.where = [f"updated_at > {int(synced_at) - self.sync_overlap}"]
        self.mode = mode
        self.logger.info(
            "IGDB %s: mode=%s api=%s %s page_size=%d parallel_ranges=%d limit=%s%s",
            self.endpoint,
            mode,
            redact_url(self.api_url),
            self.where[0] if self.where else "all records",
            self.page_size,
            self.max_ranges,
            self.limit,
            " distributed" if self.distributed is not None else "",
        )
        # Distributed, one worker probes and plans the ranges; all page from the shared queue.
        async for request in self.read_source(self.distributed_source()):
            yield request

    # -- distributed runs (contentcrawl.extensions.distributed.DistributedSpider) -----------
    @property
    def distributed_collection(self) -> str:
        return self.collection

    async def distributed_source(self) -> AsyncIterator[Request]:
        """The probe, which plans the id ranges; the worker that sends it owns the sync point.
        In ``failed`` mode the requests kept as dead letters instead (no sync point)."""
        if self.mode == "failed":
            async for request in self.replay_failures():
                yield request
            return
        # Resuming a stopped run (JOBDIR), pages that run read are not read again: the sync
        # point stays its start, or the next incremental run would miss what changed since.
        self.started_at = self.resumed("igdb_started_at", self.started_at)
        # Saved by SyncState only if the run ends cleanly; a limited run reads a sample only.
        if self.limit is None:
            self.sync.stage(self.state_name, {"synced_at": self.started_at, "mode": self.mode})
        yield self.probe_request(self.where)

    def distributed_key(self, request_or_item: Any) -> str | None:
        """A game's id, or the probe's or a page's key; None for anything else."""
        if isinstance(request_or_item, ContentItem):
            return str(getattr(request_or_item, request_or_item.key_field))
        callback = getattr(request_or_item, "callback", None)
        arguments = getattr(request_or_item, "cb_kwargs", {})
        if callback == self.parse_probe:
            return probe_key(self.endpoint, arguments["where"])
        if callback == self.parse_page:
            return page_key(arguments["after"], arguments["end"], arguments["where"])
        if callback == self.parse_record:
            return str(arguments["record_id"])
        return None

    def distributed_request(self, key: str) -> Request:
        """The request ``key`` stands for, past the dupefilter (the reconcile's second try)."""
        if key.isdigit():
            return self.record_request(int(key))
        head, *where = key.split(";")
        kind, _, bounds = head.partition(":")
        if kind == "probe" and bounds == self.endpoint:
            return self.probe_request(where).replace(dont_filter=True)
        if kind == "range":
            after, _, end = bounds.partition("-")
            return self.page_request(where, int(after), int(end)).replace(dont_filter=True)
        raise ValueError(f"not a key of an {self.name} run: {key!r}")

    def api_request(self, path: str, query: str, **kwargs: Any) -> Request:
        """A POST of an Apicalypse ``query`` to ``<IGDB_API_URL>/<path>`` in the igdb slot."""
        return self.request(
            f"{self.api_url}/{path}",
            method="POST",
            body=query.encode(),
            headers={"Accept": "application/json", "Content-Type": "text/plain"},
            errback=self.page_failed,
            **kwargs,
        )

    def probe_request(self, where: list[str]) -> Request:
        """One multiquery: how many records match and the highest matching id."""
        body = multiquery(
            [
                (f"{self.endpoint}/count", "count", count_query(["id > 0", *where])),
                (
                    self.endpoint,
                    "last",
                    apicalypse(fields=["id"], where=["id > 0", *where], sort="id desc", limit=1),
                ),
            ]
        )
        return self.api_request(
            "multiquery", body, callback=self.parse_probe, cb_kwargs={"where": where}
        )

    def parse_probe(self, response: Response, where: list[str]) -> Iterator[Request]:
        results = _json(response)
        by_name = {
            entry["name"]: entry
            for entry in (results if isinstance(results, list) else [])
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
        }
        count = by_name.get("count", {}).get("count")
        last = by_name.get("last", {}).get("result")
        if not isinstance(count, int) or not isinstance(last, list):
            self._bad_answer(response, f"unexpected multiquery answer: {results!r:.200}")
            return
        high = last[0]["id"] if last and valid_id(last[0]) else 0
        if count and not high:
            self._bad_answer(response, f"{count} records match but no id came back")
            return
        ranges = plan_ranges(0, high, count, self.page_size, self.max_ranges)
        self.crawler.stats.set_value(f"igdb/{self.endpoint}/expected", count)
        self.logger.info(
            "IGDB %s: %d records match, ids up to %d, paged in %d id ranges",
            self.endpoint,
            count,
            high,
            len(ranges),
        )
        self.account_for_page(
            probe_key(self.endpoint, where),
            [page_key(start, end, where) for start, end in ranges],
        )
        for start, end in ranges:
            yield self.page_request(where, start, end)

    def page_request(self, where: list[str], after: int, end: int) -> Request:
        """The page of records with ``after < id <= end`` (and ``where``), by ascending id."""
        query = apicalypse(
            fields=self.fields,
            where=[f"id > {after}", f"id <= {end}", *where],
            sort="id asc",
            limit=self.page_size,
        )
        return self.api_request(
            self.endpoint,
            query,
            callback=self.parse_page,
            cb_kwargs={"where": where, "after": after, "end": end},
        )

    def record_request(self, record_id: int) -> Request:
        """One record by id, past the dupefilter: a distributed run's reconcile asks for a
        record a killed worker had read but not stored."""
        query = apicalypse(fields=self.fields, where=[f"id = {record_id}"], limit=1)
        return self.api_request(
            self.endpoint,
            query,
            callback=self.parse_record,
            cb_kwargs={"record_id": record_id},
            dont_filter=True,
        )

    async def parse_page(
        self, response: Response, where: list[str], after: int, end: int
    ) -> AsyncIterator[ContentItem | Request]:
        records = _json(response)
        if not isinstance(records, list):
            self._bad_answer(response, f"expected a JSON array, got {records!r:.200}")
            return
        self.crawler.stats.inc_value("igdb/pages/fetched")
        valid = self._valid(records)
        if self.limit is not None:
            valid = valid[: max(0, self.limit - self.emitted)]
        self.emitted += len(valid)
        last_id = max((payload["id"] for payload in valid), default=after)
        limit_reached = self.limit is not None and self.emitted >= self.limit
        # A short page is the range's last one (IGDB sends no total with a page).
        more = len(records) >= self.page_size and last_id < end and not limit_reached
        found = [str(payload["id"]) for payload in valid]
        self.account_for_page(
            page_key(after, end, where),
            [*found, page_key(last_id, end, where)] if more else found,
        )
        # The next page goes out before this page's items, so the range keeps a request
        # waiting.
        if more:
            yield self.page_request(where, last_id, end)
        async for item in self._items(valid):
            yield item

    async def parse_record(self, response: Response, record_id: int) -> AsyncIterator[ContentItem]:
        records = _json(response)
        if not isinstance(records, list):
            self._bad_answer(response, f"expected a JSON array, got {records!r:.200}")
            return
        self.crawler.stats.inc_value("igdb/pages/fetched")
        valid = [payload for payload in self._valid(records) if payload["id"] == record_id]
        if not valid:
            # Deleted since the page listed it: nothing to store, nothing to ask again.
            self.crawler.stats.inc_value(f"igdb/{self.endpoint}/not_found")
            self.logger.warning("IGDB %s %d is gone", self.endpoint, record_id)
            self.settle_key(str(record_id))
            return
        async for item in self._items(valid):
            yield item

    def _valid(self, records: list[Any]) -> list[Json]:
        """The records with an id; the others are counted and logged."""
        valid = []
        for payload in records:
            if valid_id(payload):
                valid.append(payload)
            else:
                self.crawler.stats.inc_value(f"igdb/{self.endpoint}/invalid")
                self.logger.warning("Skipping an IGDB record without an id: %.200r", payload)
        return valid

    async def _items(self, records: list[Json]) -> AsyncIterator[ContentItem]:
        for index, payload in enumerate(records, 1):
            missing = unexpanded_fields(payload, self.expanded_fields)
            if missing:
                self.crawler.stats.inc_value(f"igdb/{self.endpoint}/unexpanded")
                self.logger.warning(
                    "IGDB %s %d: %s came back as bare ids, their names are lost",
                    self.endpoint,
                    payload["id"],
                    ", ".join(missing),
                )
            yield self.to_item(payload)
            if index % ITEMS_PER_TURN == 0:
                # Scrapy's item workers run queued items back to back without returning to
                # the event loop; a 500-game page would hold the igdb slot's next request
                # (a timer) for the time all its items take in the pipelines.
                await asyncio.sleep(0)

    def page_failed(self, failure: Failure) -> None:
        """Errback: a page that could not be read is logged and counted, never dropped silently."""
        request = failure.request  # type: ignore[attr-defined]
        if isinstance(failure.value, HttpError):
            response = failure.value.response
            detail = f"HTTP {response.status}: {error_message(response)}"
        elif isinstance(failure.value, IgnoreRequest):
            detail = f"not sent ({failure.value})"
        else:
            detail = f"{type(failure.value).__name__}: {failure.value}"
        self._page_error(request, detail)

    def _bad_answer(self, response: Response, detail: str) -> None:
        # Scrapy sets the request of every response it hands to a callback.
        assert response.request is not None
        self._page_error(response.request, detail)

    def _page_error(self, request: Request, detail: str) -> None:
        self.crawler.stats.inc_value("igdb/pages/failed")
        self.logger.error(
            "IGDB page lost: POST %s [%s]: %s",
            redact_url(request.url),
            (request.body or b"").decode("utf-8", "replace")[:300],
            redact_text(detail),
        )


def _json(response: Response) -> Any:
    try:
        return json.loads(response.body)
    except ValueError:
        return None


def error_message(response: Response) -> str:
    """The cause IGDB gives: a 400 is an array of ``{title, status, cause}``, a 401 an object."""
    body = _json(response)
    if isinstance(body, list):
        causes = [
            f"{entry.get('title')}: {entry.get('cause')}"
            for entry in body
            if isinstance(entry, dict)
        ]
        if causes:
            return "; ".join(causes)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.body[:200].decode("utf-8", "replace") if response.body else "(empty body)"
