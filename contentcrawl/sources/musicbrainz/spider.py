"""The MusicBrainz base spider: API crawl (search, lookup, browse) or dump import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from scrapy import Request
from scrapy.exceptions import CloseSpider
from scrapy.spidermiddlewares.httperror import HttpError

from contentcrawl.batches import ItemBatch
from contentcrawl.dumps import is_url
from contentcrawl.failures import ReplaysFailures
from contentcrawl.items import AlbumItem, ArtistItem, ContentItem
from contentcrawl.redaction import redact_url
from contentcrawl.sources.base import FLAG, TEXT, Argument, choice, subset
from contentcrawl.sources.dump_spider import DumpSpider
from contentcrawl.sources.musicbrainz.answers import AnswerChecks, failure_detail
from contentcrawl.sources.musicbrainz.dump import import_dumps
from contentcrawl.sources.musicbrainz.mappers import (
    DUMP_ITEM_CLASSES,
    DUMP_MAPPERS,
    album_item,
    artist_item,
    is_mbid,
)
from contentcrawl.sources.musicbrainz.queries import (
    MAX_PAGE_SIZE,
    album_key,
    browse_key,
    browse_url,
    lookup_url,
    release_group_url,
    search_key,
    search_url,
    user_agent,
)

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

DEFAULT_API_URL = "https://musicbrainz.org/ws/2"
DEFAULT_DUMPS_URL = "https://data.metabrainz.org/pub/musicbrainz/data/json-dumps"
MODES = ("api", "dump", "failed")
# Dumps read when ``-a entities=`` is not given: the two kinds this spider stores.
DUMP_ENTITIES: tuple[str, ...] = ("artist", "release-group")
# Request priorities: an artist's lookup and album pages go before the next search page,
# so the queue holds at most one search page of artists at a time.
SEARCH_PRIORITY, LOOKUP_PRIORITY, BROWSE_PRIORITY = 0, 10, 20


def split_list(value: str | Iterable[str] | None, separator: str = ",") -> list[str]:
    """A spider argument or setting as a list: ``separator``-separated text, or a list
    already."""
    if value is None:
        return []
    parts = value.split(separator) if isinstance(value, str) else value
    return [part.strip() for part in parts if part and part.strip()]


class MusicBrainzSpider(ReplaysFailures, DumpSpider):
    """Artists with their release groups, from ws/2 (``mode=api``) or the dumps (``mode=dump``).

    Spider arguments: ``mode`` (``api``, the default, ``dump`` when ``dump`` is given, or
    ``failed``: replay the requests earlier runs gave up on); in API mode ``query`` (a
    search, Lucene syntax), ``mbids`` (comma-separated) and ``limit`` (artists looked up at
    most); without ``query`` or ``mbids`` the searches in ``MUSICBRAINZ_QUERIES`` run. In
    dump mode ``dump`` (comma-separated paths or URLs of ``<entity>.tar.xz`` archives or
    JSON-lines files), ``entities`` (which of ``DUMP_ENTITIES`` to read from the latest
    dump when ``dump`` is not given), ``limit`` (records of all the dumps), ``force`` (read
    a file a complete import read already) and ``rework`` (work every line again, even one
    whose record holds the line's digest).
    """

    slot = "musicbrainz"
    dump_slot = "musicbrainz_dumps"
    dump_source = "musicbrainz"
    # Dead letters find the record id of a lookup in cb_kwargs["mbid"] (contentcrawl/failures.py).
    item_class: ClassVar[type[ContentItem]] = ArtistItem
    distributed_collection = ArtistItem.collection

    spider_arguments: ClassVar[dict[str, Argument]] = {
        "mode": choice(*MODES),
        "query": TEXT,
        "mbids": TEXT,
        "dump": TEXT,
        "entities": subset(*DUMP_MAPPERS),
        "force": FLAG,
        "rework": FLAG,
    }
    # Read from the settings by from_crawler.
    api_url: str
    dumps_url: str
    contact: str
    page_size: int
    max_results: int
    min_score: int
    queries: list[str]
    answers: AnswerChecks

    @classmethod
    def check_arguments(cls, options: dict[str, Any]) -> None:
        # -a dump= alone means a dump import; with mode=api it would be silently ignored.
        if options.get("mode") == "api" and split_list(options.get("dump")):
            cls.refuse("mode", "api", "-a dump= is read in mode=dump (the default with a dump)")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.options
        self.dumps = split_list(options.get("dump"))
        self.mode: str = options.get("mode") or ("dump" if self.dumps else "api")
        # Whether this run imports dumps rather than crawling the API (DumpSpider reads it).
        self.imports_dump = self.mode == "dump"
        self.query: str | None = options.get("query")
        self.mbids = split_list(options.get("mbids"))
        self.entities: list[str] = options.get("entities") or list(DUMP_ENTITIES)
        # Artists claimed for a lookup (one lookup per artist, whatever found it) and
        # release groups already yielded (a collaboration is browsed from each artist).
        self.claimed: set[str] = set()
        self.albums_seen: set[str] = set()
        self.limit_reached = False
        self.searches: list[str] = []

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        contact = (settings.get("MUSICBRAINZ_CONTACT") or "").strip()
        if contact:
            # Spider priority: every request of this crawl, the dump downloads included,
            # names the contact; an explicit -s USER_AGENT still wins, as for any setting.
            settings.set("USER_AGENT", user_agent(contact), priority="spider")
        # The slot sends one request a second: what the downloader takes beyond that waits in
        # the slot's queue, out of the scheduler's priority order, and a stopping crawl (one
        # Ctrl-C, a scrapyd cancel) waits for each of them, 32 by default: half a minute. So
        # the crawl holds the slot's concurrency plus one waiting (distributed, that also
        # leaves the shared queue to the other workers); ``-s CONCURRENT_REQUESTS`` still wins.
        slot = settings.getdict("DOWNLOAD_SLOTS").get(cls.slot, {})
        settings.set("CONCURRENT_REQUESTS", int(slot.get("concurrency", 1)) + 1, priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.api_url = (settings.get("MUSICBRAINZ_API_URL") or DEFAULT_API_URL).rstrip("/")
        spider.dumps_url = (settings.get("MUSICBRAINZ_DUMPS_URL") or DEFAULT_DUMPS_URL).rstrip("/")
        spider.contact = (settings.get("MUSICBRAINZ_CONTACT") or "").strip()
        spider.page_size = max(1, min(MAX_PAGE_SIZE, settings.getint("MUSICBRAINZ_PAGE_SIZE")))
        spider.max_results = max(0, settings.getint("MUSICBRAINZ_SEARCH_MAX_RESULTS"))
        spider.min_score = max(0, settings.getint("MUSICBRAINZ_MIN_SCORE"))
        # ";"-separated as -s gives it (a Lucene query may hold commas); a list from settings.py.
        queries = split_list(settings.get("MUSICBRAINZ_QUERIES"), separator=";")
        # A query given twice would be one URL twice: Scrapy's duplicate filter drops it.
        spider.queries = list(dict.fromkeys(queries))
        spider.answers = AnswerChecks(crawler, spider.logger)
        return spider

    # -- start --------------------------------------------------------------------------
    def needs_contact(self) -> bool:
        """Whether this run talks to a MusicBrainz host (anything but local dump files)."""
        return self.mode != "dump" or not self.dumps or any(is_url(dump) for dump in self.dumps)

    def check_contact(self) -> None:
        """Refuse to run against MusicBrainz without a contact for the User-Agent."""
        if not self.needs_contact():
            return
        if not self.contact or any(char in self.contact for char in "\r\n"):
            self.logger.error(
                "MUSICBRAINZ_CONTACT is not set (or not one line): MusicBrainz blocks clients "
                "without a User-Agent naming a contact. Set it to an e-mail address or URL, "
                "e.g. MUSICBRAINZ_CONTACT=you@example.org in .env or -s MUSICBRAINZ_CONTACT=…"
            )
            raise CloseSpider("musicbrainz_contact_missing")

    async def start(self) -> AsyncIterator[Request | ItemBatch]:
        # A replay with nothing pending talks to no one: its contact is checked on its first
        # request (a daily replay job must not fail where the API is not crawled).
        if self.mode != "failed":
            self.check_contact()
        if self.mode == "api":
            self._plan_searches()
        async for request_or_batch in self.read_source(self.distributed_source()):
            yield request_or_batch

    def _plan_searches(self) -> None:
        """The searches of an API crawl, and its INFO line; nothing to crawl closes it."""
        self.searches = [self.query] if self.query else ([] if self.mbids else self.queries)
        if not self.searches and not self.mbids:
            self.logger.error(
                "%s: nothing to crawl: give -a query=…, -a mbids=… or set MUSICBRAINZ_QUERIES",
                self.name,
            )
            raise CloseSpider("nothing_to_crawl")
        self.logger.info(
            "MusicBrainz API %s: %d searches %s, %d MBIDs, page size %d, up to %s results a "
            "search, limit %s, User-Agent %r%s",
            redact_url(self.api_url),
            len(self.searches),
            self.searches,
            len(self.mbids),
            self.page_size,
            self.max_results or "all",
            self.limit or "none",
            self.settings.get("USER_AGENT"),
            ", distributed" if self.distributed is not None else "",
        )

    # -- distributed runs (contentcrawl.extensions.distributed.DistributedSpider) -----------
    def distributed_source(self) -> AsyncIterator[Request | ItemBatch]:
        """The dump import, or the lookups of ``-a mbids`` and the first page of each search."""
        if self.mode == "dump":
            return self.dump_import(import_dumps(self, DUMP_MAPPERS, DUMP_ITEM_CLASSES))
        if self.mode == "failed":
            return self._replays()
        return self._first_requests()

    async def _replays(self) -> AsyncIterator[Request]:
        contact_checked = False
        async for request in self.replay_failures():
            if not contact_checked:
                self.check_contact()
                contact_checked = True
            yield request

    async def _first_requests(self) -> AsyncIterator[Request]:
        for mbid in self.mbids:
            if not is_mbid(mbid.lower()):
                self.crawler.stats.inc_value("musicbrainz/mbids/invalid")
                self.logger.warning("Skipping %r from -a mbids: not an MBID", mbid)
                continue
            request = self.claim(mbid.lower())
            if request is not None:
                yield request
        for query in self.searches:
            yield self.search_request(query, 0)

    def distributed_key(self, request_or_item: Any) -> str | None:
        """An artist's MBID, ``album:<mbid>``, or a search or browse page's key; None in
        dump mode, whose records are not fetched again but read again by a takeover."""
        if self.mode == "dump":
            return None
        if isinstance(request_or_item, ArtistItem):
            return request_or_item.mbid
        if isinstance(request_or_item, AlbumItem):
            return album_key(request_or_item.mbid)
        callback = getattr(request_or_item, "callback", None)
        arguments = getattr(request_or_item, "cb_kwargs", {})
        if callback == self.parse_artist:
            return arguments["mbid"]
        if callback == self.parse_release_group:
            return album_key(arguments["mbid"])
        if callback == self.parse_search:
            return search_key(arguments["query"], arguments["offset"])
        if callback == self.parse_release_groups:
            return browse_key(arguments["mbid"], arguments["offset"])
        return None

    def distributed_record(self, key: str) -> tuple[str, str] | None:
        """Where the record of ``key`` is stored; None for a search or browse page."""
        kind, separator, rest = key.partition(":")
        if not separator:
            return ArtistItem.collection, key
        if kind == "album":
            return AlbumItem.collection, rest
        return None

    def distributed_request(self, key: str) -> Request:
        """The request ``key`` stands for, past the dupefilter (the reconcile's second try)."""
        kind, separator, rest = key.partition(":")
        if not separator and is_mbid(key):
            request = self.lookup_request(key)
        elif kind == "album" and is_mbid(rest):
            request = self.release_group_request(rest)
        elif kind == "browse":
            mbid, _, offset = rest.partition(":")
            request = self.browse_request(mbid, int(offset))
        elif kind == "search":
            offset, _, query = rest.partition(":")
            request = self.search_request(query, int(offset))
        else:
            raise ValueError(f"not a key of a {self.name} run: {key!r}")
        return request.replace(dont_filter=True)

    # -- requests -----------------------------------------------------------------------
    def api_request(self, url: str, **kwargs: Any) -> Request:
        """A GET of a ws/2 ``url`` (``queries``) for JSON, in the musicbrainz slot."""
        return self.request(
            url,
            headers={"Accept": "application/json"},
            errback=self.request_failed,
            **kwargs,
        )

    def search_request(self, query: str, offset: int) -> Request:
        """One page of an artist search."""
        return self.api_request(
            search_url(self.api_url, query, self.page_size, offset),
            callback=self.parse_search,
            cb_kwargs={"query": query, "offset": offset},
            priority=SEARCH_PRIORITY,
        )

    def claim(self, mbid: str) -> Request | None:
        """The lookup of an artist not claimed yet in this run (None: known, or over limit)."""
        if mbid in self.claimed:
            self.crawler.stats.inc_value("musicbrainz/artists/duplicate")
            return None
        if self.limit is not None and len(self.claimed) >= self.limit:
            self.limit_reached = True
            return None
        self.claimed.add(mbid)
        return self.lookup_request(mbid)

    def lookup_request(self, mbid: str) -> Request:
        """An artist lookup (``ARTIST_INC``)."""
        return self.api_request(
            lookup_url(self.api_url, mbid),
            callback=self.parse_artist,
            cb_kwargs={"mbid": mbid},
            priority=LOOKUP_PRIORITY,
        )

    def release_group_request(self, mbid: str) -> Request:
        """A release-group lookup: a distributed run's reconcile asks for an album a killed
        worker had browsed but not stored."""
        return self.api_request(
            release_group_url(self.api_url, mbid),
            callback=self.parse_release_group,
            cb_kwargs={"mbid": mbid},
            priority=BROWSE_PRIORITY,
            # Its dead letter names the release group, not an artist of that MBID.
            meta={"record_id": album_key(mbid)},
        )

    def browse_request(self, mbid: str, offset: int) -> Request:
        """One page of an artist's release groups."""
        return self.api_request(
            browse_url(self.api_url, mbid, self.page_size, offset),
            callback=self.parse_release_groups,
            cb_kwargs={"mbid": mbid, "offset": offset},
            priority=BROWSE_PRIORITY,
            # A dead letter per page, not one per artist shared with its lookup.
            meta={"record_id": f"{mbid}/release-groups/{offset}"},
        )

    # -- callbacks ----------------------------------------------------------------------
    def parse_search(self, response: Response, query: str, offset: int) -> Iterator[Request]:
        page = self.answers.page(response, "artists", "count", "a search answer")
        if page is None:
            return
        hits, total = page
        stats = self.crawler.stats
        stats.inc_value("musicbrainz/search/pages")
        low_score = False
        requests = []
        for hit in hits:
            mbid = hit.get("id") if isinstance(hit, dict) else None
            if not is_mbid(mbid):
                stats.inc_value("musicbrainz/search/invalid")
                self.logger.warning("Search %r: skipping a hit without an MBID: %.200r", query, hit)
                continue
            score = hit.get("score")
            # Hits come best first: once one is below the floor, the rest are too.
            if isinstance(score, int | float) and score < self.min_score:
                low_score = True
                break
            stats.inc_value("musicbrainz/search/results")
            request = self.claim(mbid)
            if request is not None:
                requests.append(request)
        following = offset + len(hits)
        within_cap = not self.max_results or following < self.max_results
        # ``count`` is the search's total; an empty page ends the search too.
        more = bool(hits) and following < total and within_cap and not low_score
        if more and not self.limit_reached:
            requests.append(self.search_request(query, following))
        elif offset == 0 and not hits:
            self.logger.info("Search %r found no artist", query)
        self.account_for_page(
            search_key(query, offset), [self.distributed_key(r) for r in requests]
        )
        yield from requests

    def parse_artist(self, response: Response, mbid: str) -> Iterator[ContentItem | Request]:
        payload = self.answers.entity(response, "an artist")
        if payload is None:
            return
        found = payload["id"]
        # A merged artist answers with the MBID it was merged into.
        if found != mbid:
            if found in self.claimed:
                self.crawler.stats.inc_value("musicbrainz/artists/duplicate")
                self.settle_key(mbid)
                return
            self.claimed.add(found)
            # Stored under the MBID it was merged into: that one is the record to check.
            self.account_for_page(mbid, [found, browse_key(found, 0)])
        elif self.distributed is not None:
            self.distributed.record_ids([browse_key(found, 0)])
        self.crawler.stats.inc_value("musicbrainz/artists/looked_up")
        yield artist_item(payload)
        yield self.browse_request(found, 0)

    def parse_release_groups(
        self, response: Response, mbid: str, offset: int
    ) -> Iterator[ContentItem | Request]:
        page = self.answers.page(
            response, "release-groups", "release-group-count", "a release-group browse"
        )
        if page is None:
            return
        groups, total = page
        stats = self.crawler.stats
        stats.inc_value("musicbrainz/browse/pages")
        following = offset + len(groups)
        more = bool(groups) and following < total
        albums = []
        for group in groups:
            album_mbid = group.get("id") if isinstance(group, dict) else None
            if not is_mbid(album_mbid):
                stats.inc_value("musicbrainz/browse/invalid")
                self.logger.warning(
                    "Artist %s: skipping a release group without an MBID: %.200r", mbid, group
                )
                continue
            if album_mbid in self.albums_seen:
                stats.inc_value("musicbrainz/albums/duplicate")
                continue
            self.albums_seen.add(album_mbid)
            albums.append(album_item(group, artist_mbid=mbid))
        found = [album_key(album.mbid) for album in albums]
        self.account_for_page(
            browse_key(mbid, offset), [*found, browse_key(mbid, following)] if more else found
        )
        if more:
            yield self.browse_request(mbid, following)
        yield from albums

    def parse_release_group(self, response: Response, mbid: str) -> Iterator[ContentItem]:
        payload = self.answers.entity(response, "a release group")
        if payload is None:
            return
        found = payload["id"]
        if found != mbid:
            # Merged into another release group: that one is the record to check.
            self.account_for_page(album_key(mbid), [album_key(found)])
        self.crawler.stats.inc_value("musicbrainz/albums/looked_up")
        yield album_item(payload)

    def request_failed(self, failure: Failure) -> None:
        """Errback: a request that got no usable answer is logged and counted."""
        request = failure.request  # type: ignore[attr-defined]
        if isinstance(failure.value, HttpError):
            response = failure.value.response
            if response.status == 404 and request.callback == self.parse_artist:
                self.crawler.stats.inc_value("musicbrainz/artists/not_found")
                self.logger.warning(
                    "Artist %s not found (404): deleted, or a wrong MBID",
                    request.cb_kwargs.get("mbid"),
                )
                self.settle_key(request.cb_kwargs["mbid"])
                return
            if response.status == 404 and request.callback == self.parse_release_group:
                self.crawler.stats.inc_value("musicbrainz/albums/not_found")
                self.logger.warning("Release group %s not found (404)", request.cb_kwargs["mbid"])
                self.settle_key(album_key(request.cb_kwargs["mbid"]))
                return
        self.answers.lost(request, failure_detail(failure))

    def closed(self, reason: str) -> None:
        if self.mode != "api":
            return
        stats = self.crawler.stats
        self.logger.info(
            "%s %s: %d artists looked up (%d found again), %d album pages, %d requests lost",
            self.name,
            reason,
            stats.get_value("musicbrainz/artists/looked_up", 0),
            stats.get_value("musicbrainz/artists/duplicate", 0),
            stats.get_value("musicbrainz/browse/pages", 0),
            stats.get_value("musicbrainz/requests/failed", 0),
        )
