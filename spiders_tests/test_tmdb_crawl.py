"""Whole TMDB crawls against the local fake API (spiders_tests/fakes/tmdb.py): ids, errors,
lists, refresh, missing, episodes, filters (exports and changes:
test_tmdb_export_and_changes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.tmdb_collections import TmdbCollectionsSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.spiders.tmdb_people import TmdbPeopleSpider
from contentcrawl.spiders.tmdb_series import TmdbSeriesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.settings_for import sqlite_settings, tmdb_settings
from spiders_tests.tmdb_crawls import errors, stats_of

# The fake TMDB with its sample records: pytest finds the fixture by this name.
from spiders_tests.tmdb_crawls import tmdb as tmdb

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
    fight_club = movie_550()
    for tmdb_id in range(1000, 1200):
        tmdb.add_clone("movie", fight_club, tmdb_id)
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
    fight_club = movie_550()
    for tmdb_id in ids:
        tmdb.add_clone("movie", fight_club, tmdb_id)
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


# --- lists, refresh, missing, episodes, filters ----------------------------------------------


@deferred_f_from_coro_f
async def test_lists_mode_follows_pages_up_to_the_limit(tmdb: TmdbFake, tmp_path: Path) -> None:
    ids = list(range(7000, 7050))
    fight_club = movie_550()
    for tmdb_id in ids:
        tmdb.add_clone("movie", fight_club, tmdb_id)
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
