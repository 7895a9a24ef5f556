"""Whole TMDB crawls against the local fake API and export host (spiders_tests/fakes/tmdb.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.tmdb_collections import TmdbCollectionsSpider
from contentcrawl.spiders.tmdb_keywords import TmdbKeywordsSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.spiders.tmdb_people import TmdbPeopleSpider
from contentcrawl.spiders.tmdb_series import TmdbSeriesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550
from spiders_tests.settings_for import sqlite_settings, tmdb_settings

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)
EXPORT_IDS = 45


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


# --- ids, re-run, the full path over both stores ---------------------------------------------


@deferred_f_from_coro_f
async def test_ids_mode_stores_records_and_rerun_writes_nothing(
    tmdb: TmdbFake, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    first = await crawl(TmdbMoviesSpider, settings, ids="550,47964")
    second = await crawl(TmdbMoviesSpider, settings, ids="550,47964")

    stats = stats_of(first)
    assert stats["finish_reason"] == "finished"
    assert stats["store/movies/inserted"] == 2
    assert stats["tmdb/movies/requested"] == 2
    rerun = stats_of(second)
    assert rerun["store/movies/unchanged"] == 2
    assert "store/movies/inserted" not in rerun
    assert "store/movies/updated" not in rerun
    store = open_store_for(store_settings)
    try:
        fight_club = store.get("movies", 550)
    finally:
        store.close()
    assert fight_club["title"] == "Fight Club"
    assert fight_club["external_ids"]["wikidata_id"] == "Q190050"
    assert len(fight_club["credits"]["cast"]) > 10
    assert (
        fight_club["poster_url"] == "https://image.example/t/p/w500/pB8BM7pdSp6B6Ih7QZ4DrQ3PmJK.jpg"
    )
    request = tmdb.api.hits(r"/3/movie/550")[0]
    assert request.param("language") == "en-US"
    assert set(request.param("append_to_response").split(",")) >= {
        "credits",
        "keywords",
        "external_ids",
        "release_dates",
    }
    assert request.header("authorization") == f"Bearer {tmdb.token}"


@deferred_f_from_coro_f
async def test_ids_file_and_limit(tmdb: TmdbFake, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("550\n47964\n", encoding="utf-8")
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids_file=str(ids_file), limit="1")

    assert stats_of(crawler)["store/movies/inserted"] == 1
    assert len(tmdb.api.hits(r"/3/movie/\d+")) == 1


# --- errors: 404, 401, 429, 5xx ------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_404_is_counted_not_an_error(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550,230")

    stats = stats_of(crawler)
    assert stats["finish_reason"] == "finished"
    assert stats["tmdb/movies/not_found"] == 1
    assert stats["store/movies/inserted"] == 1
    assert "tmdb/movies/failed" not in stats
    assert "tmdb/movies/marked_deleted" not in stats  # 230 was never stored
    assert errors(caplog) == []

    # TMDB deletes 550: the stored record is kept and flagged, not removed.
    del tmdb.records["movie"][550]
    again = await crawl(TmdbMoviesSpider, settings, ids="550")
    assert stats_of(again)["tmdb/movies/marked_deleted"] == 1
    store = open_store_for(settings)
    try:
        flagged = store.get("movies", 550)
        assert flagged is not None
        assert flagged["_meta"]["deleted_at"]
        assert flagged["title"] == "Fight Club"
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_401_closes_the_spider_at_once(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for tmdb_id in range(1000, 1200):
        tmdb.add_clone("movie", movie_550(), tmdb_id)
    wrong = {"TMDB_READ_ACCESS_TOKEN": "wrong-token"}
    settings = tmdb_settings(
        tmdb, sqlite_settings(tmp_path), tmp_path, CONCURRENT_REQUESTS=32, **wrong
    )

    crawler = await crawl(TmdbMoviesSpider, settings, ids=",".join(map(str, range(1000, 1200))))

    stats = stats_of(crawler)
    assert stats["finish_reason"] == "tmdb_unauthorized"
    # Only what the downloader already held when the first 401 came back (at most
    # CONCURRENT_REQUESTS), each once: no retry storm, no further ids.
    paths = [r.path for r in tmdb.api.requests]
    assert len(paths) <= settings["CONCURRENT_REQUESTS"] + 1
    assert len(set(paths)) == len(paths)
    assert "retry/count" not in stats
    messages = errors(caplog)
    assert len(messages) == 1
    assert "TMDB rejected the credentials" in messages[0]
    assert "Invalid API key" in messages[0]
    assert "wrong-token" not in caplog.text


@deferred_f_from_coro_f
async def test_no_credentials_refuses_to_start(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tmdb_settings(
        tmdb, sqlite_settings(tmp_path), tmp_path, TMDB_READ_ACCESS_TOKEN="", TMDB_API_KEY=""
    )

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550")

    assert stats_of(crawler)["finish_reason"] == "tmdb_no_credentials"
    assert tmdb.api.requests == []
    assert any("TMDB_READ_ACCESS_TOKEN" in message for message in errors(caplog))


@deferred_f_from_coro_f
async def test_5xx_then_success(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.fail(r"/3/movie/550", 503, 502)
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550")

    stats = stats_of(crawler)
    assert stats["store/movies/inserted"] == 1
    assert len(tmdb.api.hits(r"/3/movie/550")) == 3
    assert "tmdb/movies/failed" not in stats


@deferred_f_from_coro_f
async def test_429_honours_retry_after(tmdb: TmdbFake, tmp_path: Path) -> None:
    ids = list(range(2000, 2012))
    for tmdb_id in ids:
        tmdb.add_clone("movie", movie_550(), tmdb_id)
    tmdb.rate_limit = 4
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids=",".join(map(str, ids)))

    stats = stats_of(crawler)
    assert stats["store/movies/inserted"] == len(ids)
    assert tmdb.rate_limited >= 1
    # Once the first 429 is back, the slot waits out its Retry-After (1 s): nothing arrives
    # in between but what was already on the wire (up to 0.3 s late on a loaded machine).
    first_429 = tmdb.rate_limited_at[0]
    arrivals = [r.arrived for r in tmdb.api.requests]
    assert not [t for t in arrivals if first_429 + 0.3 < t < first_429 + 0.9]
    assert stats["retry/count"] >= tmdb.rate_limited


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
    tmdb.add_export("movie_ids", YESTERDAY, movie_export_lines())
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="export")

    stats = stats_of(crawler)
    assert stats["finish_reason"] == "finished"
    assert stats["store/movies/inserted"] == 2
    assert stats["tmdb/movies/not_found"] == 1
    assert stats["tmdb/movies/export/skipped_adult"] == 1
    assert stats["tmdb/movies/export/skipped_video"] == 1
    names = [r.path.rsplit("/", 1)[1] for r in tmdb.exports.requests]
    assert names[0] == f"movie_ids_{TODAY:%m_%d_%Y}.json.gz"
    assert f"movie_ids_{YESTERDAY:%m_%d_%Y}.json.gz" in names
    assert {int(r.path.rsplit("/", 1)[1]) for r in tmdb.api.hits(r"/3/movie/\d+")} == {
        550,
        47964,
        230,
    }
    store = open_store_for(store_settings)
    try:
        assert store.get_state("tmdb_movies/export") == {"date": YESTERDAY.isoformat()}
        assert store.get_state("tmdb_movies/changes") == {"synced_through": YESTERDAY.isoformat()}
    finally:
        store.close()


@deferred_f_from_coro_f
async def test_export_with_adult_file_and_popularity_floor(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.add_clone("movie", movie_550(), 9001)
    tmdb.add_clone("movie", movie_550(), 9003)
    tmdb.add_export("movie_ids", TODAY, movie_export_lines())
    tmdb.add_export(
        "adult_movie_ids",
        TODAY,
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
        "movie_ids", TODAY, [{"id": i, "popularity": float(i)} for i in range(1, EXPORT_IDS + 1)]
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
    for tmdb_id in ids:
        tmdb.add_clone("movie", movie_550(), tmdb_id)
    tmdb.add_export("movie_ids", TODAY, [{"id": i, "popularity": 1.0} for i in ids])
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
    tmdb.add_export("keyword_ids", TODAY, [{"id": 258, "name": "bomb"}, {"id": 591, "name": "cia"}])
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
    since = TODAY - timedelta(days=30)
    seed_state(store_settings, "tmdb_movies/changes", {"synced_through": since.isoformat()})
    ids = list(range(5000, 5150))
    for tmdb_id in ids:
        tmdb.add_clone("movie", movie_550(), tmdb_id)
        tmdb.add_change("movie", TODAY - timedelta(days=2), tmdb_id)
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
        "synced_through": TODAY.isoformat()
    }


@deferred_f_from_coro_f
async def test_changes_pages_past_the_2019_total_pages_lie(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    seed_state(store_settings, "tmdb_movies/changes", {"synced_through": YESTERDAY.isoformat()})
    tmdb.changes_lie = True
    for tmdb_id in range(6000, 6120):
        tmdb.add_clone("movie", movie_550(), tmdb_id)
        tmdb.add_change("movie", TODAY, tmdb_id)
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    assert stats_of(crawler)["store/movies/inserted"] == 120
    assert sorted(int(r.param("page")) for r in tmdb.api.hits(r"/3/movie/changes")) == [1, 2]


@deferred_f_from_coro_f
async def test_changes_state_not_advanced_after_a_failure(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    since = TODAY - timedelta(days=3)
    seed_state(store_settings, "tmdb_series/changes", {"synced_through": since.isoformat()})
    tmdb.add_change("tv", TODAY, 1396)
    tmdb.add_change("tv", TODAY, 1399)
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
    tmdb.add_export("person_ids", TODAY, [{"adult": False, "id": 62, "name": "B", "popularity": 1}])
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
    old = TODAY - timedelta(days=200)
    seed_state(store_settings, "tmdb_movies/changes", {"synced_through": old.isoformat()})
    tmdb.add_export("movie_ids", TODAY, movie_export_lines()[:1])
    settings = tmdb_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    assert stats_of(crawler)["store/movies/inserted"] == 1
    assert "older than TMDB keeps changes for" in caplog.text
    assert read_state(store_settings, "tmdb_movies/changes") == {
        "synced_through": TODAY.isoformat()
    }


# --- lists, refresh, missing, episodes, filters ----------------------------------------------


@deferred_f_from_coro_f
async def test_lists_mode_follows_pages_up_to_the_limit(tmdb: TmdbFake, tmp_path: Path) -> None:
    ids = list(range(7000, 7050))
    for tmdb_id in ids:
        tmdb.add_clone("movie", movie_550(), tmdb_id)
    tmdb.lists["movie/popular"] = ids  # 3 pages of 20
    tmdb.lists["trending/movie/week"] = [550, 7000]
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="lists", pages="2")

    stats = stats_of(crawler)
    popular_pages = sorted(int(r.param("page")) for r in tmdb.api.hits(r"/3/movie/popular"))
    assert popular_pages == [1, 2]
    assert stats["store/movies/inserted"] == 41  # 40 popular + Fight Club, 7000 once
    assert tmdb.api.hits(r"/3/movie/upcoming")


@deferred_f_from_coro_f
async def test_refresh_fetches_only_stale_records(tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)
    await crawl(TmdbMoviesSpider, settings, ids="550,47964")

    fresh = await crawl(TmdbMoviesSpider, settings, mode="refresh", older_than_days="1")
    assert stats_of(fresh).get("tmdb/movies/requested") is None

    stale = await crawl(TmdbMoviesSpider, settings, mode="refresh", older_than_days="0")
    assert stats_of(stale)["tmdb/movies/requested"] == 2
    assert stats_of(stale)["store/movies/unchanged"] == 2

    # A record TMDB no longer has is kept, flagged, and not asked for again.
    store = open_store_for(settings)
    try:
        assert store.mark_deleted("movies", [47964]) == 1
    finally:
        store.close()
    after = await crawl(TmdbMoviesSpider, settings, mode="refresh", older_than_days="0")
    assert stats_of(after)["tmdb/movies/requested"] == 1
    assert [r.path for r in tmdb.api.hits(r"/3/movie/47964")] == ["/3/movie/47964"] * 2


@deferred_f_from_coro_f
async def test_missing_fetches_referenced_records_not_stored(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    tmdb.add("collection", {"id": 1570, "name": "Die Hard Collection", "parts": [{"id": 47964}]})
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)
    await crawl(TmdbMoviesSpider, settings, ids="47964")

    collections = await crawl(TmdbCollectionsSpider, settings, mode="missing")
    people = await crawl(TmdbPeopleSpider, settings, mode="missing", limit="5")

    assert stats_of(collections)["store/collections/inserted"] == 1
    assert [r.path for r in tmdb.api.hits(r"/3/collection/\d+")] == ["/3/collection/1570"]
    assert stats_of(people)["tmdb/people/requested"] == 5


@deferred_f_from_coro_f
async def test_series_episodes_ride_one_appended_request(tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    await crawl(TmdbSeriesSpider, settings, ids="1396", episodes="1")

    season_requests = [
        r for r in tmdb.api.hits(r"/3/tv/1396") if "season/" in r.param("append_to_response")
    ]
    assert len(season_requests) == 1
    store = open_store_for(sqlite_settings(tmp_path))
    try:
        series = store.get("series", 1396)
    finally:
        store.close()
    season_1 = next(s for s in series["seasons"] if s["season_number"] == 1)
    assert len(season_1["episodes"]) == season_1["episode_count"]
    assert series["keywords"]


@deferred_f_from_coro_f
async def test_filters_count_and_skip_records(tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = tmdb_settings(tmdb, sqlite_settings(tmp_path), tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550,47964", min_budget="80000000")

    stats = stats_of(crawler)
    assert stats["tmdb/movies/filtered/min_budget"] == 1
    assert stats["store/movies/inserted"] == 1
