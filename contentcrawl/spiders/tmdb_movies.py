"""TMDB movies: ``scrapy crawl tmdb_movies -a mode=export|changes|lists|ids|refresh|missing``."""

from contentcrawl.items import MovieItem
from contentcrawl.sources.tmdb import (
    TmdbSpider,
    collection_part_ids,
    map_movie,
    person_movie_ids,
)


class TmdbMoviesSpider(TmdbSpider):
    name = "tmdb_movies"
    item_class = MovieItem
    api_kind = "movie"
    export_prefix = "movie_ids"
    mapper = staticmethod(map_movie)
    append_to_response = (
        "credits",
        "keywords",
        "external_ids",
        "release_dates",
        "alternative_titles",
        "translations",
        "videos",
    )
    has_adult_export = True
    has_changes = True
    list_paths = (
        "movie/popular",
        "movie/now_playing",
        "movie/upcoming",
        "movie/top_rated",
        "trending/movie/week",
    )
    references = (("collections", collection_part_ids), ("people", person_movie_ids))
