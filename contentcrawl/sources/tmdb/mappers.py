"""TMDB payloads as items: the pure mappers, their helpers and the record filters."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

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

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

# Ids are kept in an array("l"): anything it cannot hold is no TMDB id.
_MAX_TMDB_ID = 2 ** (8 * array("l").itemsize - 1) - 1


def is_tmdb_id(value: Any) -> TypeGuard[int]:
    """Whether ``value`` can be a TMDB id: a positive int an ``array("l")`` holds."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_TMDB_ID


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
        # Movies keep keywords under "keywords", TV under "results".
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


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether ``value`` is a number (an int or float, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def record_filters(settings: BaseSettings, options: dict[str, Any]) -> RecordFilters:
    """The filters of the spider arguments ``min_budget``, ``min_revenue`` and ``require``,
    else of ``TMDB_MIN_BUDGET``, ``TMDB_MIN_REVENUE`` and ``TMDB_REQUIRE``."""
    min_budget = options.get("min_budget") or settings.getint("TMDB_MIN_BUDGET")
    min_revenue = options.get("min_revenue") or settings.getint("TMDB_MIN_REVENUE")
    names = set(options.get("require") or settings.getlist("TMDB_REQUIRE"))
    unknown = names - FILTERABLE
    if unknown:
        raise ValueError(
            f"TMDB_REQUIRE takes {', '.join(sorted(FILTERABLE))}, not {sorted(unknown)}"
        )
    return RecordFilters(int(min_budget), int(min_revenue), frozenset(names))


def filter_reason(item: ContentItem, filters: RecordFilters) -> str | None:
    """Why ``filters`` reject ``item`` (a stat name such as ``min_budget``), or None."""
    # A budget or revenue that is not a number is unknown, as a missing one is.
    budget = getattr(item, "budget", None)
    if filters.min_budget and is_number(budget) and budget < filters.min_budget:
        return "min_budget"
    revenue = getattr(item, "revenue", None)
    if filters.min_revenue and is_number(revenue) and revenue < filters.min_revenue:
        return "min_revenue"
    for name in sorted(filters.require):
        if name == "genres":
            values = getattr(item, "genres", None)
        else:
            values = (getattr(item, "credits", None) or {}).get(name)
        if values is not None and not values:
            return f"no_{name}"
    return None


def season_number(season: Any) -> int | None:
    """A listed season's number (None for an entry that is not a season with one)."""
    number = season.get("season_number") if isinstance(season, dict) else None
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def add_episodes(seasons: list[Any], payload: Json, misshapen: list[str] | None) -> None:
    """Set ``episodes`` on each listed season whose ``season/<n>`` part ``payload`` appends."""
    for season in seasons:
        number = season_number(season)
        appended = payload.get(f"season/{number}") if number is not None else None
        if appended is not None:
            part = _object(appended, f"season/{number}", misshapen)
            season["episodes"] = _list(part.get("episodes"), f"season/{number}.episodes", misshapen)
