"""Whole TMDB crawls that follow TMDB's own feeds against the local fake API and export host
(spiders_tests/fakes/tmdb.py): the daily ID exports and the changes windows, with the sync
state they keep (ids, errors, lists and the other modes: test_tmdb_crawl.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.tmdb_keywords import TmdbKeywordsSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.spiders.tmdb_people import TmdbPeopleSpider
from contentcrawl.spiders.tmdb_series import TmdbSeriesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.dates import utc_today, utc_yesterday
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.settings_for import sqlite_settings, tmdb_settings
from spiders_tests.tmdb_crawls import errors, stats_of

# The fake TMDB with its sample records: pytest finds the fixture by this name.
from spiders_tests.tmdb_crawls import tmdb as tmdb

EXPORT_IDS = 45


# --- export ----------------------------------------------------------------------------------


def movie_export_lines() -> list[dict[str, Any]]:
    return [
        {
            "adult": False,
            "id": 550,
            "original_title": "Fight Club",
            "popularity": 93.9,
            "video": False,
        },
        {
            "adult": False,
            "id": 47964,
            "original_title": "A Good Day",
            "popularity": 12.0,
            "video": False,
        },
        {"adult": True, "id": 9001, "original_title": "Adult", "popularity": 5.0, "video": False},
        {"adult": False, "id": 9002, "original_title": "Video", "popularity": 5.0, "video": True},
        {"adult": False, "id": 230, "original_title": "Deleted", "popularity": 0.5, "video": False},
    ]


@deferred_f_from_coro_f
async def test_export_falls_back_to_the_previous_day_and_saves_the_sync_state(
    tmdb: TmdbFake, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    tmdb.add_export("movie_ids", utc_yesterday(), movie_export_lines())
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="export")

    stats = stats_of(crawler)
    assert stats["finish_reason"] == "finished"
    assert stats["store/movies/inserted"] == 2
    assert stats["tmdb/movies/not_found"] == 1
    assert stats["tmdb/movies/export/skipped_adult"] == 1
    assert stats["tmdb/movies/export/skipped_video"] == 1
    names = [r.path.rsplit("/", 1)[1] for r in tmdb.exports.requests]
    assert names[0] == f"movie_ids_{utc_today():%m_%d_%Y}.json.gz"
    assert f"movie_ids_{utc_yesterday():%m_%d_%Y}.json.gz" in names
    assert {int(r.path.rsplit("/", 1)[1]) for r in tmdb.api.hits(r"/3/movie/\d+")} == {
        550,
        47964,
        230,
    }
    store = open_store_for(store_settings)
    try:
        assert store.get_state("tmdb_movies/export") == {"date": utc_yesterday().isoformat()}
        assert store.get_state("tmdb_movies/changes") == {
            "synced_through": utc_yesterday().isoformat()
        }
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_export_with_adult_file_and_popularity_floor(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.add_clone("movie", movie_550(), 9001)
    tmdb.add_clone("movie", movie_550(), 9003)
    tmdb.add_export("movie_ids", utc_today(), movie_export_lines())
    tmdb.add_export(
        "adult_movie_ids",
        utc_today(),
        [{"adult": True, "id": 9003, "original_title": "X", "popularity": 50.0, "video": False}],
    )
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(
        TmdbMoviesSpider, settings, mode="export", include_adult="1", min_popularity="10"
    )

    stats = stats_of(crawler)
    fetched = {int(r.path.rsplit("/", 1)[1]) for r in tmdb.api.hits(r"/3/movie/\d+")}
    assert fetched == {550, 47964, 9003}
    assert stats["tmdb/movies/export/skipped_popularity"] == 2
    assert "tmdb/movies/export/skipped_adult" not in stats


@deferred_f_from_coro_f
async def test_export_unavailable_closes_with_an_error(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="export")

    assert stats_of(crawler)["finish_reason"] == "tmdb_export_unavailable"
    assert any("No TMDB export movie_ids" in message for message in errors(caplog))
    assert tmdb.api.requests == []


@deferred_f_from_coro_f
async def test_damaged_export_fetches_what_it_can_and_keeps_the_sync_state(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_settings = sqlite_settings(tmp_path)
    # 45 ids, cut two thirds in: some read before the damage, the rest lost with it.
    name = tmdb.add_export(
        "movie_ids",
        utc_today(),
        [{"id": i, "popularity": float(i)} for i in range(1, EXPORT_IDS + 1)],
    )
    whole = tmdb.export_files[name]
    tmdb.export_files[name] = whole[: len(whole) * 2 // 3]
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="export")

    stats = stats_of(crawler)
    assert stats["tmdb/movies/export/damaged"] == 1
    assert 0 < stats["tmdb/movies/requested"] < EXPORT_IDS
    assert any("is damaged" in message for message in errors(caplog))
    assert read_state(store_settings, "tmdb_movies/export") is None


@deferred_f_from_coro_f
async def test_export_backlog_keeps_the_scheduler_small_and_logs_progress(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ids = list(range(3000, 3060))
    fight_club = movie_550()
    for tmdb_id in ids:
        tmdb.add_clone("movie", fight_club, tmdb_id)
    tmdb.add_export("movie_ids", utc_today(), [{"id": i, "popularity": 1.0} for i in ids])
    settings = tmdb_settings(
        tmdb, sqlite_settings(tmp_path), tmp_path, TMDB_START_BACKLOG=5, TMDB_PROGRESS_INTERVAL=0
    )
    counts = {"scheduled": 0, "answered": 0, "most_pending": 0}

    def on_scheduled() -> None:
        counts["scheduled"] += 1
        pending = counts["scheduled"] - counts["answered"]
        counts["most_pending"] = max(counts["most_pending"], pending)

    def on_response() -> None:
        counts["answered"] += 1

    crawler = make_crawler(TmdbMoviesSpider, settings)
    crawler.signals.connect(on_scheduled, signal=signals.request_scheduled)
    crawler.signals.connect(on_response, signal=signals.response_received)
    await crawler.crawl_async(mode="export")

    assert crawler.stats.get_value("store/movies/inserted") == len(ids)
    assert counts["most_pending"] <= 5
    assert f"Progress: {len(ids)}/{len(ids)} movies (100.0%)" in caplog.text


@deferred_f_from_coro_f
async def test_keywords_export_needs_no_api_requests(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.add_export(
        "keyword_ids", utc_today(), [{"id": 258, "name": "bomb"}, {"id": 591, "name": "cia"}]
    )
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbKeywordsSpider, settings)

    assert stats_of(crawler)["store/keywords/inserted"] == 2
    assert tmdb.api.requests == []


# --- changes ---------------------------------------------------------------------------------


def seed_state(settings: dict[str, Any], name: str, value: dict[str, Any]) -> None:
    store = open_store_for(settings)
    try:
        store.set_state(name, value)
    finally:
        store.close()


def read_state(settings: dict[str, Any], name: str) -> dict[str, Any] | None:
    store = open_store_for(settings)
    try:
        return store.get_state(name)
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_changes_in_14_day_windows_all_pages_then_state_advances(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    store_settings = sqlite_settings(tmp_path)
    since = utc_today() - timedelta(days=30)
    seed_state(store_settings, "tmdb_movies/changes", {"synced_through": since.isoformat()})
    ids = list(range(5000, 5150))
    fight_club = movie_550()
    for tmdb_id in ids:
        tmdb.add_clone("movie", fight_club, tmdb_id)
        tmdb.add_change("movie", utc_today() - timedelta(days=2), tmdb_id)
    tmdb.add_change("movie", since + timedelta(days=3), 550)
    tmdb.add_change("movie", since + timedelta(days=3), 9999, adult=True)
    tmdb.add_change("movie", since + timedelta(days=20), 47964, adult=None)
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    stats = stats_of(crawler)
    assert stats["finish_reason"] == "finished"
    windows = {
        (r.param("start_date"), r.param("end_date")) for r in tmdb.api.hits(r"/3/movie/changes")
    }
    assert len(windows) == 3
    assert all(
        (datetime.fromisoformat(end) - datetime.fromisoformat(start)).days <= 14
        for start, end in windows
    )
    pages = sorted(int(r.param("page")) for r in tmdb.api.hits(r"/3/movie/changes"))
    assert 2 in pages  # 150 ids in the last window: two pages of 100
    assert stats["store/movies/inserted"] == len(ids) + 2
    assert stats["tmdb/movies/changes/skipped_adult"] == 1
    assert read_state(store_settings, "tmdb_movies/changes") == {
        "synced_through": utc_today().isoformat()
    }


@deferred_f_from_coro_f
async def test_changes_pages_past_the_2019_total_pages_lie(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    seed_state(
        store_settings, "tmdb_movies/changes", {"synced_through": utc_yesterday().isoformat()}
    )
    tmdb.changes_lie = True
    fight_club = movie_550()
    for tmdb_id in range(6000, 6120):
        tmdb.add_clone("movie", fight_club, tmdb_id)
        tmdb.add_change("movie", utc_today(), tmdb_id)
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    assert stats_of(crawler)["store/movies/inserted"] == 120
    assert sorted(int(r.param("page")) for r in tmdb.api.hits(r"/3/movie/changes")) == [1, 2]


@deferred_f_from_coro_f
async def test_changes_state_not_advanced_after_a_failure(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    since = utc_today() - timedelta(days=3)
    seed_state(store_settings, "tmdb_series/changes", {"synced_through": since.isoformat()})
    tmdb.add_change("tv", utc_today(), 1396)
    tmdb.add_change("tv", utc_today(), 1399)
    tmdb.fail(r"/3/tv/1399", *[500] * 10)
    settings = tmdb_settings(tmdb, store_settings, tmp_path, RETRY_TIMES=1)

    crawler = await crawl(TmdbSeriesSpider, settings)

    stats = stats_of(crawler)
    assert stats["store/series/inserted"] == 1
    assert stats["tmdb/series/failed"] == 1
    assert read_state(store_settings, "tmdb_series/changes") == {
        "synced_through": since.isoformat()
    }


@deferred_f_from_coro_f
async def test_changes_without_a_previous_sync_runs_an_export(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tmdb.add_export(
        "person_ids", utc_today(), [{"adult": False, "id": 62, "name": "B", "popularity": 1}]
    )
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbPeopleSpider, settings)

    stats = stats_of(crawler)
    assert stats["tmdb/people/changes/fallback_to_export"] == 1
    assert stats["store/people/inserted"] == 1
    assert tmdb.api.hits(r"/3/person/changes") == []
    assert "no previous sync" in caplog.text


@deferred_f_from_coro_f
async def test_changes_older_than_tmdb_keeps_runs_an_export(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_settings = sqlite_settings(tmp_path)
    old = utc_today() - timedelta(days=200)
    seed_state(store_settings, "tmdb_movies/changes", {"synced_through": old.isoformat()})
    tmdb.add_export("movie_ids", utc_today(), movie_export_lines()[:1])
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    assert stats_of(crawler)["store/movies/inserted"] == 1
    assert "older than TMDB keeps changes for" in caplog.text
    assert read_state(store_settings, "tmdb_movies/changes") == {
        "synced_through": utc_today().isoformat()
    }
