"""MusicBrainz (ws/2): artists and their release groups, from the API or the JSON dumps.

API mode is slow by design: MusicBrainz allows one request per second per IP (on average)
and answers every request with 503 while a client is over it, so the ``musicbrainz``
download slot sends one request at a time, ``DOWNLOAD_SLOTS["musicbrainz"]["delay"]``
apart, and ``PoliteRetryMiddleware`` pauses the slot on a 503 (``Retry-After`` when sent).
MusicBrainz also asks for a User-Agent naming the application and a contact: every request
of these spiders carries ``contentcrawl/<version> ( <MUSICBRAINZ_CONTACT> )``.

An API crawl finds artists by search (``-a query=`` or ``MUSICBRAINZ_QUERIES``, paged by
``offset`` until the search's own ``count``) or takes their MBIDs (``-a mbids=``), looks
each one up once (``ARTIST_INC``) and browses all of its release groups, 100 a page: a
lookup would cap them at 25. Dump mode (``contentcrawl.sources.musicbrainz_dump``) reads
the same entity JSON from the weekly dumps. Both go through the pure mappers below, so an
artist or album has one record shape (and one content hash) whichever way it came.

With ``REDIS_URL`` set (``contentcrawl.extensions.distributed``) one worker sends the
lookups of ``-a mbids`` and the first page of each search, and every worker takes requests
from the shared queue. Every request is a key of the run: an artist lookup its MBID, an
album lookup ``album:<mbid>``, a search page ``search:<offset>:<query>``, a browse page
``browse:<artist mbid>:<offset>``. A page records the keys it found (artists, albums, the
next page), then settles its own; the reconcile asks again, by lookup, for what a killed
worker left. In dump mode one worker imports the dumps and the others stand by: one that
takes over from a dead importer reads them again, and what was stored costs no write.

To add a MusicBrainz kind: write its mapper here, register it in ``DUMP_MAPPERS`` and
give the API crawl a request and a ``parse_<thing>`` callback for it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from scrapy import Request
from scrapy.exceptions import CloseSpider, IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError

from contentcrawl import __version__
from contentcrawl.dumps import ItemFlow, is_url
from contentcrawl.items import AlbumItem, ArtistItem, ContentItem, ItemBatch, Json
from contentcrawl.redaction import redact_text, redact_url
from contentcrawl.sources.base import TEXT, Argument, ContentSpider, choice, subset
from contentcrawl.sources.failures import ReplaysFailures
from contentcrawl.sources.musicbrainz_dump import import_dumps

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

DEFAULT_API_URL = "https://musicbrainz.org/ws/2"
DEFAULT_DUMPS_URL = "https://data.metabrainz.org/pub/musicbrainz/data/json-dumps"
# ws/2 caps ``limit`` at 100 for searches and browses (25 when it is not given).
MAX_PAGE_SIZE = 100
# What an artist lookup asks for; its release groups come from a browse instead.
ARTIST_INC: tuple[str, ...] = ("aliases", "tags", "genres", "ratings", "url-rels")
# What a release-group browse asks for: who is credited, and the folksonomy.
RELEASE_GROUP_INC: tuple[str, ...] = ("artist-credits", "tags", "genres", "ratings")
MODES = ("api", "dump", "failed")
# Dumps read when ``-a entities=`` is not given: the two kinds this spider stores.
DUMP_ENTITIES: tuple[str, ...] = ("artist", "release-group")
# Request priorities: an artist's lookup and album pages go before the next search page,
# so the queue holds at most one search page of artists at a time.
SEARCH_PRIORITY, LOOKUP_PRIORITY, BROWSE_PRIORITY = 0, 10, 20

_MBID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def user_agent(contact: str, version: str = __version__) -> str:
    """The User-Agent MusicBrainz asks for: ``contentcrawl/<version> ( <contact> )``."""
    return f"contentcrawl/{version} ( {contact} )"


def is_mbid(value: Any) -> bool:
    """Whether ``value`` is an MBID (a lower-case UUID string)."""
    return isinstance(value, str) and _MBID.fullmatch(value) is not None


def split_list(value: str | Iterable[str] | None, separator: str = ",") -> list[str]:
    """A spider argument or setting as a list: ``separator``-separated text, or a list
    already."""
    if value is None:
        return []
    parts = value.split(separator) if isinstance(value, str) else value
    return [part.strip() for part in parts if part and part.strip()]


# --- Mappers: pure functions from MusicBrainz entity JSON to items ------------------------
# The same JSON arrives from lookups, browses and dump lines, with keys in random order
# (QUIRKS.md); lists are sorted here so a record's content hash does not depend on it.


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return sorted({entry.strip() for entry in value if isinstance(entry, str) and entry.strip()})


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def area(value: Any) -> Json | None:
    """An area as ``{mbid, name, sort_name, iso_3166_1_codes}`` (None when absent)."""
    if not isinstance(value, dict) or not is_mbid(value.get("id")):
        return None
    return {
        "mbid": value["id"],
        "name": _text(value.get("name")),
        "sort_name": _text(value.get("sort-name")),
        "iso_3166_1_codes": _strings(value.get("iso-3166-1-codes")),
    }


def aliases(value: Any) -> list[Json]:
    """Aliases as ``{name, sort_name, locale, type, primary, begin_date, end_date}``."""
    found = [
        {
            "name": name,
            "sort_name": _text(alias.get("sort-name")),
            "locale": _text(alias.get("locale")),
            "type": _text(alias.get("type")),
            "primary": alias.get("primary") is True,
            # Lookups, browses and dumps say "begin"/"end", search results "begin-date".
            "begin_date": _text(alias.get("begin")) or _text(alias.get("begin-date")),
            "end_date": _text(alias.get("end")) or _text(alias.get("end-date")),
        }
        for alias in _dicts(value)
        if (name := _text(alias.get("name")))
    ]
    return sorted(found, key=lambda a: (a["name"], a["locale"] or "", a["type"] or "", str(a)))


def tags(value: Any) -> list[Json]:
    """Tags as ``{name, count}``, by name (a count of 0 is a real, down-voted tag)."""
    found = {
        name: {"name": name, "count": _count(tag.get("count"))}
        for tag in _dicts(value)
        if (name := _text(tag.get("name")))
    }
    return [found[name] for name in sorted(found)]


def genres(value: Any) -> list[Json]:
    """Genres as ``{mbid, name, count}``, by name."""
    found = {
        name: {"mbid": genre.get("id"), "name": name, "count": _count(genre.get("count"))}
        for genre in _dicts(value)
        if (name := _text(genre.get("name")))
    }
    return [found[name] for name in sorted(found)]


def rating(value: Any) -> Json | None:
    """``{value, votes_count}``, or None when nobody has rated."""
    if not isinstance(value, dict):
        return None
    score = value.get("value")
    votes = _count(value.get("votes-count")) or 0
    if not isinstance(score, int | float) or isinstance(score, bool) or not votes:
        return None
    try:
        score = float(score)
    except OverflowError:  # an integer beyond any float: not a score
        return None
    # NaN and Infinity parse too (Python's json accepts them); neither is a score.
    return {"value": score, "votes_count": votes} if math.isfinite(score) else None


def url_relations(value: Any) -> list[Json]:
    """The URL relations (official site, Wikidata, Discogs…) as ``{type, url, ended}``."""
    found = {
        (_text(relation.get("type")) or "", resource): {
            "type": _text(relation.get("type")),
            "url": resource,
            "ended": relation.get("ended") is True,
        }
        for relation in _dicts(value)
        if (resource := _text(_dict(relation.get("url")).get("resource")))
    }
    return [found[key] for key in sorted(found)]


def artist_credit(value: Any) -> list[Json]:
    """An artist credit, in order: ``{mbid, name (as credited), artist_name, joinphrase}``."""
    entries = []
    for entry in _dicts(value):
        artist = _dict(entry.get("artist"))
        mbid = artist.get("id")
        entries.append(
            {
                "mbid": mbid if is_mbid(mbid) else None,
                "name": _text(entry.get("name")) or _text(artist.get("name")),
                "artist_name": _text(artist.get("name")),
                # The joinphrase is spacing and punctuation (" & ", " feat. "): kept as is.
                "joinphrase": entry.get("joinphrase")
                if isinstance(entry.get("joinphrase"), str)
                else "",
            }
        )
    return entries


def artist_item(payload: Mapping[str, Any]) -> ArtistItem:
    """An ``ArtistItem`` from an artist lookup (``inc=ARTIST_INC``) or an artist dump line."""
    life = _dict(payload.get("life-span"))
    # Lookups carry the area both as "begin-area" and the legacy "begin_area" (QUIRKS.md).
    begin_area = payload.get("begin-area", payload.get("begin_area"))
    end_area = payload.get("end-area", payload.get("end_area"))
    end_date = _text(life.get("end"))
    return ArtistItem(
        mbid=payload["id"],
        name=_text(payload.get("name")),
        sort_name=_text(payload.get("sort-name")),
        type=_text(payload.get("type")),
        gender=_text(payload.get("gender")),
        country=_text(payload.get("country")),
        area=area(payload.get("area")),
        begin_area=area(begin_area),
        end_area=area(end_area),
        begin_date=_text(life.get("begin")),
        end_date=end_date,
        # "ended" is null in search results and false in lookups (QUIRKS.md): a boolean here.
        ended=life.get("ended") is True or end_date is not None,
        disambiguation=_text(payload.get("disambiguation")),
        aliases=aliases(payload.get("aliases")),
        tags=tags(payload.get("tags")),
        genres=genres(payload.get("genres")),
        rating=rating(payload.get("rating")),
        urls=url_relations(payload.get("relations")),
        isnis=_strings(payload.get("isnis")),
        ipis=_strings(payload.get("ipis")),
    )


def album_item(payload: Mapping[str, Any], artist_mbid: str | None = None) -> AlbumItem:
    """An ``AlbumItem`` from a release group (browse, lookup or dump line).

    ``artist_mbids`` are the credited artists; ``artist_mbid`` (the artist it was browsed
    for) stands in only when the payload carries no artist credit.
    """
    credit = artist_credit(payload.get("artist-credit"))
    mbids = list(dict.fromkeys(entry["mbid"] for entry in credit if entry["mbid"]))
    if not mbids and artist_mbid:
        mbids = [artist_mbid]
    return AlbumItem(
        mbid=payload["id"],
        title=_text(payload.get("title")),
        # null for release groups with only secondary types, such as demos (QUIRKS.md).
        primary_type=_text(payload.get("primary-type")),
        secondary_types=_strings(payload.get("secondary-types")),
        first_release_date=_text(payload.get("first-release-date")),
        disambiguation=_text(payload.get("disambiguation")),
        artist_credit=credit,
        artist_mbids=mbids,
        tags=tags(payload.get("tags")),
        genres=genres(payload.get("genres")),
        rating=rating(payload.get("rating")),
        urls=url_relations(payload.get("relations")),
    )


# Dump entity (``mbdump/<entity>``) → the mapper of its lines.
DUMP_MAPPERS: dict[str, Callable[[Mapping[str, Any]], ContentItem]] = {
    "artist": artist_item,
    "release-group": album_item,
}


def album_key(mbid: str) -> str:
    """A release group's key in a distributed run (an artist's is its bare MBID)."""
    return f"album:{mbid}"


def search_key(query: str, offset: int) -> str:
    """A search page's key in a distributed run (the query last: it may hold ``:``)."""
    return f"search:{offset}:{query}"


