"""TMDB people: ``scrapy crawl tmdb_people -a mode=…``."""

from contentcrawl.items import PersonItem
from contentcrawl.sources.tmdb import TmdbSpider, credit_person_ids, map_person


class TmdbPeopleSpider(TmdbSpider):
    name = "tmdb_people"
    item_class = PersonItem
    api_kind = "person"
    export_prefix = "person_ids"
    mapper = staticmethod(map_person)
    append_to_response = ("external_ids", "movie_credits", "tv_credits")
    has_adult_export = True
    has_changes = True
    list_paths = ("person/popular", "trending/person/week")
    references = (("movies", credit_person_ids), ("series", credit_person_ids))
