"""TMDB collections (movie series such as a franchise): ``scrapy crawl tmdb_collections``."""

from contentcrawl.items import CollectionItem
from contentcrawl.sources.tmdb import TmdbSpider, collection_ids, map_collection


class TmdbCollectionsSpider(TmdbSpider):
    name = "tmdb_collections"
    item_class = CollectionItem
    api_kind = "collection"
    export_prefix = "collection_ids"
    mapper = staticmethod(map_collection)
    references = (("movies", collection_ids),)
