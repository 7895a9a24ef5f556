"""TMDB: the base spider of the ``tmdb_<kind>`` spiders, its mappers, exports and listings."""

from contentcrawl.sources.tmdb.exports import export_file_name, select_export_ids
from contentcrawl.sources.tmdb.listings import (
    change_windows,
    collection_ids,
    collection_part_ids,
    company_ids,
    credit_person_ids,
    keyword_ids,
    network_ids,
    next_page,
    parse_ids,
    person_movie_ids,
    person_series_ids,
    read_ids_file,
)
from contentcrawl.sources.tmdb.mappers import (
    RecordFilters,
    filter_reason,
    image_url,
    map_collection,
    map_company,
    map_keyword,
    map_movie,
    map_network,
    map_person,
    map_series,
)
from contentcrawl.sources.tmdb.spider import TmdbSpider

__all__ = [
    "RecordFilters",
    "TmdbSpider",
    "change_windows",
    "collection_ids",
    "collection_part_ids",
    "company_ids",
    "credit_person_ids",
    "export_file_name",
    "filter_reason",
    "image_url",
    "keyword_ids",
    "map_collection",
    "map_company",
    "map_keyword",
    "map_movie",
    "map_network",
    "map_person",
    "map_series",
    "network_ids",
    "next_page",
    "parse_ids",
    "person_movie_ids",
    "person_series_ids",
    "read_ids_file",
    "select_export_ids",
]
