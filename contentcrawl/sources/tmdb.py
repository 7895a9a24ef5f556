"""TMDB: the base spider (modes, paging, export streaming, sync state) and pure mappers.

A concrete spider names its kind and mapper; everything else lives here::

    class TmdbMoviesSpider(TmdbSpider):
        name = "tmdb_movies"
        item_class = MovieItem
        api_kind = "movie"
        export_prefix = "movie_ids"
        ...

Modes (``-a mode=``): ``export`` (every id of TMDB's daily ID export), ``changes`` (ids
changed since the last clean sync, falling back to ``export``), ``lists`` (popular, new,
trending), ``ids`` (``-a ids=550,551`` or ``-a ids_file=…``), ``refresh`` (stored records
older than ``-a older_than_days=N``), ``missing`` (ids other stored records reference) and
``failed`` (replays the dead letters of earlier runs).
Every mode ends in one detail request per record with ``append_to_response``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlencode

from scrapy import signals
from scrapy.exceptions import CloseSpider
from scrapy.spidermiddlewares.httperror import HttpError

from contentcrawl.dumps import (
    DownloadError,
    DumpFile,
    DumpReadError,
    ItemFlow,
    fetch_dump,
    import_failed,
)
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.items import (
    CollectionItem,
    CompanyItem,
    ContentItem,
    Json,
    KeywordItem,
    MovieItem,
    NetworkItem,
    PersonItem,
    SeriesItem,
)
from contentcrawl.middlewares.tmdb_auth import tmdb_credentials_configured
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
from contentcrawl.sources.failures import ReplaysFailures
from contentcrawl.store import Store, build_store

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

logger = logging.getLogger(__name__)

# TMDB serves at most 14 days of changes per request and 100 ids per changes page.
CHANGES_WINDOW_DAYS = 14
CHANGES_PAGE_SIZE = 100
# The API refuses pages above 500 on its lists.
MAX_LIST_PAGE = 500
# append_to_response takes at most 20 parts (seasons count as parts).
MAX_APPEND_PARTS = 20
# A missing export file answers 403 (S3 without list permission) or 404.
EXPORT_MISSING_STATUSES = (403, 404)
MODES = ("export", "changes", "lists", "ids", "refresh", "missing", "failed")
# The key of the start's plan in a JOBDIR's spider state (TmdbSpider._plan).
PLAN_STATE = "tmdb_plan"
# Export ids whose stored fetch dates are read in one store round trip.
FRESH_LOOKUP_BATCH = 1000


# --- mappers: TMDB payload -> item (pure) -------------------------------------------------
# A mapper keeps the record when a field has the wrong type (a string where a list belongs,
# a number where an object belongs): the field is left empty and its name appended to
# ``misshapen``, for the spider to count and log.


def _date(payload: Json, name: str, misshapen: list[str] | None) -> str | None:
    """A TMDB date: ``""`` (unknown) becomes None, other text is left to validation."""
    value = payload.get(name)
    if value is None or isinstance(value, str):
        return value or None
    # Not text: a number would pass validation as a Unix timestamp.
    if misshapen is not None:
        misshapen.append(name)
    return None


def image_url(base: str, path: str | None) -> str | None:
    """The full image URL for a TMDB image path (``/abc.jpg``) under ``TMDB_IMAGE_URL``."""
    if not path:
        return None
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


def _list(value: Any, name: str, misshapen: list[str] | None) -> list[Any]:
    """A copy of a list field; [] when it is absent, empty or not a list."""
    if isinstance(value, list):
        return list(value)
    if value and misshapen is not None:
        misshapen.append(name)
    return []


def _object(value: Any, name: str, misshapen: list[str] | None) -> Json:
    """An object field; {} when it is absent, empty or not an object."""
    if isinstance(value, dict):
        return value
    if value and misshapen is not None:
        misshapen.append(name)
    return {}


def _appended(payload: Json, part: str, key: str, misshapen: list[str] | None) -> list[Json]:
    """A list inside an appended part (``keywords.keywords``), [] when not appended."""
    return _list(_object(payload.get(part), part, misshapen).get(key), f"{part}.{key}", misshapen)


def _credits(payload: Json, part: str, misshapen: list[str] | None) -> Json:
    people = _object(payload.get(part), part, misshapen)
    return {
        "cast": _list(people.get("cast"), f"{part}.cast", misshapen),
        "crew": _list(people.get("crew"), f"{part}.crew", misshapen),
    }


def _external_ids(payload: Json, misshapen: list[str] | None) -> Json:
    external_ids = _object(payload.get("external_ids"), "external_ids", misshapen)
    return {k: v for k, v in external_ids.items() if k != "id"}


def artwork(
    payload: Json, image_base: str, *kinds: str, misshapen: list[str] | None = None
) -> Json:
    """``<kind>_path`` and ``<kind>_url`` of each image kind (poster, backdrop, logo,
    profile) under ``TMDB_IMAGE_URL``, and their URLs as ``image_urls`` for the images
    pipeline."""
    fields: Json = {}
    for kind in kinds:
        path = payload.get(f"{kind}_path")
        if path is not None and not isinstance(path, str):
            if misshapen is not None:
                misshapen.append(f"{kind}_path")
            path = None
        fields[f"{kind}_path"] = path
        fields[f"{kind}_url"] = image_url(image_base, path)
    fields["image_urls"] = [fields[f"{kind}_url"] for kind in kinds if fields[f"{kind}_url"]]
    return fields


def map_movie(payload: Json, image_base: str, misshapen: list[str] | None = None) -> MovieItem:
    """A movie detail response (with any of our appended parts) as a ``MovieItem``."""
    external_ids = _external_ids(payload, misshapen)
    return MovieItem(
        tmdb_id=payload["id"],
        imdb_id=payload.get("imdb_id") or external_ids.get("imdb_id"),
        title=payload.get("title"),
        original_title=payload.get("original_title"),
        original_language=payload.get("original_language"),
        overview=payload.get("overview"),
        tagline=payload.get("tagline"),
        status=payload.get("status"),
        release_date=_date(payload, "release_date", misshapen),
        runtime=payload.get("runtime"),
        budget=payload.get("budget"),
        revenue=payload.get("revenue"),
        popularity=payload.get("popularity"),
        vote_average=payload.get("vote_average"),
        vote_count=payload.get("vote_count"),
        adult=payload.get("adult"),
        video=payload.get("video"),
        homepage=payload.get("homepage"),
        genres=_list(payload.get("genres"), "genres", misshapen),
        spoken_languages=_list(payload.get("spoken_languages"), "spoken_languages", misshapen),
        production_countries=_list(
            payload.get("production_countries"), "production_countries", misshapen
        ),
        production_companies=_list(
            payload.get("production_companies"), "production_companies", misshapen
        ),
        origin_country=_list(payload.get("origin_country"), "origin_country", misshapen),
        belongs_to_collection=payload.get("belongs_to_collection"),
        # Movies keep keywords under "keywords", TV under "results" (QUIRKS.md).
        keywords=_appended(payload, "keywords", "keywords", misshapen),
        credits=_credits(payload, "credits", misshapen),
        external_ids=external_ids,
        release_dates=_appended(payload, "release_dates", "results", misshapen),
        alternative_titles=_appended(payload, "alternative_titles", "titles", misshapen),
        translations=_appended(payload, "translations", "translations", misshapen),
        videos=_appended(payload, "videos", "results", misshapen),
        **artwork(payload, image_base, "poster", "backdrop", misshapen=misshapen),
    )


def map_series(payload: Json, image_base: str, misshapen: list[str] | None = None) -> SeriesItem:
    """A TV series detail response as a ``SeriesItem`` (aggregate credits preferred)."""
    return SeriesItem(
        tmdb_id=payload["id"],
        name=payload.get("name"),
        original_name=payload.get("original_name"),
        original_language=payload.get("original_language"),
        overview=payload.get("overview"),
        tagline=payload.get("tagline"),
        status=payload.get("status"),
        type=payload.get("type"),
        first_air_date=_date(payload, "first_air_date", misshapen),
        last_air_date=_date(payload, "last_air_date", misshapen),
        in_production=payload.get("in_production"),
        number_of_seasons=payload.get("number_of_seasons"),
        number_of_episodes=payload.get("number_of_episodes"),
        episode_run_time=_list(payload.get("episode_run_time"), "episode_run_time", misshapen),
        genres=_list(payload.get("genres"), "genres", misshapen),
        networks=_list(payload.get("networks"), "networks", misshapen),
        production_companies=_list(
            payload.get("production_companies"), "production_companies", misshapen
        ),
        origin_country=_list(payload.get("origin_country"), "origin_country", misshapen),
        production_countries=_list(
            payload.get("production_countries"), "production_countries", misshapen
        ),
        spoken_languages=_list(payload.get("spoken_languages"), "spoken_languages", misshapen),
        languages=_list(payload.get("languages"), "languages", misshapen),
        created_by=_list(payload.get("created_by"), "created_by", misshapen),
        seasons=_list(payload.get("seasons"), "seasons", misshapen),
        # null once a series has ended (next) or before it airs (last): None, not {}.
        last_episode_to_air=_object(
            payload.get("last_episode_to_air"), "last_episode_to_air", misshapen
        )
        or None,
        next_episode_to_air=_object(
            payload.get("next_episode_to_air"), "next_episode_to_air", misshapen
        )
        or None,
        # TV keeps alternative titles under "results", movies under "titles".
        alternative_titles=_appended(payload, "alternative_titles", "results", misshapen),
        credits=_credits(
            payload,
            "aggregate_credits" if payload.get("aggregate_credits") else "credits",
            misshapen,
        ),
        keywords=_appended(payload, "keywords", "results", misshapen),
        external_ids=_external_ids(payload, misshapen),
        content_ratings=_appended(payload, "content_ratings", "results", misshapen),
        popularity=payload.get("popularity"),
        vote_average=payload.get("vote_average"),
        vote_count=payload.get("vote_count"),
        adult=payload.get("adult"),
        homepage=payload.get("homepage"),
        **artwork(payload, image_base, "poster", "backdrop", misshapen=misshapen),
    )


def map_person(payload: Json, image_base: str, misshapen: list[str] | None = None) -> PersonItem:
    """A person detail response as a ``PersonItem``."""
    external_ids = _external_ids(payload, misshapen)
    return PersonItem(
        tmdb_id=payload["id"],
        imdb_id=payload.get("imdb_id") or external_ids.get("imdb_id"),
        name=payload.get("name"),
        also_known_as=_list(payload.get("also_known_as"), "also_known_as", misshapen),
        biography=payload.get("biography"),
        birthday=_date(payload, "birthday", misshapen),
        deathday=_date(payload, "deathday", misshapen),
        place_of_birth=payload.get("place_of_birth"),
        gender=payload.get("gender"),
        known_for_department=payload.get("known_for_department"),
        homepage=payload.get("homepage"),
        popularity=payload.get("popularity"),
        adult=payload.get("adult"),
        external_ids=external_ids,
        movie_credits=_credits(payload, "movie_credits", misshapen),
        tv_credits=_credits(payload, "tv_credits", misshapen),
        **artwork(payload, image_base, "profile", misshapen=misshapen),
    )


def map_collection(
    payload: Json, image_base: str, misshapen: list[str] | None = None
) -> CollectionItem:
    """A collection detail response as a ``CollectionItem``."""
    return CollectionItem(
        tmdb_id=payload["id"],
        name=payload.get("name"),
        overview=payload.get("overview"),
        parts=_list(payload.get("parts"), "parts", misshapen),
        **artwork(payload, image_base, "poster", "backdrop", misshapen=misshapen),
    )


def map_company(payload: Json, image_base: str, misshapen: list[str] | None = None) -> CompanyItem:
    """A company detail response as a ``CompanyItem``."""
    return CompanyItem(
        tmdb_id=payload["id"],
        name=payload.get("name"),
        description=payload.get("description"),
        headquarters=payload.get("headquarters"),
        homepage=payload.get("homepage"),
        origin_country=payload.get("origin_country"),
        parent_company=payload.get("parent_company"),
        **artwork(payload, image_base, "logo", misshapen=misshapen),
    )


def map_network(payload: Json, image_base: str, misshapen: list[str] | None = None) -> NetworkItem:
    """A TV network detail response as a ``NetworkItem``."""
    return NetworkItem(
        tmdb_id=payload["id"],
        name=payload.get("name"),
        headquarters=payload.get("headquarters"),
        homepage=payload.get("homepage"),
        origin_country=payload.get("origin_country"),
        **artwork(payload, image_base, "logo", misshapen=misshapen),
    )


def map_keyword(payload: Json, image_base: str, misshapen: list[str] | None = None) -> KeywordItem:
    """A keyword (detail response or export line: both are ``{id, name}``) as a ``KeywordItem``.

    Takes the arguments every mapper takes; a keyword has no field to misshape.
    """
    return KeywordItem(tmdb_id=payload["id"], name=payload.get("name"))


# --- item filters ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordFilters:
    """Filters users apply to records before storing them; all off by default."""

    min_budget: int = 0
    min_revenue: int = 0
    # Among "genres", "cast", "crew": records where that list is empty are filtered.
    require: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.min_budget or self.min_revenue or self.require)


FILTERABLE = frozenset({"genres", "cast", "crew"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def filter_reason(item: ContentItem, filters: RecordFilters) -> str | None:
    """Why ``filters`` reject ``item`` (a stat name such as ``min_budget``), or None."""
    # A budget or revenue that is not a number is unknown, as a missing one is.
    budget = getattr(item, "budget", None)
    if filters.min_budget and _is_number(budget) and budget < filters.min_budget:
        return "min_budget"
    revenue = getattr(item, "revenue", None)
    if filters.min_revenue and _is_number(revenue) and revenue < filters.min_revenue:
        return "min_revenue"
    for name in sorted(filters.require):
        if name == "genres":
            values = getattr(item, "genres", None)
        else:
            values = (getattr(item, "credits", None) or {}).get(name)
        if values is not None and not values:
            return f"no_{name}"
    return None


# --- exports -------------------------------------------------------------------------


def export_file_name(prefix: str, day: date) -> str:
    """The daily export's file name: ``movie_ids_05_15_2024.json.gz``."""
    return f"{prefix}_{day:%m_%d_%Y}.json.gz"


