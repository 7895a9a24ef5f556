"""IGDB Apicalypse queries: the query builders, the games' field lists, the id ranges."""

from __future__ import annotations

from collections.abc import Iterable

# IGDB caps ``limit`` at 500 and a multiquery at 10 queries.
MAX_PAGE_SIZE = 500


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
