"""What the TMDB crawl tests share: the fake TMDB with its sample records, and readers of a
crawl's stats and ERROR lines (test_tmdb_crawl.py, test_tmdb_export_and_changes.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """The fake TMDB with Fight Club, A Good Day to Die Hard, Breaking Bad, GoT, two people."""
    exports = FakeServer().start()
    # The rate limit is the 429 test's business; the others run their slot fast.
    fake = TmdbFake(fake_server, exports, rate_limit=10_000)
    fake.add("movie", movie_550())
    fake.add("movie", load("movie_47964_append_15_parts.json"))
    fake.add("tv", load("tv_1396_append_9_parts.json"))
    fake.add("tv", load("tv_1399_2024.json"))
    fake.add("person", load("person_62_append_6_parts.json"))
    fake.add("person", load("person_287_2024.json"))
    yield fake
    exports.stop()


def stats_of(crawler: Any) -> dict[str, Any]:
    return crawler.stats.get_stats()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR lines of the crawl itself (the monitors' verdict line is checked elsewhere)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name != "contentcrawl.monitors"
    ]
