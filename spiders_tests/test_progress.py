"""The progress extension: periodic log lines with rate, done/total and ETA; live on a terminal."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from contentcrawl.extensions.progress import Progress, progress_text
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.settings_for import sqlite_settings, tmdb_run_settings

PROGRESS = "contentcrawl.extensions.progress.Progress"
IDS = "1,2,3,4,5,6"


class CountedMoviesSpider(TmdbMoviesSpider):
    """tmdb_movies exposing how many records the run will fetch."""

    progress_total: ClassVar[int] = 6


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def slow_tmdb() -> Iterator[TmdbFake]:
    api, exports = FakeServer(latency=0.15).start(), FakeServer().start()
    fake = TmdbFake(api, exports, rate_limit=10_000)
    fight_club = movie_550()
    for tmdb_id in range(1, 7):
        fake.add_clone("movie", fight_club, tmdb_id)
    yield fake
    api.stop()
    exports.stop()


def progress_settings(fake: TmdbFake, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    settings = tmdb_run_settings(fake, sqlite_settings(tmp_path), tmp_path, **extra)
    # One request at a time: the crawl lasts several progress intervals.
    settings["DOWNLOAD_SLOTS"]["tmdb"]["concurrency"] = 1
    return settings


def test_progress_text_with_and_without_a_total() -> None:
    assert progress_text(1200, 5000, 30.0) == "1,200/5,000 records (24.0%), 40.0/s, ETA 0:01:35"
    assert progress_text(10, None, 4.0) == "10 records, 2.5/s"
    assert progress_text(0, 10, 0.0) == "0/10 records (0.0%), 0.0/s, ETA ?"


@deferred_f_from_coro_f
async def test_periodic_lines_show_done_total_rate_and_eta(
    slow_tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="contentcrawl.extensions.progress")
    settings = progress_settings(slow_tmdb, tmp_path, PROGRESS_LOG_INTERVAL=0.2)

    await crawl(CountedMoviesSpider, settings, ids=IDS)

    lines = [r.getMessage() for r in caplog.records if r.name.endswith("progress")]
    periodic = [line for line in lines if "at close" not in line]
    assert len(periodic) >= 2
    assert all("/6 records (" in line and "ETA" in line for line in periodic)
    assert lines[-1].startswith("Progress of tmdb_movies at close: 6/6 records (100.0%)")


@deferred_f_from_coro_f
async def test_on_a_terminal_a_live_line_is_redrawn(slow_tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = progress_settings(slow_tmdb, tmp_path, PROGRESS_LOG_INTERVAL=60)
    terminal = Terminal()

    class OnTerminal(Progress):
        def __init__(self, crawler: Any) -> None:
            super().__init__(crawler, stream=terminal)

    project = get_project_settings().getdict("EXTENSIONS")
    settings["EXTENSIONS"] = {**project, PROGRESS: None, OnTerminal: 800}
    settings["DOWNLOAD_SLOTS"]["tmdb"]["rate"] = 4.0

    await crawl(CountedMoviesSpider, settings, ids=IDS)

    drawn = terminal.getvalue()
    assert drawn.count("\r\x1b[K") >= 1
    assert "tmdb_movies: " in drawn
    assert drawn.endswith("\n")


def test_switched_off_with_a_zero_interval() -> None:
    with pytest.raises(NotConfigured):
        Progress(get_crawler(settings_dict={"PROGRESS_LOG_INTERVAL": 0}))
