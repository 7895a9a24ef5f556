"""Run records, spidermon verdicts and dead letters (capture and ``mode=failed`` replay).

Crawls run the real TMDB spider against the local fake with the project settings: the
run recorder and the spidermon suites on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.extensions.runs import run_counts, spider_arguments
from contentcrawl.failures import strip_secrets
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.verdict import judge
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake
from spiders_tests.settings_for import sqlite_settings, tmdb_run_settings
from spiders_tests.tmdb_crawls import running_tmdb, two_movies


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """The fake TMDB with two movies, authenticated by API key (so URLs carry a secret)."""
    with running_tmdb(fake_server, two_movies()) as fake:
        yield fake


def api_key_auth(fake: TmdbFake) -> dict[str, str]:
    return {"TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": fake.api_key}


# --- run records -------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_every_crawl_writes_a_run_record(
    tmdb: TmdbFake, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    settings = tmdb_run_settings(tmdb, store_settings, tmp_path)

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550,47964", _job="job-1", _version="r7")

    [run] = read_store(store_settings, lambda store: store.recent_runs("tmdb_movies"))
    assert run["id"] == "job-1"
    assert run["job"] == "job-1"
    assert run["arguments"] == {"ids": "550,47964"}
    assert run["result"] == "ok", run["problems"]
    assert run["finish_reason"] == "finished"
    assert run["started_at"] <= run["finished_at"]
    assert (run["items"], run["inserted"], run["updated"], run["unchanged"]) == (2, 2, 0, 0)
    assert (run["dropped"], run["retries"], run["429s"], run["errors"]) == (0, 0, 0, 0)
    assert run["requests"] == 2
    stats = crawler.stats.get_stats()
    assert stats["monitors/close/passed"] == 7
    assert "monitors/close/failed" not in stats or stats["monitors/close/failed"] == 0
    assert stats["runs/result/ok"] == 1


@deferred_f_from_coro_f
async def test_a_failed_monitor_marks_the_run_failed(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    settings = tmdb_run_settings(tmdb, store_settings, tmp_path, SPIDERMON_MIN_ITEMS=5)

    crawler = await crawl(TmdbMoviesSpider, settings, ids="550,47964")

    [run] = read_store(store_settings, lambda store: store.recent_runs())
    assert run["result"] == "failed"
    assert run["problems"] == ["2 records scraped, expected at least 5"]
    assert run["exit_code"] == 1
    assert crawler.stats.get_value("monitors/extracted_items/failed") == 1
    assert crawler.stats.get_value("runs/result/failed") == 1


def test_the_verdict_needs_no_monitor() -> None:
    settings = get_project_settings()
    stats = {"log_count/ERROR": 2, "retry/max_reached": 1, "item_scraped_count": 3}
    assert judge("finished", stats, settings).problems == [
        "1 requests given up after their retries",
        "2 errors logged",
    ]
    stopped = judge("shutdown", {}, settings)
    assert stopped.problems == ["stopped by a signal (finish reason 'shutdown')"]
    assert (stopped.result, stopped.exit_code) == ("failed", 3)


def test_run_counts_sum_every_collection_and_drop_reason() -> None:
    stats = {
        "store/movies/inserted": 2,
        "store/people/inserted": 3,
        "store/movies/unchanged": 4,
        "store/movies/failed": 1,
        "validation/dropped/missing_title": 2,
        "validation/dropped/bad_id": 1,
        "downloader/response_status_count/429": 6,
        "retry/count": 7,
    }
    counts = run_counts(stats)
    assert (counts["inserted"], counts["unchanged"], counts["store_failed"]) == (5, 4, 1)
    assert (counts["dropped"], counts["429s"], counts["retries"]) == (3, 6, 7)


@deferred_f_from_coro_f
async def test_a_run_records_the_arguments_its_spider_consumed(tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    dump = str(sample_dump("editions"))
    await crawl(OpenLibraryBooksSpider, store_settings, dump=dump, limit="5")
    [run] = read_store(store_settings, lambda store: store.recent_runs())
    assert run["arguments"] == {"dump": dump, "limit": "5"}


def test_arguments_lose_their_secrets_and_scrapyd_bookkeeping() -> None:
    class Spider:
        arguments = {  # noqa: RUF012 - a plain stand-in for a spider's arguments
            "mode": "ids",
            "token": "abc",
            "client_secret": "xyz",
            "url": "https://u:pw@host/x?api_key=k",
            "_job": "1",
            "_version": "2",
        }

    assert spider_arguments(Spider()) == {
        "mode": "ids",
        "token": "***",
        "client_secret": "***",
        "url": "https://u:***@host/x?api_key=***",
    }
    assert spider_arguments(object()) is None


# --- dead letters ----------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_a_request_out_of_retries_becomes_a_failure_and_a_replay_clears_it(
    tmdb: TmdbFake, store_settings: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = tmdb_run_settings(tmdb, store_settings, tmp_path, **api_key_auth(tmdb))
    tmdb.fail(r"/3/movie/550", 500, 500)

    first = await crawl(TmdbMoviesSpider, settings, ids="550,47964,230")

    [failure] = read_store(store_settings, lambda store: store.pending_failures())
    assert failure["key"] == "tmdb_movies:550"
    assert (failure["spider"], failure["source"], failure["kind"]) == (
        "tmdb_movies",
        "tmdb",
        "movies",
    )
    assert failure["id"] == 550
    assert failure["error"] == "500"
    assert failure["attempts"] == 2
    assert failure["runs"] == 1
    assert failure["first_failed"] == failure["last_try"]
    assert failure["url"].startswith(f"{tmdb.api.url}/3/movie/550?")
    assert "api_key" not in failure["url"]
    assert tmdb.api_key not in str(failure)
    assert first.stats.get_value("failures/recorded") == 1
    [failed_run] = read_store(store_settings, lambda store: store.recent_runs())
    assert failed_run["result"] == "failed"
    assert failed_run["failures_recorded"] == 1
    assert "1 requests given up after their retries" in failed_run["problems"]
    # The 404 (230) is an answer, not a failure.
    assert read_store(store_settings, lambda store: store.get("movies", 550)) is None

    replay = await crawl(TmdbMoviesSpider, settings, mode="failed")

    assert read_store(store_settings, lambda store: store.pending_failures()) == []
    assert (
        read_store(store_settings, lambda store: store.get("movies", 550))["title"] == "Fight Club"
    )
    stats = replay.stats.get_stats()
    assert stats["failures/replay/requested"] == 1
    assert stats["failures/cleared"] == 1
    assert stats["store/movies/inserted"] == 1
    replayed = tmdb.api.hits(r"/3/movie/550")[-1]
    assert replayed.param("api_key") == tmdb.api_key
    assert set(replayed.param("append_to_response").split(",")) >= {"credits", "keywords"}
    [replay_run, _] = read_store(store_settings, lambda store: store.recent_runs())
    assert replay_run["arguments"] == {"mode": "failed"}
    assert replay_run["result"] == "ok", replay_run["problems"]
    assert replay_run["failures_cleared"] == 1
    assert tmdb.api_key not in caplog.text


@deferred_f_from_coro_f
async def test_a_replay_that_fails_again_keeps_the_failure(tmdb: TmdbFake, tmp_path: Path) -> None:
    store_settings = sqlite_settings(tmp_path)
    settings = tmdb_run_settings(tmdb, store_settings, tmp_path)
    tmdb.fail(r"/3/movie/550", 503, 503, 503, 503)

    await crawl(TmdbMoviesSpider, settings, ids="550")
    replay = await crawl(TmdbMoviesSpider, settings, mode="failed")

    [failure] = read_store(store_settings, lambda store: store.pending_failures("tmdb_movies"))
    assert failure["runs"] == 2
    assert failure["error"] == "503"
    assert failure["first_failed"] <= failure["last_try"]
    assert replay.stats.get_value("failures/cleared") is None


def test_stored_urls_lose_credentials_instead_of_masking_them() -> None:
    assert strip_secrets("https://u:pw@h/3/movie/1?api_key=k&language=en") == (
        "https://u@h/3/movie/1?language=en"
    )
    assert strip_secrets("https://h/a?b=1") == "https://h/a?b=1"


@deferred_f_from_coro_f
async def test_a_listing_page_that_cannot_be_replayed_is_not_kept(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    store_settings = sqlite_settings(tmp_path)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    read_store(
        store_settings,
        lambda store: store.set_state("tmdb_movies/changes", {"synced_through": yesterday}),
    )
    settings = tmdb_run_settings(tmdb, store_settings, tmp_path)
    tmdb.fail(r"/3/movie/changes", 500, 500)

    crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    assert crawler.stats.get_value("failures/not_kept") == 1
    assert read_store(store_settings, lambda store: store.pending_failures()) == []
    [run] = read_store(store_settings, lambda store: store.recent_runs())
    assert run["result"] == "failed"
