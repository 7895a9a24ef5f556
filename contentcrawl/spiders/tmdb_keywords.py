"""TMDB keywords: ``scrapy crawl tmdb_keywords``; an export line is the whole record."""

from contentcrawl.items import KeywordItem
from contentcrawl.sources.tmdb import TmdbSpider, keyword_ids, map_keyword


class TmdbKeywordsSpider(TmdbSpider):
    name = "tmdb_keywords"
    item_class = KeywordItem
    api_kind = "keyword"
    export_prefix = "keyword_ids"
    mapper = staticmethod(map_keyword)
    export_has_records = True
    references = (("movies", keyword_ids), ("series", keyword_ids))
