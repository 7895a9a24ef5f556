"""IGDB mappers: pure functions from IGDB payloads (records of ``POST /games``) to items."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from contentcrawl.items import GameItem

Json = dict[str, Any]

DEFAULT_IMAGE_URL = "https://images.igdb.com/igdb/image/upload/t_cover_big"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    # IGDB writes -62135683200 (31 Dec of year 0) as a placeholder for "no date".
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

    IGDB mixes expanded objects and bare id arrays in one record; a bare id has no name to
    keep, so the spider counts these instead of passing them off as data.
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