# Ids are kept in an array("l"): anything it cannot hold is no TMDB id.
_MAX_TMDB_ID = 2 ** (8 * array("l").itemsize - 1) - 1


def _is_tmdb_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_TMDB_ID


@dataclass
class ExportSelection:
    """Ids kept from an export file (4 bytes each), with counts of what was skipped."""

    ids: array = field(default_factory=lambda: array("l"))
    skipped: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0


def select_export_ids(
    lines: Iterable[str | bytes],
    *,
    include_adult: bool = False,
    include_video: bool = False,
    min_popularity: float | None = None,
    limit: int | None = None,
) -> ExportSelection:
    """Read export JSON lines; keep ids that pass the adult / video / popularity filters."""
    selection = ExportSelection()
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            tmdb_id = entry["id"]
        except (ValueError, KeyError, TypeError, RecursionError):
            tmdb_id = None
        if not _is_tmdb_id(tmdb_id):
            selection.bad_lines += 1
            continue
        if entry.get("adult") and not include_adult:
            selection.skipped["adult"] += 1
            continue
        if entry.get("video") and not include_video:
            selection.skipped["video"] += 1
            continue
        popularity = entry.get("popularity")
        # A popularity that is not a number is unknown, as a missing one is: the id is kept.
        if min_popularity is not None and _is_number(popularity) and popularity < min_popularity:
            selection.skipped["popularity"] += 1
            continue
        selection.ids.append(tmdb_id)
        if limit is not None and len(selection.ids) >= limit:
            break
    return selection


