"""TMDB TV networks: ``scrapy crawl tmdb_networks``."""

from contentcrawl.items import NetworkItem
from contentcrawl.sources.tmdb import TmdbSpider, map_network, network_ids


class TmdbNetworksSpider(TmdbSpider):
    name = "tmdb_networks"
    item_class = NetworkItem
    api_kind = "network"
    export_prefix = "tv_network_ids"
    mapper = staticmethod(map_network)
    references = (("series", network_ids),)
