"""Renamed settings: the old names still work, from -s and from the environment, with a warning."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.renamed_settings import RENAMED_SETTINGS, RenamedSettingWarning
from contentcrawl.sources.base import ContentSpider
from spiders_tests.crawling import PROJECT, child_env
from spiders_tests.settings_for import sqlite_settings


class NothingSpider(ContentSpider):
    """A crawl that fetches nothing: only its settings are looked at."""

    name = "nothing"

    async def start(self) -> AsyncIterator[Request]:
        return
        yield


def test_every_new_name_is_a_project_setting() -> None:
    from contentcrawl import settings

    for old, new in RENAMED_SETTINGS.items():
        assert hasattr(settings, new), new
        assert not hasattr(settings, old), old


async def crawl_with_dash_s(tmp_path: Path, **given: str) -> Crawler:
    """A crawl given ``given`` as ``scrapy crawl -s NAME=VALUE`` gives them (cmdline)."""
    settings = get_project_settings()
    settings.setdict(sqlite_settings(tmp_path), priority="project")
    settings.setdict(given, priority="cmdline")
    crawler = Crawler(NothingSpider, settings)
    await crawler.crawl_async()
    return crawler


@deferred_f_from_coro_f
async def test_an_old_name_given_with_dash_s_takes_its_new_name(tmp_path: Path) -> None:
    with pytest.warns(RenamedSettingWarning, match="BACKOFF_BASE is renamed RETRY_BACKOFF_BASE"):
        crawler = await crawl_with_dash_s(tmp_path, BACKOFF_BASE="7.5")

    assert crawler.settings.getfloat("RETRY_BACKOFF_BASE") == 7.5
    assert crawler.settings.get("BACKOFF_BASE") is None


@deferred_f_from_coro_f
async def test_the_new_name_wins_when_both_are_given(tmp_path: Path) -> None:
    with pytest.warns(RenamedSettingWarning, match="PROGRESS_INTERVAL is renamed"):
        crawler = await crawl_with_dash_s(
            tmp_path, PROGRESS_INTERVAL="5", DUMP_PROGRESS_INTERVAL="9"
        )

    assert crawler.settings.getint("DUMP_PROGRESS_INTERVAL") == 9


def project_setting(
    name: str, tmp_path: Path, **environment: str
) -> subprocess.CompletedProcess[str]:
    """``contentcrawl.settings.<name>`` as a fresh process with ``environment`` reads it."""
    return subprocess.run(
        [sys.executable, "-c", f"from contentcrawl import settings; print(settings.{name})"],
        cwd=tmp_path,
        env=child_env(tmp_path / "store.sqlite3", PYTHONPATH=str(PROJECT), **environment),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_an_old_name_in_the_environment_is_read_with_a_warning(tmp_path: Path) -> None:
    done = project_setting("RETRY_BACKOFF_BASE", tmp_path, BACKOFF_BASE="4")

    assert done.stdout.strip() == "4.0"
    assert "BACKOFF_BASE is renamed RETRY_BACKOFF_BASE (found in the environment)" in done.stderr


def test_the_new_name_in_the_environment_wins_without_a_warning(tmp_path: Path) -> None:
    done = project_setting("RETRY_BACKOFF_BASE", tmp_path, BACKOFF_BASE="4", RETRY_BACKOFF_BASE="2")

    assert done.stdout.strip() == "2.0"
    assert "renamed" not in done.stderr
