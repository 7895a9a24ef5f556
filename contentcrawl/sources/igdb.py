"""IGDB (api.igdb.com v4): Apicalypse queries, parallel id-range paging, payload→item mappers.

IGDB answers POSTed Apicalypse queries (``fields …; where …; sort …; limit …;``) with JSON
arrays. Authentication (Twitch app token, ``Client-ID``) is added by
``contentcrawl.middlewares.igdb_oauth.IgdbOAuthMiddleware``, not here.

A crawl starts with one multiquery that asks for the number of matching records and the
highest matching id, splits ``(0, highest id]`` into up to ``IGDB_PARALLEL_RANGES`` id ranges
and pages through each range on its own (``where id > last & id <= end; sort id asc; limit
500``). Several ranges keep several pages waiting in the ``igdb`` download slot, so the
crawl runs at the slot's rate (the account's limit) instead of one page per round trip.

Full mode reads every record; incremental mode reads those with ``updated_at`` newer than
the start of the last clean run (minus ``IGDB_SYNC_OVERLAP`` seconds for clock skew), saved
by the ``SyncState`` extension as ``<spider name>/sync``. ``mode=failed`` replays the pages
and records earlier runs gave up on (``contentcrawl.sources.failures``).

With ``REDIS_URL`` set (``contentcrawl.extensions.distributed``) one worker sends the probe
and every worker pages ranges from the shared queue. The probe and each page are keys of the
run (``probe:games``, ``range:<after>-<end>``, with the run's conditions after ``;``), each
game its id: a page records the games and the next page it found, then settles its own key,
and the reconcile asks again for what a killed worker left (a game by ``where id = N``).

To add an IGDB kind: subclass ``IgdbSpider`` with ``name``, ``endpoint``, ``collection``,
``fields`` and ``to_item``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from contentcrawl.extensions.distributed import cap_worker_requests
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import ContentItem, GameItem
from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.sources.base import Argument, ContentSpider, choice
from contentcrawl.sources.failures import ReplaysFailures

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

Json = dict[str, Any]

DEFAULT_API_URL = "https://api.igdb.com/v4"
DEFAULT_IMAGE_URL = "https://images.igdb.com/igdb/image/upload/t_cover_big"
# IGDB caps ``limit`` at 500 and a multiquery at 10 queries.
MAX_PAGE_SIZE = 500
MODES = ("full", "incremental", "failed")
# Items handed to the pipelines between two returns to the event loop (see parse_page).
ITEMS_PER_TURN = 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- Apicalypse -------------------------------------------------------------------------


def apicalypse(
    *,
    fields: Iterable[str],
    where: Iterable[str] = (),
    sort: str | None = None,
    limit: int | None = None,
) -> str:
    """One Apicalypse query: ``fields a,b.c; where x & y; sort id asc; limit 500;``."""
    parts = [f"fields {','.join(fields)};"]
    conditions = [condition for condition in where if condition]
    if conditions:
        parts.append(f"where {' & '.join(conditions)};")
    if sort:
        parts.append(f"sort {sort};")
    if limit is not None:
        parts.append(f"limit {limit};")
    return " ".join(parts)


def count_query(where: Iterable[str]) -> str:
    """The body of a ``<endpoint>/count`` query (no fields)."""
    conditions = [condition for condition in where if condition]
    return f"where {' & '.join(conditions)};" if conditions else ""


def multiquery(queries: Iterable[tuple[str, str, str]]) -> str:
    """A ``/multiquery`` body from ``(endpoint, name, query)`` triples (IGDB allows 10)."""
    blocks = [f'query {endpoint} "{name}" {{ {query} }};' for endpoint, name, query in queries]
    if not 0 < len(blocks) <= 10:
        raise ValueError(f"a multiquery holds 1 to 10 queries, not {len(blocks)}")
    return "\n".join(blocks)


def probe_key(endpoint: str, where: Iterable[str]) -> str:
    """The probe's key in a distributed run: ``probe:<endpoint>[;<condition>…]``."""
    return ";".join([f"probe:{endpoint}", *where])


def page_key(after: int, end: int, where: Iterable[str]) -> str:
    """A page's key in a distributed run: ``range:<after>-<end>[;<condition>…]``."""
    return ";".join([f"range:{after}-{end}", *where])


