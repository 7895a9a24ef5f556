"""What the TMDB crawl tests share: a fake TMDB with sample records, and readers of a crawl's
stats and ERROR lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from contentcrawl.items import Json
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550


@contextmanager
def running_tmdb(fake_server: FakeServer, records: list[tuple[str, Json]]) -> Iterator[TmdbFake]:
    """A fake TMDB on ``fake_server`` holding ``records`` (kind, body), with an export host
    of its own for as long as it runs. No rate limit: the 429 tests set their own."""
    exports = FakeServer().start()
    fake = TmdbFake(fake_server, exports, rate_limit=10_000)
    for kind, body in records:
        fake.add(kind, body)
    try:
        yield fake
    finally:
        exports.stop()


def two_movies() -> list[tuple[str, Json]]:
    """Fight Club (550) and A Good Day to Die Hard (47964)."""
    return [("movie", movie_550()), ("movie", load("movie_47964_append_15_parts.json"))]


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """The fake TMDB with Fight Club, A Good Day to Die Hard, Breaking Bad, GoT, two people."""
    samples = [
        ("tv", load("tv_1396_append_9_parts.json")),
        ("tv", load("tv_1399_2024.json")),
        ("person", load("person_62_append_6_parts.json")),
        ("person", load("person_287_2024.json")),
    ]
    with running_tmdb(fake_server, two_movies() + samples) as fake:
        yield fake


def stats_of(crawler: Any) -> dict[str, Any]:
    return crawler.stats.get_stats()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR lines of the crawl itself (the monitors' verdict line is checked elsewhere)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name != "contentcrawl.monitors"
    ]
