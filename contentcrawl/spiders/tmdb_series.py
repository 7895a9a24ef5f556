"""TMDB TV series: ``scrapy crawl tmdb_series -a mode=… [-a episodes=1]``."""

from typing import ClassVar

from contentcrawl.items import SeriesItem
from contentcrawl.sources.base import FLAG, Argument
from contentcrawl.sources.tmdb import TmdbSpider, map_series, person_series_ids


class TmdbSeriesSpider(TmdbSpider):
    name = "tmdb_series"
    item_class = SeriesItem
    api_kind = "tv"
    export_prefix = "tv_series_ids"
    mapper = staticmethod(map_series)
    append_to_response = ("aggregate_credits", "keywords", "external_ids", "content_ratings")
    has_adult_export = True
    has_changes = True
    list_paths = (
        "tv/popular",
        "tv/on_the_air",
        "tv/airing_today",
        "tv/top_rated",
        "trending/tv/week",
    )
    references = (("people", person_series_ids),)
    # -a episodes=1: every season's episodes too, a request per season.
    spider_arguments: ClassVar[dict[str, Argument]] = {"episodes": FLAG}
