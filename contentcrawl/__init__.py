"""contentcrawl: a Scrapy project that mirrors movie, TV, game, music and book metadata."""

__version__ = "0.1.0"
