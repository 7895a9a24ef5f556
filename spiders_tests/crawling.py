"""Running a real crawl: in the test process (pytest-twisted supplies the asyncio reactor), or
a ``scrapy`` command in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
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


PROJECT = Path(__file__).resolve().parent.parent


def child_env(sqlite_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``scrapy`` child process on the SQLite store at ``sqlite_path``:
    the project found from any directory, no developer's ``.env``, no MongoDB."""
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "SCRAPY_SETTINGS_MODULE": "contentcrawl.settings",
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "MONGO_URI": "",
        "SQLITE_PATH": str(sqlite_path),
        **overrides,
    }
    env.pop("SCRAPY_PROJECT", None)
    return env


def run_scrapy(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``scrapy <args>`` in a child process, as an operator runs it; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
