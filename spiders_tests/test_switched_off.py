"""Scrapy components the project switches off are never imported, and their switch still
brings them back (contentcrawl/switched_off.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_f_from_coro_f

from spiders_tests.crawling import command_env, crawl, run_scrapy

# What importing each switched-off component pulls in, and nothing else the crawl needs does.
COSTLY_IMPORTS = ("aiohttp", "tldextract", "twisted.conch")


def imported_modules(importtime_log: str) -> set[str]:
    """The modules named in ``-X importtime`` output."""
    return set(re.findall(r"^import time:.*\|\s*(\S+)\s*$", importtime_log, re.MULTILINE))


def test_a_crawl_imports_none_of_the_switched_off_components(tmp_path: Path) -> None:
    # No credentials: the crawl builds every component, then stops at once.
    env = command_env(tmp_path, PYTHONPROFILEIMPORTTIME="1")

    result = run_scrapy("crawl", "tmdb_movies", cwd=tmp_path, env=env)

    assert "No TMDB credentials" in result.stderr, result.stderr[-2000:]
    modules = imported_modules(result.stderr)
    assert "scrapy.core.engine" in modules, "no import was recorded"
    assert {name for name in COSTLY_IMPORTS if name in modules} == set()


class StartsNothing(Spider):
    name = "starts_nothing"

    async def start(self) -> AsyncIterator[Any]:
        return
        yield


def listed(crawler: Crawler, setting: str) -> set[str]:
    """The class names of the components ``setting`` and its ``*_BASE`` give the crawl."""
    return {path.rsplit(".", 1)[1] for path in crawler.settings.getwithbase(setting)}


def built(components: list[Any]) -> set[str]:
    return {type(component).__name__ for component in components}


@deferred_f_from_coro_f
async def test_the_project_crawl_does_not_list_them() -> None:
    crawler = await crawl(StartsNothing, {"SPIDERMON_ENABLED": False})

    extensions = listed(crawler, "EXTENSIONS")
    assert "LogStats" in extensions, extensions
    assert {"RemoteControl", "TelnetConsole"} & extensions == set()
    assert "HttpProxyMiddleware" in listed(crawler, "DOWNLOADER_MIDDLEWARES")
    assert "CookiesMiddleware" not in listed(crawler, "DOWNLOADER_MIDDLEWARES")


@pytest.mark.parametrize(
    ("switch", "setting", "component", "built_in"),
    [
        ("COOKIES_ENABLED", "DOWNLOADER_MIDDLEWARES", "CookiesMiddleware", "downloader"),
        ("TELNETCONSOLE_ENABLED", "EXTENSIONS", "TelnetConsole", "extensions"),
        ("REMOTE_CONTROL_ENABLED", "EXTENSIONS", "RemoteControl", "extensions"),
    ],
)
@deferred_f_from_coro_f
async def test_a_switch_given_to_the_crawl_brings_its_component_back(
    switch: str, setting: str, component: str, built_in: str
) -> None:
    # The remote control's job file goes to this test's own XDG state directory.
    crawler = await crawl(StartsNothing, {"SPIDERMON_ENABLED": False, switch: True})

    assert component in listed(crawler, setting)
    components = (
        crawler.engine.downloader.middleware.middlewares
        if built_in == "downloader"
        else crawler.extensions.middlewares
    )
    assert component in built(components)
