"""TMDB production companies: ``scrapy crawl tmdb_companies``."""

from contentcrawl.items import CompanyItem
from contentcrawl.sources.tmdb import TmdbSpider, company_ids, map_company


class TmdbCompaniesSpider(TmdbSpider):
    name = "tmdb_companies"
    item_class = CompanyItem
    api_kind = "company"
    export_prefix = "production_company_ids"
    mapper = staticmethod(map_company)
    references = (("movies", company_ids), ("series", company_ids), ("companies", company_ids))