def plan_ranges(
    low: int, high: int, count: int, page_size: int, max_ranges: int
) -> list[tuple[int, int]]:
    """Split the ids ``(low, high]`` into id ranges ``(start, end]`` to page in parallel.

    No more ranges than pages the ``count`` records fill, so a small incremental run does
    not spend requests on empty ranges.
    """
    if count <= 0 or high <= low:
        return []
    # Integer ceilings: a float division overflows on an absurd count or id.
    ranges = max(1, min(max_ranges, -(-count // page_size), high - low))
    width = -(-(high - low) // ranges)
    return [(start, min(high, start + width)) for start in range(low, high, width) if start < high]


# --- Mappers: pure functions from IGDB payloads to items ------------------------------


def iso_date(timestamp: Any) -> str | None:
    """A Unix timestamp as an ISO date (UTC), or None when absent, unreadable or a placeholder."""
    moment = _from_timestamp(timestamp)
    return moment.date().isoformat() if moment else None


def iso_datetime(timestamp: Any) -> str | None:
    """A Unix timestamp as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None."""
    moment = _from_timestamp(timestamp)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _from_timestamp(timestamp: Any) -> datetime | None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    try:
        moment = _EPOCH + timedelta(seconds=timestamp)
    except (OverflowError, ValueError):  # out of range, or NaN (Python's json accepts it)
        return None
    # IGDB writes -62135683200 (31 Dec of year 0) for "no date" (see QUIRKS.md).
    if moment.year <= 1:
        return None
    return moment


def image_url(base_url: str, image_id: Any) -> str | None:
    """``<base_url>/<image_id>.jpg``: IGDB's own ``url`` fields are protocol-relative thumbs."""
    if not isinstance(image_id, str) or not image_id.strip():
        return None
    return f"{base_url.rstrip('/')}/{image_id.strip()}.jpg"


def names(value: Any) -> list[str]:
    """Names of expanded objects (``[{"id": 4, "name": "Fighting"}]``), in order, once each."""
    found: list[str] = []
    for entry in _as_list(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name.strip() and name not in found:
            found.append(name)
    return found


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def unexpanded_fields(payload: Mapping[str, Any], expanded: Iterable[str]) -> list[str]:
    """Fields asked for as objects (``genres.name``) that came back as bare ids.

    IGDB mixes expanded objects and bare id arrays in one record (QUIRKS.md); a bare id has
    no name to keep, so the spider counts these instead of passing them off as data.
    """
    return [
        field
        for field in expanded
        if any(isinstance(entry, int) for entry in _as_list(payload.get(field)))
    ]


def involved_companies(value: Any) -> list[Json]:
    """``involved_companies`` with ``company`` expanded: name, id and the role flags."""
    companies: list[Json] = []
    for entry in _as_list(value):
        if not isinstance(entry, dict):
            continue
        company = entry.get("company")
        if not isinstance(company, dict):
            continue
        companies.append(
            {
                "company_id": company.get("id"),
                "name": company.get("name"),
                "developer": bool(entry.get("developer")),
                "publisher": bool(entry.get("publisher")),
                "porting": bool(entry.get("porting")),
                "supporting": bool(entry.get("supporting")),
            }
        )
    return companies


def external_ids(value: Any) -> list[Json]:
    """``external_games`` (Steam, GOG, …) as ``{source, category, uid, url}``.

    ``external_game_source`` replaced the numeric ``category`` in 2024; older records and
    mirrors carry only the category, so both are kept.
    """
    found: list[Json] = []
    for entry in _as_list(value):
        if not isinstance(entry, dict) or not (entry.get("uid") or entry.get("url")):
            continue
        source = entry.get("external_game_source")
        found.append(
            {
                "source": source.get("name") if isinstance(source, dict) else None,
                "category": entry.get("category"),
                "uid": entry.get("uid"),
                "url": entry.get("url"),
            }
        )
    return found


GAME_FIELDS: tuple[str, ...] = (
    "name",
    "slug",
    "url",
    "summary",
    "storyline",
    "first_release_date",
    "updated_at",
    "genres.name",
    "themes.name",
    "game_modes.name",
    "platforms.name",
    "involved_companies.company.name",
    "involved_companies.developer",
    "involved_companies.publisher",
    "involved_companies.porting",
    "involved_companies.supporting",
    "franchise.name",
    "franchises.name",
    "collection.name",
    "collections.name",
    "keywords.name",
    "player_perspectives.name",
    "game_engines.name",
    "category",
    "parent_game",
    "similar_games",
    "dlcs",
    "expansions",
    "websites.url",
    "created_at",
    "cover.image_id",
    "rating",
    "rating_count",
    "aggregated_rating",
    "aggregated_rating_count",
    "total_rating",
    "total_rating_count",
    "alternative_names.name",
    "external_games.category",
    "external_games.external_game_source.name",
    "external_games.uid",
    "external_games.url",
)

# Fields of GAME_FIELDS asked for as objects: a bare id there means the expansion failed.
GAME_EXPANDED_FIELDS: tuple[str, ...] = (
    "genres",
    "themes",
    "game_modes",
    "platforms",
    "involved_companies",
    "franchise",
    "franchises",
    "cover",
    "alternative_names",
    "external_games",
)


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # NaN and Infinity parse too (Python's json accepts them); neither is a number here.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return kind(value)
    except OverflowError:  # an integer beyond any float
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def ids(value: Any) -> list[int]:
    """Referenced record ids (``similar_games``, ``dlcs``), expanded objects or bare ids."""
    found: list[int] = []
    for entry in _as_list(value):
        record_id = entry.get("id") if isinstance(entry, dict) else entry
        if isinstance(record_id, int) and not isinstance(record_id, bool) and record_id > 0:
            found.append(record_id)
    return list(dict.fromkeys(found))


def website_urls(value: Any) -> list[str]:
    """URLs of ``websites`` asked as ``websites.url`` (official site, wiki, stores)."""
    urls = (entry.get("url") for entry in _as_list(value) if isinstance(entry, dict))
    return list(dict.fromkeys(url for url in urls if isinstance(url, str) and url.strip()))


def game_item(payload: Mapping[str, Any], image_base_url: str = DEFAULT_IMAGE_URL) -> GameItem:
    """A ``GameItem`` from one record of ``POST /games`` asked with ``GAME_FIELDS``."""
    companies = involved_companies(payload.get("involved_companies"))
    cover = payload.get("cover")
    cover_url = (
        image_url(image_base_url, cover.get("image_id")) if isinstance(cover, dict) else None
    )
    # The main franchise first, then the others, each once.
    franchises = names(payload.get("franchise"))
    franchises += [name for name in names(payload.get("franchises")) if name not in franchises]
    # "collection" (one) became "collections" (many) in 2023; older records have the first.
    collections = names(payload.get("collection"))
    collections += [name for name in names(payload.get("collections")) if name not in collections]
    parent_game = ids(payload.get("parent_game"))
    return GameItem(
        igdb_id=payload["id"],
        name=_text(payload.get("name")),
        slug=_text(payload.get("slug")),
        url=_text(payload.get("url")),
        summary=_text(payload.get("summary")),
        storyline=_text(payload.get("storyline")),
        first_release_date=iso_date(payload.get("first_release_date")),
        genres=names(payload.get("genres")),
        themes=names(payload.get("themes")),
        game_modes=names(payload.get("game_modes")),
        platforms=names(payload.get("platforms")),
        involved_companies=companies,
        developers=_role_names(companies, "developer"),
        publishers=_role_names(companies, "publisher"),
        franchises=franchises,
        collections=collections,
        keywords=names(payload.get("keywords")),
        player_perspectives=names(payload.get("player_perspectives")),
        game_engines=names(payload.get("game_engines")),
        category=_number(payload.get("category"), int),
        parent_game_id=parent_game[0] if parent_game else None,
        similar_game_ids=ids(payload.get("similar_games")),
        dlc_ids=ids(payload.get("dlcs")),
        expansion_ids=ids(payload.get("expansions")),
        websites=website_urls(payload.get("websites")),
        alternative_names=names(payload.get("alternative_names")),
        external_ids=external_ids(payload.get("external_games")),
        rating=_number(payload.get("rating"), float),
        rating_count=_number(payload.get("rating_count"), int),
        aggregated_rating=_number(payload.get("aggregated_rating"), float),
        aggregated_rating_count=_number(payload.get("aggregated_rating_count"), int),
        total_rating=_number(payload.get("total_rating"), float),
        total_rating_count=_number(payload.get("total_rating_count"), int),
        cover_url=cover_url,
        image_urls=[cover_url] if cover_url else [],
        created_at=iso_datetime(payload.get("created_at")),
        updated_at=iso_datetime(payload.get("updated_at")),
    )


def _role_names(companies: list[Json], role: str) -> list[str]:
    found: list[str] = []
    for company in companies:
        name = company["name"]
        if company[role] and isinstance(name, str) and name not in found:
            found.append(name)
    return found


def valid_id(payload: Any) -> bool:
    """Whether a record is an object with a positive integer ``id``."""
    if not isinstance(payload, dict):
        return False
    record_id = payload.get("id")
    return isinstance(record_id, int) and not isinstance(record_id, bool) and record_id > 0


# --- The base spider --------------------------------------------------------------------


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
        spider.page_size = max(1, min(MAX_PAGE_SIZE, settings.getint("IGDB_PAGE_SIZE", 500)))
        spider.max_ranges = max(1, settings.getint("IGDB_PARALLEL_RANGES", 16))
        spider.sync_overlap = max(0, settings.getint("IGDB_SYNC_OVERLAP", 900))
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
        self.join_distributed_run()
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
            self._page_error(response.request, f"unexpected multiquery answer: {results!r:.200}")
            return
        high = last[0]["id"] if last and valid_id(last[0]) else 0
        if count and not high:
            self._page_error(response.request, f"{count} records match but no id came back")
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
            self._page_error(response.request, f"expected a JSON array, got {records!r:.200}")
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
            self._page_error(response.request, f"expected a JSON array, got {records!r:.200}")
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
