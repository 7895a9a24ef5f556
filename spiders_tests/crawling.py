"""Running a real crawl in the test process (pytest-twisted supplies the asyncio reactor)."""

from __future__ import annotations

from typing import Any

from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler


def make_crawler(spidercls: type[Spider], settings: dict[str, Any] | None = None) -> Crawler:
    """A crawler with the project's settings, ``settings`` on top (as ``-s`` would be)."""
    project = get_project_settings()
    # Only what the project sets: re-applying Scrapy's defaults would trip its deprecations.
    own = {
        name: project[name]
        for name in project
        if (project.getpriority(name) or 0) > SETTINGS_PRIORITIES["default"]
    }
    return get_crawler(spidercls, {**own, **(settings or {})})


async def crawl(
    spidercls: type[Spider], settings: dict[str, Any] | None = None, **spider_kwargs: Any
) -> Crawler:
    """Run one crawl to its end and return the crawler (stats, spider, components)."""
    crawler = make_crawler(spidercls, settings)
    await crawler.crawl_async(**spider_kwargs)
    return crawler
