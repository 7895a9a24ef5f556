"""IGDB: Apicalypse queries (``queries``), payload→item mappers (``mappers``), base spider."""

from contentcrawl.sources.igdb.mappers import (
    external_ids,
    game_item,
    iso_date,
    iso_datetime,
    unexpanded_fields,
    valid_id,
)
from contentcrawl.sources.igdb.queries import (
    GAME_EXPANDED_FIELDS,
    GAME_FIELDS,
    apicalypse,
    count_query,
    multiquery,
    plan_ranges,
)
from contentcrawl.sources.igdb.spider import IgdbSpider, error_message

__all__ = [
    "GAME_EXPANDED_FIELDS",
    "GAME_FIELDS",
    "IgdbSpider",
    "apicalypse",
    "count_query",
    "error_message",
    "external_ids",
    "game_item",
    "iso_date",
    "iso_datetime",
    "multiquery",
    "plan_ranges",
    "unexpanded_fields",
    "valid_id",
]