def browse_key(mbid: str, offset: int) -> str:
    """A release-group browse page's key in a distributed run."""
    return f"browse:{mbid}:{offset}"


def body_start(response: Response) -> str:
    """The first 200 characters of a body, for a log line (any content type)."""
    return response.body[:200].decode("utf-8", "replace") if response.body else "(empty body)"


def error_message(response: Response) -> str:
    """The ``error`` ws/2 puts in its JSON error bodies, else the start of the body."""
    body = _json_object(response)
    if body is not None and isinstance(body.get("error"), str):
        return body["error"]
    return body_start(response)


def _json_object(response: Response) -> Json | None:
    try:
        body = json.loads(response.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# --- The base spider ----------------------------------------------------------------------


class MusicBrainzSpider(ReplaysFailures, ContentSpider):
    """Artists with their release groups, from ws/2 (``mode=api``) or the dumps (``mode=dump``).

    Spider arguments: ``mode`` (``api``, the default, ``dump`` when ``dump`` is given, or
    ``failed``: replay the requests earlier runs gave up on); in API mode ``query`` (a
    search, Lucene syntax), ``mbids`` (comma-separated) and ``limit`` (artists looked up at
    most); without ``query`` or ``mbids`` the searches in ``MUSICBRAINZ_QUERIES`` run. In
    dump mode ``dump`` (comma-separated paths or URLs of ``<entity>.tar.xz`` archives or
    JSON-lines files), ``entities`` (which of ``DUMP_ENTITIES`` to read from the latest
    dump when ``dump`` is not given) and ``limit`` (records of all the dumps).
    """

    slot = "musicbrainz"
    dump_slot = "musicbrainz_dumps"
    # Dead letters find the record id of a lookup in cb_kwargs["mbid"] (sources/failures.py).
    item_class: ClassVar[type[ContentItem]] = ArtistItem
    distributed_collection = ArtistItem.collection

    spider_arguments: ClassVar[dict[str, Argument]] = {
        "mode": choice(*MODES),
        "query": TEXT,
        "mbids": TEXT,
        "dump": TEXT,
        "entities": subset(*DUMP_MAPPERS),
    }

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
        spider.page_size = max(
            1, min(MAX_PAGE_SIZE, settings.getint("MUSICBRAINZ_PAGE_SIZE", MAX_PAGE_SIZE))
        )
        spider.max_results = max(0, settings.getint("MUSICBRAINZ_SEARCH_MAX_RESULTS", 1000))
        spider.min_score = max(0, settings.getint("MUSICBRAINZ_MIN_SCORE", 0))
        # ";"-separated as -s gives it (a Lucene query may hold commas); a list from settings.py.
        queries = split_list(settings.get("MUSICBRAINZ_QUERIES"), separator=";")
        # A query given twice would be one URL twice: Scrapy's duplicate filter drops it.
        spider.queries = list(dict.fromkeys(queries))
        spider.progress_interval = settings.getfloat("PROGRESS_INTERVAL", 30.0)
        spider.flow = (
            ItemFlow(crawler, settings.getint("DUMP_MAX_PENDING_ITEMS", 16))
            if spider.mode == "dump"
            else None
        )
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
        self.join_distributed_run()
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
            return import_dumps(self, DUMP_MAPPERS)
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
    def api_request(
        self,
        path: str,
        params: Mapping[str, Any],
        inc: Iterable[str] = (),
        **kwargs: Any,
    ) -> Request:
        """A GET of ``<MUSICBRAINZ_API_URL>/<path>`` for JSON, in the musicbrainz slot."""
        query = urlencode({**params, "fmt": "json"})
        if inc:
            # ws/2 joins includes with a literal "+" (it would read %2B as well).
            query += "&inc=" + "+".join(inc)
        return self.request(
            f"{self.api_url}/{path}?{query}",
            headers={"Accept": "application/json"},
            errback=self.request_failed,
            **kwargs,
        )

    def search_request(self, query: str, offset: int) -> Request:
        """One page of an artist search."""
        return self.api_request(
            "artist",
            {"query": query, "limit": self.page_size, "offset": offset},
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
            f"artist/{mbid}",
            {},
            ARTIST_INC,
            callback=self.parse_artist,
            cb_kwargs={"mbid": mbid},
            priority=LOOKUP_PRIORITY,
        )

    def release_group_request(self, mbid: str) -> Request:
        """A release-group lookup: a distributed run's reconcile asks for an album a killed
        worker had browsed but not stored."""
        return self.api_request(
            f"release-group/{mbid}",
            {},
            RELEASE_GROUP_INC,
            callback=self.parse_release_group,
            cb_kwargs={"mbid": mbid},
            priority=BROWSE_PRIORITY,
            # Its dead letter names the release group, not an artist of that MBID.
            meta={"record_id": album_key(mbid)},
        )

    def browse_request(self, mbid: str, offset: int) -> Request:
        """One page of an artist's release groups."""
        return self.api_request(
            "release-group",
            {"artist": mbid, "limit": self.page_size, "offset": offset},
            RELEASE_GROUP_INC,
            callback=self.parse_release_groups,
            cb_kwargs={"mbid": mbid, "offset": offset},
            priority=BROWSE_PRIORITY,
            # A dead letter per page, not one per artist shared with its lookup.
            meta={"record_id": f"{mbid}/release-groups/{offset}"},
        )

    # -- callbacks ----------------------------------------------------------------------
    def _page(
        self, response: Response, list_key: str, count_key: str, what: str
    ) -> tuple[list[Any], int] | None:
        """A search or browse page's entries and total, or None (counted, logged) if it is not."""
        payload = _json_object(response)
        entries = payload.get(list_key) if payload else None
        total = _count(payload.get(count_key)) if payload else None
        if not isinstance(entries, list) or total is None:
            self._lost(response.request, f"not {what}: {body_start(response)!r}")
            return None
        return entries, total

    def parse_search(self, response: Response, query: str, offset: int) -> Iterator[Request]:
        page = self._page(response, "artists", "count", "a search answer")
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
        # ``count`` is the search's total; an empty page ends it too (QUIRKS.md).
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
        payload = _json_object(response)
        if payload is None or not is_mbid(payload.get("id")):
            self._lost(response.request, f"not an artist: {body_start(response)!r}")
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
        page = self._page(
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
        payload = _json_object(response)
        if payload is None or not is_mbid(payload.get("id")):
            self._lost(response.request, f"not a release group: {body_start(response)!r}")
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
            detail = f"HTTP {response.status}: {error_message(response)}"
        elif isinstance(failure.value, IgnoreRequest):
            detail = f"not sent ({failure.value})"
        else:
            detail = f"{type(failure.value).__name__}: {failure.value}"
        self._lost(request, detail)

    def _lost(self, request: Request, detail: str) -> None:
        self.crawler.stats.inc_value("musicbrainz/requests/failed")
        self.logger.error(
            "MusicBrainz request lost: GET %s: %s", redact_url(request.url), redact_text(detail)
        )

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