def export_published(url: str, *, user_agent: str, timeout: float) -> bool:
    """Whether an export file is published (blocking ``HEAD``: run it off the reactor thread).

    A missing file answers 403 (S3 without list permission) or 404; other errors raise.
    """
    request = urllib.request.Request(  # noqa: S310 - the http(s) TMDB_EXPORTS_URL
        url, method="HEAD", headers={"User-Agent": user_agent}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return True
    except urllib.error.HTTPError as error:
        if error.code in EXPORT_MISSING_STATUSES:
            return False
        raise DownloadError(f"{redact_url(url)}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"{redact_url(url)}: {error.reason}") from None


# --- changes and lists --------------------------------------------------------------------


def change_windows(since: date, until: date) -> list[tuple[date, date]]:
    """``since``..``until`` cut into windows of at most 14 days (at least one window)."""
    windows = []
    start = since
    while True:
        end = min(start + timedelta(days=CHANGES_WINDOW_DAYS), until)
        windows.append((start, end))
        if end >= until:
            return windows
        start = end


def _total(value: Any) -> int:
    """A listing's total (pages, results); 0 when it is missing or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def listed_ids(payload: Json) -> tuple[list[tuple[Json, int]], list[Any]]:
    """The ``(entry, id)`` of a listing page's results with an id, and the entries without."""
    results = payload.get("results")
    entries = results if isinstance(results, list) else []
    listed, unusable = [], []
    for entry in entries:
        tmdb_id = entry.get("id") if isinstance(entry, dict) else None
        if _is_tmdb_id(tmdb_id):
            listed.append((entry, tmdb_id))
        else:
            unusable.append(entry)
    if results and not isinstance(results, list):
        unusable.append(results)
    return listed, unusable


def next_page(payload: Json, page: int, page_size: int = CHANGES_PAGE_SIZE) -> int | None:
    """The page to ask for after ``page``, or None when the listing is done.

    TMDB's totals are not trusted alone: ``/changes`` once answered ``total_pages: 1``
    with 1,637 results on that page (QUIRKS.md). A full page means there may be more; an
    empty or short page beyond the stated total ends the listing.
    """
    results = payload.get("results")
    if not isinstance(results, list) or not results:
        return None
    total_pages = _total(payload.get("total_pages"))
    if page < total_pages or len(results) >= page_size:
        return page + 1
    return None


# --- missing: which ids stored records reference ------------------------------------------


def _ids_in(entries: Iterable[Any]) -> Iterator[int]:
    for entry in entries or ():
        if isinstance(entry, dict) and isinstance(entry.get("id"), int):
            yield entry["id"]


def credit_person_ids(document: Json) -> Iterator[int]:
    """People in a movie's or series' credits (cast, crew) and a series' creators."""
    yield from _credit_ids(document.get("credits"))
    yield from _ids_in(document.get("created_by"))


def collection_ids(document: Json) -> Iterator[int]:
    """The collection a movie belongs to."""
    yield from _ids_in([document.get("belongs_to_collection")])


def company_ids(document: Json) -> Iterator[int]:
    """Production companies of a movie or series, and a company's parent."""
    yield from _ids_in(document.get("production_companies"))
    yield from _ids_in([document.get("parent_company")])


def network_ids(document: Json) -> Iterator[int]:
    """Networks of a series."""
    yield from _ids_in(document.get("networks"))


def keyword_ids(document: Json) -> Iterator[int]:
    """Keywords of a movie or series."""
    yield from _ids_in(document.get("keywords"))


def collection_part_ids(document: Json) -> Iterator[int]:
    """Movies of a collection."""
    yield from _ids_in(document.get("parts"))


def person_movie_ids(document: Json) -> Iterator[int]:
    """Movies in a person's credits."""
    yield from _credit_ids(document.get("movie_credits"))


def person_series_ids(document: Json) -> Iterator[int]:
    """Series in a person's credits."""
    yield from _credit_ids(document.get("tv_credits"))


def _credit_ids(part: Json | None) -> Iterator[int]:
    part = part or {}
    yield from _ids_in(part.get("cast"))
    yield from _ids_in(part.get("crew"))


Extractor = Callable[[Json], Iterable[int]]


def changes_key(start: date, end: date, page: int) -> str:
    """A changes page's key in a distributed run (a ``:`` marks a key with no record)."""
    return f"changes:{start.isoformat()}:{end.isoformat()}:{page}"


def list_key(path: str, page: int) -> str:
    """A list page's key in a distributed run (the path last: it may hold anything)."""
    return f"list:{page}:{path}"


def parse_ids(text: str) -> list[int]:
    """``-a ids=550,551``: comma or whitespace separated positive integers."""
    ids = []
    for token in text.replace(",", " ").split():
        if not token.isdigit() or int(token) < 1:
            raise ValueError(f"not a TMDB id: {token!r}")
        ids.append(int(token))
    return ids


def read_ids_file(path: str | Path) -> list[int]:
    """``-a ids_file=…``: one id per line; blank lines and ``#`` comments are skipped."""
    ids = []
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                ids.extend(parse_ids(text))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return ids


def _list_pages(text: str) -> int:
    """``-a pages=N``: list pages to read, 1 to ``MAX_LIST_PAGE`` (TMDB serves no more)."""
    pages = int(text) if text.isdigit() else 0
    if not 1 <= pages <= MAX_LIST_PAGE:
        raise ValueError(text)
    return pages


# --- the spider --------------------------------------------------------------------------


Step = TypeVar("Step")


def not_handed_over(plan: dict[str, Any], steps: Sequence[Step]) -> Iterator[Step]:
    """The steps of a start plan past those handed over, each counted as it is taken."""
    for index in range(plan["handed_over"], len(steps)):
        plan["handed_over"] = index + 1
        yield steps[index]


class TmdbSpider(ReplaysFailures, ContentSpider):
    """Base of the TMDB spiders: one kind of record, six ways to find its ids.

    Subclasses set ``name``, ``item_class``, ``api_kind`` (the path segment of the detail
    endpoint), ``export_prefix``, ``mapper`` and optionally ``append_to_response``,
    ``has_adult_export``, ``has_changes``, ``list_paths``, ``references`` (pairs of a
    collection and a function listing the ids of this kind a stored document of that
    collection references) and ``export_has_records`` (the export line is the whole record).
    """

    slot = "tmdb"
    item_class: ClassVar[type[ContentItem]]
    api_kind: ClassVar[str]
    export_prefix: ClassVar[str]
    # (payload, image base, misshapen) → item; see map_movie.
    mapper: ClassVar[Callable[[Json, str, list[str]], ContentItem]]
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
        "pages": Argument(_list_pages, f"a whole number from 1 to {MAX_LIST_PAGE}"),
        "min_budget": NON_NEGATIVE,
        "min_revenue": NON_NEGATIVE,
        "require": subset(*sorted(FILTERABLE)),
    }

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
        self._filter_args = {
            "min_budget": options.get("min_budget"),
            "min_revenue": options.get("min_revenue"),
            "require": options.get("require"),
        }
        self._queued: set[int] = set()
        self._outstanding = 0
        self._backlog_token = secrets.token_hex(8)
        self._room = asyncio.Event()
        self._done = 0
        self._total: int | None = None
        self._started = time.monotonic()
        self._next_progress = 0.0
        self._rejected = False
        # Ids TMDB answered 404 for (deleted or merged): flagged in the store at the end.
        self._not_found: set[int] = set()
        # Bad lines of the export files read (kinds whose export line is the record), and
        # whether one was bad enough to fail the import.
        self._export_bad_lines = 0
        self._export_failed = False
        # Open while an export's plan is gone through: the fetch dates of its ids.
        self._export_store: Store | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider._configure(crawler)
        return spider

    def _configure(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.api_url = settings.get("TMDB_API_URL").rstrip("/")
        self.exports_url = settings.get("TMDB_EXPORTS_URL").rstrip("/")
        self.image_base = settings.get("TMDB_IMAGE_URL")
        self.language = settings.get("TMDB_LANGUAGE") or "en-US"
        self.changes_max_age = settings.getint("TMDB_CHANGES_MAX_AGE_DAYS", 90)
        self.backlog = max(1, settings.getint("TMDB_START_BACKLOG", 200))
        self.progress_interval = settings.getfloat("TMDB_PROGRESS_INTERVAL", 60.0)
        if self.list_pages is None:
            self.list_pages = settings.getint("TMDB_LIST_PAGES", 5)
        self.list_pages = max(1, min(self.list_pages, MAX_LIST_PAGE))
        if self.older_than_days is None:
            self.older_than_days = settings.getint("TMDB_REFRESH_DAYS", 30)
        self.filters = self._build_filters(settings)
        self.stat_prefix = f"tmdb/{self.item_class.collection}"
        crawler.signals.connect(self._flag_deleted, signal=signals.spider_closed)
        crawler.signals.connect(self._close_export_store, signal=signals.spider_closed)

    def _build_filters(self, settings: BaseSettings) -> RecordFilters:
        args = self._filter_args
        min_budget = args["min_budget"] or settings.getint("TMDB_MIN_BUDGET", 0)
        min_revenue = args["min_revenue"] or settings.getint("TMDB_MIN_REVENUE", 0)
        names = set(args["require"] or settings.getlist("TMDB_REQUIRE"))
        unknown = names - FILTERABLE
        if unknown:
            raise ValueError(
                f"TMDB_REQUIRE takes {', '.join(sorted(FILTERABLE))}, not {sorted(unknown)}"
            )
        return RecordFilters(int(min_budget), int(min_revenue), frozenset(names))

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
        self._queued = self.resumed("tmdb_queued", self._queued)
        self.join_distributed_run()
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
        modes = {
            "export": self._start_export,
            "changes": self._start_changes,
            "lists": self._start_lists,
            "ids": self._start_ids,
            "refresh": self._start_refresh,
            "missing": self._start_missing,
            "failed": self.replay_failures,
        }
        return modes[self.mode]()

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
            request = self._changes_request(
                date.fromisoformat(start), date.fromisoformat(end), int(page)
            )
            return request.replace(dont_filter=True)
        if kind == "list":
            page, _, path = rest.partition(":")
            return self._list_request(path, int(page)).replace(dont_filter=True)
        tmdb_id = int(key)
        params: dict[str, Any] = {"language": self.language}
        if self.append_to_response:
            params["append_to_response"] = ",".join(self.append_to_response)
        return self._api_request(
            f"{self.api_kind}/{tmdb_id}",
            params,
            callback=self.parse_record,
            errback=self.errback_record,
            cb_kwargs={"tmdb_id": tmdb_id},
            priority=1,
            dont_filter=True,
        )

    async def _start_ids(self) -> AsyncIterator[Any]:
        # Other ids with the same JOBDIR are another job: they do not resume this one.
        given = ",".join(map(str, self.ids)).encode()
        kind = f"ids:{hashlib.sha1(given).hexdigest()[:16]}"  # noqa: S324 - no secret
        plan = self._resumed_plan(kind) or self._new_plan(kind, ids=self.ids)
        async for request in self._detail_requests(plan):
            yield request

    async def _start_export(self) -> AsyncIterator[Any]:
        if self.export_has_records:
            # Read again from its start when resumed, as a dump is: a record already stored
            # costs a read, not a write.
            paths, day = await self._fetch_exports()
            async for item in self._export_records(paths):
                yield item
            if self._export_failed:
                return
        else:
            plan = self._resumed_plan("export") or self._new_plan(
                "export", **await self._export_plan()
            )
            day = date.fromisoformat(plan["day"])
            # A record fetched on or after the export's day is as new as the export: a run
            # after one that was killed (no JOBDIR) fetches only what that one did not store.
            fresh_since = f"{day.isoformat()}T00:00:00Z"
            async for request in self._detail_requests(plan, fresh_since=fresh_since):
                yield request
            skipped = self.crawler.stats.get_value(f"{self.stat_prefix}/export/skipped_fresh")
            if skipped:
                self.logger.info(
                    "Export of %s: %d ids skipped, their records fetched since %s",
                    day,
                    skipped,
                    day,
                )
            await self._close_export_store()
        if self.limit is None:
            self.sync.stage(f"{self.name}/export", {"date": day.isoformat()})
            if self.has_changes:
                self.sync.stage(f"{self.name}/changes", {"synced_through": day.isoformat()})

    async def _fetch_exports(self) -> tuple[list[Path], date]:
        """The export files to read (the adult one too when asked for) and their day."""
        found = await self._fetch_export(self.export_prefix)
        if found is None:
            raise CloseSpider("tmdb_export_unavailable")
        path, day = found
        paths = [path]
        if self.include_adult and self.has_adult_export:
            adult = await self._fetch_export(f"adult_{self.export_prefix}", day)
            if adult is None:
                self.logger.warning("No adult export for %s: adult ids not included", day)
            else:
                paths.append(adult[0])
        return paths, day

    async def _export_plan(self) -> dict[str, Any]:
        """The ids of the latest export (``ids``) and its day (``day``)."""
        paths, day = await self._fetch_exports()
        ids = array("l")
        for export_path in paths:
            limit = None if self.limit is None else self.limit - len(ids)
            if limit == 0:
                break
            selection, damage = await asyncio.to_thread(self._select, export_path, limit)
            self._count_selection(export_path, selection, damage)
            ids.extend(selection.ids)
        self.logger.info("Export of %s: %d ids to fetch", day, len(ids))
        return {"ids": ids, "day": day.isoformat()}

    def _select(self, path: Path, limit: int | None) -> tuple[ExportSelection, str | None]:
        """The ids of one export file, and where it is damaged if it is (worker thread)."""
        damage: list[str] = []

        def lines() -> Iterator[bytes]:
            with DumpFile(path) as dump:
                try:
                    for _, line in dump.lines():
                        yield line
                except DumpReadError as error:
                    damage.append(str(error))

        selection = select_export_ids(
            lines(),
            include_adult=self.include_adult or path.name.startswith("adult_"),
            include_video=self.include_video,
            min_popularity=self.min_popularity,
            limit=limit,
        )
        return selection, damage[0] if damage else None

    def _count_selection(self, path: Path, selection: ExportSelection, damage: str | None) -> None:
        for reason, count in selection.skipped.items():
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/skipped_{reason}", count)
        if selection.bad_lines:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/bad_line", selection.bad_lines)
            self.logger.warning("%s: %d unreadable lines skipped", path.name, selection.bad_lines)
        if damage:
            self._export_damaged(path, damage)

    def _export_damaged(self, path: Path, damage: str) -> None:
        # What was read before the damage is still used; the error keeps the sync state
        # where it was, so the next run starts from a good file again.
        self.crawler.stats.inc_value(f"{self.stat_prefix}/export/damaged")
        self.logger.error("Export %s is damaged at %s", path.name, damage)

    async def _export_records(self, paths: list[Path]) -> AsyncIterator[Any]:
        """Items straight from export lines, for kinds whose line is the whole record."""
        flow = ItemFlow(self.crawler, self.settings.getint("STORE_BATCH_SIZE", 500) * 2)
        count = 0
        for path in paths:
            bad_before = self._export_bad_lines
            with DumpFile(path) as dump:
                try:
                    for number, line in dump.lines():
                        item = self._export_record(path, number, line)
                        if item is None:
                            continue
                        yield item
                        if not await flow.sent():
                            return
                        count += 1
                        if self.limit is not None and count >= self.limit:
                            return
                except DumpReadError as error:
                    self._export_bad_lines += 1
                    self._export_damaged(path, str(error))
                lines = dump.line_number
            if import_failed(
                self.crawler, "tmdb", path.name, lines, self._export_bad_lines - bad_before
            ):
                self._export_failed = True

    def _export_record(self, path: Path, number: int, line: bytes) -> ContentItem | None:
        """The item of one export line; None for a blank line or a bad one (counted, logged)."""
        if not line.strip():
            return None
        misshapen: list[str] = []
        try:
            item = type(self).mapper(json.loads(line), self.image_base, misshapen)
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            self._export_bad_lines += 1
            self.crawler.stats.inc_value(f"{self.stat_prefix}/export/bad_line")
            self.logger.warning("%s line %d skipped: %s", path.name, number, repr(error)[:200])
            return None
        self._count_misshapen(getattr(item, item.key_field), misshapen)
        return item

    async def _fetch_export(self, prefix: str, day: date | None = None) -> tuple[Path, date] | None:
        """Today's export file (UTC), else the previous day's; None when neither exists."""
        today = datetime.now(UTC).date()
        days = [day] if day else [today, today - timedelta(days=1)]
        for candidate in days:
            url = f"{self.exports_url}/{export_file_name(prefix, candidate)}"
            published = await asyncio.to_thread(
                export_published,
                url,
                user_agent=self.settings.get("USER_AGENT") or "contentcrawl",
                timeout=self.settings.getfloat("DOWNLOAD_TIMEOUT", 60.0),
            )
            if not published:
                self.logger.info("Export %s is not published (yet)", redact_url(url))
                continue
            result = await fetch_dump(self.crawler, url)
            return result.path, candidate
        self.logger.error("No TMDB export %s for %s", prefix, " or ".join(map(str, days)))
        return None

    async def _start_changes(self) -> AsyncIterator[Any]:
        store_name = f"{self.name}/changes"
        state = await self.sync.load(store_name)
        today = datetime.now(UTC).date()
        since = date.fromisoformat(state["synced_through"]) if state else None
        if since is None:
            self.logger.info("%s: no previous sync, running an export instead", self.name)
        elif (today - since).days > self.changes_max_age:
            self.logger.warning(
                "%s: last sync %s is older than TMDB keeps changes for (%d days): "
                "running an export instead",
                self.name,
                since,
                self.changes_max_age,
            )
            since = None
        if since is None:
            self.crawler.stats.set_value(f"{self.stat_prefix}/changes/fallback_to_export", 1)
            async for request_or_item in self._start_export():
                yield request_or_item
            return
        # Resumed (JOBDIR) on a later day, the windows stay those of the stopped run: their
        # later pages and ids wait in its queue.
        kind = f"changes:{since.isoformat()}"
        plan = self._resumed_plan(kind) or self._new_plan(kind, until=today.isoformat())
        until = date.fromisoformat(plan["until"])
        windows = change_windows(since, until)
        self.logger.info("Changes since %s: %d window(s)", since, len(windows))
        for start, end in not_handed_over(plan, windows):
            yield self._changes_request(start, end, 1)
        if self.limit is None:
            self.sync.stage(store_name, {"synced_through": until.isoformat()})

    def _changes_request(self, start: date, end: date, page: int) -> Request:
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
        payload = self._payload(response)
        if payload is None:
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/changes/pages")
        ids = []
        for entry, tmdb_id in self._listed(payload, "changes"):
            # Entries may carry "adult": null (QUIRKS.md): only true means adult.
            if entry.get("adult") and not self.include_adult:
                self.crawler.stats.inc_value(f"{self.stat_prefix}/changes/skipped_adult")
                continue
            ids.append(tmdb_id)
        found = list(self._detail_requests_now(ids))
        following = next_page(payload, page)
        if following is not None and not self._limit_reached():
            found.append(self._changes_request(start, end, following))
        self.account_for_page(
            changes_key(start, end, page), [self.distributed_key(request) for request in found]
        )
        yield from found

    async def _start_lists(self) -> AsyncIterator[Any]:
        plan = self._resumed_plan("lists") or self._new_plan("lists")
        for path in not_handed_over(plan, self.list_paths):
            yield self._list_request(path, 1)

    def _list_request(self, path: str, page: int) -> Request:
        return self._api_request(
            path,
            {"language": self.language, "page": page},
            callback=self.parse_list,
            errback=self.errback_listing,
            cb_kwargs={"path": path, "page": page},
        )

    def parse_list(self, response: Response, path: str, page: int) -> Iterator[Any]:
        """One page of a popular / new / trending list: detail requests, then the next page."""
        payload = self._payload(response)
        if payload is None:
            return
        self.crawler.stats.inc_value(f"{self.stat_prefix}/lists/pages")
        ids = [tmdb_id for _, tmdb_id in self._listed(payload, "lists")]
        found = list(self._detail_requests_now(ids))
        # Lists have truthful totals and 20 results per page.
        if (
            page < min(_total(payload.get("total_pages")), self.list_pages)
            and not self._limit_reached()
        ):
            found.append(self._list_request(path, page + 1))
        self.account_for_page(
            list_key(path, page), [self.distributed_key(request) for request in found]
        )
        yield from found

    async def _start_refresh(self) -> AsyncIterator[Any]:
        plan = self._resumed_plan("refresh") or self._new_plan(
            "refresh", ids=await self._stale_ids_now()
        )
        async for request in self._detail_requests(plan):
            yield request

    async def _stale_ids_now(self) -> list[int]:
        """The stored records not fetched for ``older_than_days``."""
        cutoff = datetime.now(UTC) - timedelta(days=self.older_than_days)
        ids = await self._in_store(self._stale_ids, cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.logger.info(
            "%d %s not fetched for %d days",
            len(ids),
            self.item_class.collection,
            self.older_than_days,
        )
        return ids

    def _stale_ids(self, store: Any, cutoff: str) -> list[int]:
        return [
            document[self.item_class.key_field]
            for document in store.iter_documents(self.item_class.collection)
            if (document.get("_meta") or {}).get("fetched_at", "") <= cutoff
            and not (document.get("_meta") or {}).get("deleted_at")
        ]

    async def _start_missing(self) -> AsyncIterator[Any]:
        plan = self._resumed_plan("missing") or self._new_plan(
            "missing", ids=await self._missing_ids_now()
        )
        async for request in self._detail_requests(plan):
            yield request

    async def _missing_ids_now(self) -> list[int]:
        """The ids stored records reference that the store lacks."""
        ids = await self._in_store(self._missing_ids)
        self.logger.info("%d %s referenced but not stored", len(ids), self.item_class.collection)
        return ids

    def _missing_ids(self, store: Any) -> list[int]:
        referenced: set[int] = set()
        for collection, extractor in self.references:
            for document in store.iter_documents(collection):
                referenced.update(extractor(document))
        key_field = self.item_class.key_field
        for document in store.iter_documents(self.item_class.collection):
            referenced.discard(document[key_field])
        return sorted(referenced)

    # -- detail requests ------------------------------------------------------------------
    # A plan is what a ``start()`` goes through (``ids`` for detail requests, whatever else
    # its mode needs) and ``handed_over``, how much of it went to the engine. With JOBDIR it
    # is kept in the job's state: a run resuming a stopped one goes on with that run's plan
    # past what it handed over (waiting in the job's queue, or done), rather than make a new
    # one from a store, a clock or a daily export that have moved on since, and fetch again
    # what was fetched.
    def _new_plan(self, kind: str, **parts: Any) -> dict[str, Any]:
        """A plan of ``kind`` (the mode, and what makes two plans of it the same)."""
        plan = {"kind": kind, "handed_over": 0, **parts}
        if self.job_state is not None:
            self.job_state[PLAN_STATE] = plan
        return plan

    def _resumed_plan(self, kind: str) -> dict[str, Any] | None:
        """The plan of ``kind`` of the stopped run this one resumes (JOBDIR), if any."""
        state = self.job_state
        plan = state.get(PLAN_STATE) if state is not None else None
        if plan is None or plan["kind"] != kind:
            return None
        self.logger.info(
            "Resuming the stopped run's %s (JOBDIR): %d handed over already",
            kind,
            plan["handed_over"],
        )
        return plan

    async def _detail_requests(
        self, plan: dict[str, Any], *, fresh_since: str | None = None
    ) -> AsyncIterator[Request]:
        """Detail requests for ``plan["ids"]`` past those handed over, from ``start()``, never
        more than ``TMDB_START_BACKLOG`` unanswered; with ``fresh_since``, none for an id
        the store holds a record of fetched since then (counted ``export/skipped_fresh``).

        An export holds about a million ids: queueing them all at once would put a million
        requests in the scheduler's memory.
        """
        ids = plan["ids"]
        self._expect(len(ids) - plan["handed_over"])
        fresh: set[int] = set()
        looked_up_to = plan["handed_over"]
        for index in range(plan["handed_over"], len(ids)):
            if self._limit_reached():
                return
            if fresh_since is not None and index >= looked_up_to:
                looked_up_to = min(index + FRESH_LOOKUP_BATCH, len(ids))
                fresh = await self._fetched_since(ids[index:looked_up_to], fresh_since)
            if ids[index] in fresh:
                plan["handed_over"] = index + 1
                self.crawler.stats.inc_value(f"{self.stat_prefix}/export/skipped_fresh")
                if self._total is not None:
                    self._total -= 1
                continue
            if self.distributed is None:
                # Distributed, answers come back to other workers: the shared queue's length
                # bounds it.
                while self._outstanding >= self.backlog:
                    self._room.clear()
                    await self._room.wait()
            request = self._detail_request(ids[index])
            # Counted as the engine takes it: a run stopped while waiting for room resumes
            # with this id.
            plan["handed_over"] = index + 1
            if request is None:
                continue
            if self.distributed is None:
                # This run's own requests: a resumed run's answers to the stopped run's
                # requests (JOBDIR) take no room they did not take.
                request.meta["tmdb_backlog"] = self._backlog_token
                self._outstanding += 1
            yield request

    def _detail_requests_now(self, ids: Iterable[int]) -> Iterator[Request]:
        for tmdb_id in ids:
            if self._limit_reached():
                return
            request = self._detail_request(tmdb_id)
            if request is not None:
                yield request

    def _limit_reached(self) -> bool:
        return self.limit is not None and len(self._queued) >= self.limit

    def _detail_request(self, tmdb_id: int) -> Request | None:
        if tmdb_id in self._queued:
            return None
        self._queued.add(tmdb_id)
        self.crawler.stats.inc_value(f"{self.stat_prefix}/requested")
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
        )

    def _api_request(self, path: str, params: dict[str, Any], **kwargs: Any) -> Request:
        meta = {"handle_httpstatus_list": [401, 404]}
        # Alone, a worker de-duplicates ids itself (the dupefilter would only hold a million
        # fingerprints); distributed, the shared Redis dupefilter does it across workers.
        kwargs.setdefault("dont_filter", self.distributed is None)
        return self.request(f"{self.api_url}/{path}?{urlencode(params)}", meta=meta, **kwargs)

    def parse_record(self, response: Response, tmdb_id: int) -> Iterator[Any]:
        """A detail response: the record's item (or a 404 counted as not found)."""
        try:
            payload = self._payload(response, tmdb_id)
            if payload is None:
                return
            misshapen: list[str] = []
            try:
                item = type(self).mapper(payload, self.image_base, misshapen)
            except (KeyError, TypeError, ValueError) as error:
                self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
                self.logger.warning("Unusable %s %s payload (%s)", self.api_kind, tmdb_id, error)
                return
            self._count_misshapen(tmdb_id, misshapen)
            if self.episodes and isinstance(item, SeriesItem) and item.seasons:
                yield from self._season_requests(item, 0)
                return
            yield from self._emit(item)
        finally:
            self._answered(response.request)

    def _season_requests(self, item: SeriesItem, first: int) -> Iterator[Any]:
        numbers = [_season_number(season) for season in item.seasons]
        chunk = [n for n in numbers if n is not None][first : first + MAX_APPEND_PARTS]
        # A record without a usable id gets no request built on it (validation drops it).
        if not chunk or not _is_tmdb_id(item.tmdb_id):
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
        payload = self._payload(response, tmdb_id)
        if payload is None:
            return
        misshapen: list[str] = []
        for season in item.seasons:
            number = _season_number(season)
            appended = payload.get(f"season/{number}") if number is not None else None
            if appended is not None:
                part = _object(appended, f"season/{number}", misshapen)
                season["episodes"] = _list(
                    part.get("episodes"), f"season/{number}.episodes", misshapen
                )
        self._count_misshapen(tmdb_id, misshapen)
        self.crawler.stats.inc_value(f"{self.stat_prefix}/season_pages")
        yield from self._season_requests(item, first + MAX_APPEND_PARTS)

    def _count_misshapen(self, tmdb_id: int, misshapen: list[str]) -> None:
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

    def _listed(self, payload: Json, listing: str) -> list[tuple[Json, int]]:
        """The entries of a changes or list page with an id; the others counted and logged."""
        listed, unusable = listed_ids(payload)
        for entry in unusable:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/{listing}/invalid")
            self.logger.warning("Skipping a TMDB %s entry without an id: %.200r", listing, entry)
        return listed

    def _emit(self, item: ContentItem) -> Iterator[ContentItem]:
        reason = filter_reason(item, self.filters)
        if reason is not None:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/filtered/{reason}")
            self.settle_key(str(getattr(item, item.key_field)))
            return
        self._progress()
        yield item

    def _payload(self, response: Response, tmdb_id: int | None = None) -> Json | None:
        """The JSON body of a 200; 401 closes the spider, 404 is counted as not found."""
        if response.status == 401:
            self.crawler.stats.inc_value("tmdb/auth/rejected")
            if self._rejected:
                # Requests in flight when the first 401 arrived: already reported.
                raise CloseSpider("tmdb_unauthorized")
            self._rejected = True
            self.logger.error(
                "TMDB rejected the credentials (HTTP 401: %s): check TMDB_READ_ACCESS_TOKEN "
                "or TMDB_API_KEY. Closing.",
                _status_message(response),
            )
            raise CloseSpider("tmdb_unauthorized")
        if response.status == 404:
            if tmdb_id is None:
                self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
                self.logger.error("TMDB listing not found: %s", _status_message(response))
                return None
            self.crawler.stats.inc_value(f"{self.stat_prefix}/not_found")
            self.logger.debug("%s %s not found (deleted or merged)", self.api_kind, tmdb_id)
            self._not_found.add(tmdb_id)
            self.settle_key(str(tmdb_id))
            return None
        try:
            payload = response.json()
        except ValueError:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
            self.logger.warning("TMDB answered non-JSON for %s %s", self.api_kind, tmdb_id)
            return None
        if not isinstance(payload, dict):
            self.crawler.stats.inc_value(f"{self.stat_prefix}/bad_payload")
            self.logger.warning("TMDB answered a non-object for %s %s", self.api_kind, tmdb_id)
            return None
        return payload

    async def _flag_deleted(self) -> None:
        """Mark the stored records TMDB no longer has (``_meta.deleted_at``); they are kept."""
        if not self._not_found:
            return
        collection = self.item_class.collection
        keys = sorted(self._not_found)
        marked = await asyncio.to_thread(mark_deleted, self.settings, collection, keys)
        if marked:
            self.crawler.stats.inc_value(f"{self.stat_prefix}/marked_deleted", marked)
            self.logger.info("Flagged %d %s TMDB no longer has as deleted", marked, collection)

    def errback_record(self, failure: Failure) -> None:
        """A detail request that failed for good (after retries): counted, logged."""
        request = failure.request
        self._answered(request)
        self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
        self.logger.error(
            "Gave up on %s %s: %s",
            self.api_kind,
            request.cb_kwargs.get("tmdb_id"),
            _failure_reason(failure),
        )

    def errback_listing(self, failure: Failure) -> None:
        """A changes or list page that failed for good: counted, logged (sync not advanced)."""
        self.crawler.stats.inc_value(f"{self.stat_prefix}/failed")
        self.logger.error(
            "Gave up on a TMDB listing page %s: %s",
            redact_url(failure.request.url),
            _failure_reason(failure),
        )

    def _answered(self, request: Request | None) -> None:
        if request is not None and request.meta.pop("tmdb_backlog", None) == self._backlog_token:
            self._outstanding -= 1
            self._room.set()

    def _expect(self, total: int) -> None:
        """The number of records this run will fetch, for the progress line."""
        self._total = total
        self._started = time.monotonic()

    def _progress(self) -> None:
        self._done += 1
        if self._total is None:
            return
        now = time.monotonic()
        if now < self._next_progress and self._done < self._total:
            return
        self._next_progress = now + self.progress_interval
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        remaining = max(self._total - self._done, 0)
        eta = timedelta(seconds=round(remaining / rate)) if rate else "?"
        self.logger.info(
            "Progress: %d/%d %s (%.1f%%), %.1f records/s, ETA %s",
            self._done,
            self._total,
            self.item_class.collection,
            100.0 * self._done / max(self._total, 1),
            rate,
            eta,
        )

    # -- store --------------------------------------------------------------------------------
    async def _fetched_since(self, ids: Sequence[int], since: str) -> set[int]:
        """The ids among ``ids`` whose stored record was fetched at or after ``since``."""

        def read() -> dict[Any, str]:
            if self._export_store is None:
                store = build_store(self.settings)
                store.open()
                self._export_store = store
            return self._export_store.fetched_times(self.item_class.collection, list(ids))

        fetched = await asyncio.to_thread(read)
        return {key for key, fetched_at in fetched.items() if fetched_at >= since}

    async def _close_export_store(self) -> None:
        store, self._export_store = self._export_store, None
        if store is not None:
            await asyncio.to_thread(store.close)

    async def _in_store(self, function: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with build_store(self.settings) as store:
                return function(store, *args)

        return await asyncio.to_thread(run)


def _season_number(season: Any) -> int | None:
    """A listed season's number (None for an entry that is not a season with one)."""
    number = season.get("season_number") if isinstance(season, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _status_message(response: Response) -> str:
    """TMDB's own error text, whichever of its error shapes the body has (QUIRKS.md)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status}"
    if isinstance(body, dict):
        if "status_message" in body:
            return f"status_code {body.get('status_code')}: {body['status_message']}"
        if body.get("errors"):
            return "; ".join(map(str, body["errors"]))
    return f"HTTP {response.status}"


def _failure_reason(failure: Failure) -> str:
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    return f"{type(failure.value).__name__}: {failure.value}"


def mark_deleted(settings: BaseSettings, collection: str, keys: list[int]) -> int:
    """Flag ``keys`` of ``collection`` as deleted in the configured store (blocking)."""
    with build_store(settings) as store:
        return store.mark_deleted(collection, keys)
