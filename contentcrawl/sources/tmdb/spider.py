"""TMDB's base spider: modes, detail requests, paging, seasons and answers to them."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from scrapy.exceptions import CloseSpider

from contentcrawl.batches import DeletionMark
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.failures import ReplaysFailures
from contentcrawl.items import ContentItem, Json, SeriesItem
from contentcrawl.middlewares.tmdb_auth import CredentialsRejected, tmdb_credentials_configured
from contentcrawl.redaction import redact_url
from contentcrawl.sources.base import (
    FLAG,
    NON_NEGATIVE,
    NUMBER,
    Argument,
    ContentSpider,
    choice,
    subset,
)
from contentcrawl.sources.tmdb.answers import AnswerReader, failure_reason
from contentcrawl.sources.tmdb.exports import ExportReader
from contentcrawl.sources.tmdb.listings import (
    MAX_LIST_PAGE,
    Extractor,
    changes_key,
    list_key,
    listed_total,
    next_page,
    parse_ids,
    parse_list_pages,
    read_ids_file,
)
from contentcrawl.sources.tmdb.mappers import (
    FILTERABLE,
    add_episodes,
    filter_reason,
    is_tmdb_id,
    record_filters,
    season_number,
)
from contentcrawl.sources.tmdb.plans import Backlog, ProgressLine, StartPlanner

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure

# append_to_response takes at most 20 parts (seasons count as parts).
MAX_APPEND_PARTS = 20
MODES = ("export", "changes", "lists", "ids", "refresh", "missing", "failed")


class TmdbSpider(ReplaysFailures, ContentSpider):
    """Base of the TMDB spiders: one kind of record, six ways to find its ids.

    Each mode (``-a mode=``, see ``StartPlanner``) ends in one detail request per record
    with ``append_to_response``.

    Subclasses (``contentcrawl/spiders/tmdb_<kind>.py``) set ``name``, ``item_class``,
    ``api_kind`` (the path segment of the detail endpoint), ``export_prefix``, ``mapper`` and
    optionally ``append_to_response``, ``has_adult_export``, ``has_changes``, ``list_paths``,
    ``references`` (pairs of a collection and a function listing the ids of this kind a
    stored document of that collection references) and ``export_has_records`` (the export
    line is the whole record).
    """

    slot = "tmdb"
    item_class: ClassVar[type[ContentItem]]
    api_kind: ClassVar[str]
    export_prefix: ClassVar[str]
    append_to_response: ClassVar[tuple[str, ...]] = ()
    has_adult_export: ClassVar[bool] = False
    has_changes: ClassVar[bool] = False
    list_paths: ClassVar[tuple[str, ...]] = ()
    references: ClassVar[tuple[tuple[str, Extractor], ...]] = ()
    export_has_records: ClassVar[bool] = False

    spider_arguments: ClassVar[dict[str, Argument]] = {
        "mode": choice(*MODES),
        "ids": Argument(parse_ids, "TMDB ids (positive whole numbers), comma-separated"),
        "ids_file": Argument(read_ids_file, "a readable file of TMDB ids, one a line"),
        "include_adult": FLAG,
        "include_video": FLAG,
        "min_popularity": NUMBER,
        "older_than_days": NON_NEGATIVE,
        "pages": Argument(parse_list_pages, f"a whole number from 1 to {MAX_LIST_PAGE}"),
        "min_budget": NON_NEGATIVE,
        "min_revenue": NON_NEGATIVE,
        "require": subset(*sorted(FILTERABLE)),
    }

    @staticmethod
    @abstractmethod
    def mapper(payload: Json, image_base: str, misshapen: list[str]) -> ContentItem:
        """A payload as this kind's item, misshapen fields named in ``misshapen`` (map_movie)."""
        raise NotImplementedError

    @classmethod
    def check_arguments(cls, options: dict[str, Any]) -> None:
        mode = options.get("mode")
        if mode == "changes" and not cls.has_changes:
            cls.refuse("mode", mode, f"{cls.name} has no TMDB changes feed: use mode=export")
        if mode == "lists" and not cls.list_paths:
            cls.refuse("mode", mode, f"{cls.name} has no TMDB lists: use mode=export")
        if mode == "missing" and not cls.references:
            cls.refuse("mode", mode, f"{cls.name} is referenced by no other kind")
        if mode == "ids" and not (options.get("ids") or options.get("ids_file")):
            cls.refuse("mode", mode, "mode=ids needs -a ids=550,551 or -a ids_file=path")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.options
        self.ids = [*options.get("ids", []), *options.get("ids_file", [])]
        default_mode = "ids" if self.ids else ("changes" if self.has_changes else "export")
        self.mode = options.get("mode", default_mode)
        self.include_adult = options.get("include_adult", False)
        self.include_video = options.get("include_video", False)
        self.episodes = options.get("episodes", False)
        self.min_popularity: float | None = options.get("min_popularity")
        self.older_than_days: int | None = options.get("older_than_days")
        self.list_pages: int | None = options.get("pages")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider._take_settings(crawler)
        return spider

    def _take_settings(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.api_url = settings.get("TMDB_API_URL").rstrip("/")
        self.exports_url = settings.get("TMDB_EXPORTS_URL").rstrip("/")
        self.image_base = settings.get("TMDB_IMAGE_URL")
        self.language = settings.get("TMDB_LANGUAGE") or "en-US"
        self.changes_max_age = settings.getint("TMDB_CHANGES_MAX_AGE_DAYS")
        self.backlog = Backlog(max(1, settings.getint("TMDB_START_BACKLOG")))
        if self.list_pages is None:
            self.list_pages = settings.getint("TMDB_LIST_PAGES")
        self.list_pages = max(1, min(self.list_pages, MAX_LIST_PAGE))
        if self.older_than_days is None:
            self.older_than_days = settings.getint("TMDB_REFRESH_DAYS")
        self.filters = record_filters(settings, self.options)
        self.stat_prefix = f"tmdb/{self.item_class.collection}"
        collection = self.item_class.collection
        self.progress = ProgressLine(
            self.logger, collection, settings.getfloat("TMDB_PROGRESS_INTERVAL")
        )
        self.export = ExportReader(
            crawler,
            self.logger,
            stat_prefix=self.stat_prefix,
            exports_url=self.exports_url,
            prefix=self.export_prefix,
            has_adult_export=self.has_adult_export,
            include_adult=self.include_adult,
            include_video=self.include_video,
            min_popularity=self.min_popularity,
            limit=self.limit,
        )
        self.answers = AnswerReader(
            crawler, self.logger, stat_prefix=self.stat_prefix, api_kind=self.api_kind
        )
        self.planner = StartPlanner(self)

    # -- start ------------------------------------------------------------------------------
    @property
    def needs_credentials(self) -> bool:
        """False for an export whose lines are the records: the public export file is all
        the run reads, and no API request is made."""
        return not (self.mode == "export" and self.export_has_records)

    async def start(self) -> AsyncIterator[Any]:
        if self.needs_credentials and not tmdb_credentials_configured(self.settings):
            self.logger.error(
                "No TMDB credentials: set TMDB_READ_ACCESS_TOKEN (preferred) or TMDB_API_KEY "
                "in .env or the environment"
            )
            raise CloseSpider("tmdb_no_credentials")
        sync = self.crawler.get_extension(SyncState)
        if sync is None:
            raise RuntimeError(
                "the TMDB spiders keep their sync cursors with "
                "contentcrawl.extensions.sync_state.SyncState: enable it in EXTENSIONS"
            )
        self.sync = sync
        # Ids asked for by the stopped run this one resumes (JOBDIR) too: a changes window
        # lists again ids an earlier window had.
        self.planner.queued = self.resumed("tmdb_queued", self.planner.queued)
        self.logger.info(
            "%s: mode=%s api=%s exports=%s language=%s auth=%s include_adult=%s limit=%s "
            "filters=%s",
            self.name,
            self.mode,
            redact_url(self.api_url),
            redact_url(self.exports_url),
            self.language,
            (
                "bearer"
                if self.settings.get("TMDB_READ_ACCESS_TOKEN")
                else "api_key"
                if self.settings.get("TMDB_API_KEY")
                else "none"
            ),
            self.include_adult,
            self.limit,
            self.filters if self.filters.active else "none",
        )
        async for request_or_item in self.read_source(self.distributed_source()):
            yield request_or_item

    # -- distributed runs (contentcrawl.extensions.distributed.DistributedSpider) -----------
    @property
    def distributed_collection(self) -> str:
        return self.item_class.collection

    def distributed_source(self) -> AsyncIterator[Any]:
        """The requests (and items) this run's mode finds its ids with."""
        return self.planner.source()

    def distributed_key(self, request_or_item: Any) -> str | None:
        """The TMDB id of a detail request or a record, a changes or list page's own key."""
        if isinstance(request_or_item, ContentItem):
            return str(getattr(request_or_item, self.item_class.key_field))
        callback = getattr(request_or_item, "callback", None)
        arguments = getattr(request_or_item, "cb_kwargs", {})
        if callback == self.parse_record:
            return str(arguments["tmdb_id"])
        if callback == self.parse_changes:
            return changes_key(arguments["start"], arguments["end"], arguments["page"])
        if callback == self.parse_list:
            return list_key(arguments["path"], arguments["page"])
        return None

    def distributed_request(self, key: str) -> Request:
        """The request ``key`` stands for, past the dupefilter (the reconcile's second try)."""
        kind, _, rest = key.partition(":")
        if kind == "changes":
            start, end, page = rest.split(":")
            request = self.changes_request(
                date.fromisoformat(start), date.fromisoformat(end), int(page)
            )
            return request.replace(dont_filter=True)
        if kind == "list":
            page, _, path = rest.partition(":")
            return self.list_request(path, int(page)).replace(dont_filter=True)
        return self.record_request(int(key), dont_filter=True)

    def changes_request(self, start: date, end: date, page: int) -> Request:
        """Page ``page`` of the changes from ``start`` to ``end``."""
        params = {"start_date": start.isoformat(), "end_date": end.isoformat(), "page": page}
        return self._api_request(
            f"{self.api_kind}/changes",
            params,
            callback=self.parse_changes,
            errback=self.errback_listing,
            cb_kwargs={"start": start, "end": end, "page": page},
        )

    def parse_changes(self, response: Response, start: date, end: date, page: int) -> Iterator[Any]:
        """One page of changed ids: their detail requests, then the next page."""
        payload = self.answers.payload(response)
        if payload is None:
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/changes/pages")
        ids = []
        for entry, tmdb_id in self.answers.listed(payload, "changes"):
            # TMDB sends "adult": null on some entries: only true means adult.
            if entry.get("adult") and not self.include_adult:
                self.crawler.stats.inc_value(f"{self.stat_prefix}/changes/skipped_adult")
                continue
            ids.append(tmdb_id)
        found = list(self.planner.detail_requests_now(ids))
        following = next_page(payload, page)
        if following is not None and not self.planner.limit_reached():
            found.append(self.changes_request(start, end, following))
        self.account_for_page(
            changes_key(start, end, page), [self.distributed_key(request) for request in found]
        )
        yield from found

    def list_request(self, path: str, page: int) -> Request:
        """Page ``page`` of the list at ``path``."""
        return self._api_request(
            path,
            {"language": self.language, "page": page},
            callback=self.parse_list,
            errback=self.errback_listing,
            cb_kwargs={"path": path, "page": page},
        )

    def parse_list(self, response: Response, path: str, page: int) -> Iterator[Any]:
        """One page of a popular / new / trending list: detail requests, then the next page."""
        payload = self.answers.payload(response)
        if payload is None:
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/lists/pages")
        ids = [tmdb_id for _, tmdb_id in self.answers.listed(payload, "lists")]
        found = list(self.planner.detail_requests_now(ids))
        # Lists have truthful totals and 20 results per page.
        assert self.list_pages is not None  # from_crawler settles it
        if (
            page < min(listed_total(payload.get("total_pages")), self.list_pages)
            and not self.planner.limit_reached()
        ):
            found.append(self.list_request(path, page + 1))
        self.account_for_page(
            list_key(path, page), [self.distributed_key(request) for request in found]
        )
        yield from found

    # -- requests -------------------------------------------------------------------------
    def record_request(self, tmdb_id: int, **kwargs: Any) -> Request:
        """The detail request of ``tmdb_id`` (``kwargs`` go to the ``Request``)."""
        params: dict[str, Any] = {"language": self.language}
        if self.append_to_response:
            params["append_to_response"] = ",".join(self.append_to_response)
        return self._api_request(
            f"{self.api_kind}/{tmdb_id}",
            params,
            callback=self.parse_record,
            errback=self.errback_record,
            cb_kwargs={"tmdb_id": tmdb_id},
            # Records before further listing pages: the scheduler holds one page of ids at a
            # time, not a whole 14-day window of changes.
            priority=1,
            **kwargs,
        )

    def _api_request(self, path: str, params: dict[str, Any], **kwargs: Any) -> Request:
        meta = {"handle_httpstatus_list": [401, 404]}
        # Alone, a worker de-duplicates ids itself (the dupefilter would only hold a million
        # fingerprints); distributed, the shared Redis dupefilter does it across workers.
        kwargs.setdefault("dont_filter", self.distributed is None)
        return self.request(f"{self.api_url}/{path}?{urlencode(params)}", meta=meta, **kwargs)

    def parse_record(self, response: Response, tmdb_id: int) -> Iterator[Any]:
        """A detail response: the record's item (or, for a 404, its deletion mark)."""
        try:
            if response.status == 404:
                yield self._gone(tmdb_id)
                return
            payload = self.answers.payload(response, tmdb_id)
            if payload is None:
                return
            misshapen: list[str] = []
            try:
                item = self.to_item(payload, misshapen)
            except (KeyError, TypeError, ValueError) as error:
                self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
                self.logger.warning("Unusable %s %s payload (%s)", self.api_kind, tmdb_id, error)
                return
            self.count_misshapen(tmdb_id, misshapen)
            if self.episodes and isinstance(item, SeriesItem) and item.seasons:
                yield from self._season_requests(item, 0)
                return
            yield from self._emit(item)
        finally:
            self.backlog.answered(response.request)

    def _season_requests(self, item: SeriesItem, first: int) -> Iterator[Any]:
        numbers = [season_number(season) for season in item.seasons]
        chunk = [n for n in numbers if n is not None][first : first + MAX_APPEND_PARTS]
        # A record without a usable id gets no request built on it (validation drops it).
        if not chunk or not is_tmdb_id(item.tmdb_id):
            yield from self._emit(item)
            return
        yield self._api_request(
            f"{self.api_kind}/{item.tmdb_id}",
            {
                "language": self.language,
                "append_to_response": ",".join(f"season/{n}" for n in chunk),
            },
            callback=self.parse_seasons,
            errback=self.errback_record,
            cb_kwargs={"tmdb_id": item.tmdb_id, "item": item, "first": first},
        )

    def parse_seasons(
        self, response: Response, tmdb_id: int, item: SeriesItem, first: int
    ) -> Iterator[Any]:
        """Episodes of up to 20 seasons of a series (``-a episodes=1``)."""
        if response.status == 404:
            yield self._gone(tmdb_id)
            return
        payload = self.answers.payload(response, tmdb_id)
        if payload is None:
            return
        misshapen: list[str] = []
        add_episodes(item.seasons, payload, misshapen)
        self.count_misshapen(tmdb_id, misshapen)
        self.crawler.stats.inc_value(f"{self.stat_prefix}/season_pages")
        yield from self._season_requests(item, first + MAX_APPEND_PARTS)

    def to_item(self, payload: Json, misshapen: list[str]) -> ContentItem:
        """The item of a detail payload or export line (``mapper``)."""
        return self.mapper(payload, self.image_base, misshapen)

    def count_misshapen(self, tmdb_id: int, misshapen: list[str]) -> None:
        """A record kept with fields left empty for having the wrong type: counted, logged."""
        if not misshapen:
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/misshapen")
        self.logger.warning(
            "TMDB %s %s: %s of the wrong type, left empty",
            self.api_kind,
            tmdb_id,
            ", ".join(misshapen),
        )

    def _emit(self, item: ContentItem) -> Iterator[ContentItem]:
        reason = filter_reason(item, self.filters)
        if reason is not None:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/filtered/{reason}")
            self.settle_key(str(getattr(item, item.key_field)))
            return
        self.progress.record_done()
        yield item

    def _gone(self, tmdb_id: int) -> DeletionMark:
        """A record's 404: TMDB deleted or merged it, counted as not found; the store flags
        the record it holds, if any (its ``DeletionMark``)."""
        self.crawler.stats.inc_value(f"{self.stat_prefix}/not_found")
        self.logger.debug("%s %s not found (deleted or merged)", self.api_kind, tmdb_id)
        self.settle_key(str(tmdb_id))
        return DeletionMark(self.item_class.source, self.item_class.collection, tmdb_id)

    def errback_record(self, failure: Failure) -> None:
        """A detail request that failed for good (after retries): counted, logged."""
        request = failure.request  # type: ignore[attr-defined]  # Scrapy sets it for errbacks
        self.backlog.answered(request)
        if failure.check(CredentialsRejected):
            # Unsent after the 401 that closes the spider, which logged it: still pending.
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
        self.logger.error(
            "Gave up on %s %s: %s",
            self.api_kind,
            request.cb_kwargs.get("tmdb_id"),
            failure_reason(failure),
        )

    def errback_listing(self, failure: Failure) -> None:
        """A changes or list page that failed for good: counted, logged (sync not advanced)."""
        if failure.check(CredentialsRejected):
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
        self.logger.error(
            "Gave up on a TMDB listing page %s: %s",
            redact_url(failure.request.url),  # type: ignore[attr-defined]  # set for errbacks
            failure_reason(failure),
        )
