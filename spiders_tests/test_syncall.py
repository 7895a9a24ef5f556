"""``scrapy syncall``: sources in parallel in one process, a failing source stops no other.

The command runs as a real ``scrapy`` process (it owns its reactor) against fakes served
from this test process; configuration reaches it through the environment, as on a host.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.commands.syncall import Command as SyncAllCommand
from contentcrawl.extensions.log_counts import counted_for
from contentcrawl.jobs import JOBS, SCHEDULES, Job, by_source, jobs_for, jobs_named
from contentcrawl.sources.base import ContentSpider
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import command_env, make_crawler, run_scrapy
from spiders_tests.fakes.openlibrary import FakeOpenLibraryDumps
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer


@pytest.fixture
def broken_tmdb(fake_server: FakeServer) -> FakeServer:
    """A TMDB (API and export host) that answers 500 to everything."""

    def internal_error(request: FakeRequest) -> FakeResponse:
        return FakeResponse.json({"status_code": 11, "status_message": "Internal error."}, 500)

    for method in ("GET", "HEAD"):
        fake_server.route(method, r"/.*")(internal_error)
    return fake_server


def test_a_failing_source_does_not_stop_the_others_and_fails_the_exit_status(
    broken_tmdb: FakeServer, openlibrary: FakeOpenLibraryDumps, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    with store:
        # A previous clean sync, so the changes job asks the API (not the export host).
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        store.set_state("tmdb_movies/changes", {"synced_through": yesterday})
    env = command_env(
        tmp_path,
        TMDB_API_URL=f"{broken_tmdb.url}/3",
        TMDB_EXPORTS_URL=f"{broken_tmdb.url}/p/exports",
        TMDB_READ_ACCESS_TOKEN="fake-token",  # noqa: S106 - a test credential
        **openlibrary.settings,
    )

    done = run_scrapy(
        "syncall",
        "--job",
        "tmdb_movies-changes",
        "--job",
        "tmdb_collections-missing",
        "--job",
        "openlibrary_authors-dump",
        cwd=tmp_path,
        env=env,
    )

    assert done.returncode == 1, done.stderr[-3000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "FAILED" in lines["tmdb_movies-changes"]
    # The next TMDB job still ran after the failed one, and Open Library finished.
    assert lines["tmdb_collections-missing"].endswith("ok")
    assert lines["openlibrary_authors-dump"].endswith("ok")
    assert broken_tmdb.hits(r"/3/movie/changes")
    with store:
        assert store.count("authors") > 0
        # The failed run did not advance the TMDB cursor.
        assert store.get_state("tmdb_movies/changes") == {"synced_through": yesterday}
    assert "fake-token" not in done.stderr


def test_all_jobs_ok_exits_zero(openlibrary: FakeOpenLibraryDumps, tmp_path: Path) -> None:
    env = command_env(tmp_path, **openlibrary.settings)

    done = run_scrapy("syncall", "--job", "openlibrary_authors-dump", cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "openlibrary_authors-dump"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--job", "nope"], "nope"),
        (["hourly"], "give one schedule among"),
        (["daily", "--job", "tmdb_movies-changes"], "not both"),
    ],
)
def test_an_unknown_job_or_schedule_is_a_usage_error(args: list[str], message: str) -> None:
    command = SyncAllCommand()
    command.settings = get_project_settings()
    parser = argparse.ArgumentParser()
    command.add_options(parser)
    opts, positional = parser.parse_known_args(args)

    with pytest.raises(UsageError, match=message):
        command.run(positional, opts)


def test_a_usage_error_exits_2_with_its_reason(tmp_path: Path) -> None:
    both = run_scrapy(
        "syncall", "daily", "--job", "tmdb_movies-changes", cwd=tmp_path, env=command_env(tmp_path)
    )
    assert both.returncode == 2
    assert "not both" in both.stderr


# --- the job list --------------------------------------------------------------------------


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.name)
def test_every_job_names_a_spider_that_accepts_its_arguments(job: Job) -> None:
    spidercls = get_spider_loader(get_project_settings()).load(job.spider)
    spider: Any = spidercls(**job.args)
    assert spider.name == job.spider


def test_job_names_are_unique_and_every_schedule_has_jobs() -> None:
    assert len({job.name for job in JOBS}) == len(JOBS)
    for schedule in SCHEDULES:
        assert jobs_for(schedule)
    with pytest.raises(ValueError, match="unknown schedule"):
        jobs_for("hourly")
    with pytest.raises(KeyError, match="nope"):
        jobs_named(["tmdb_movies-changes", "nope"])


def test_jobs_of_one_source_stay_in_order() -> None:
    groups = by_source(jobs_for("monthly"))
    assert [job.spider for job in groups["openlibrary"]] == [
        "openlibrary_authors",
        "openlibrary_works",
        "openlibrary_books",
    ]
    assert set(by_source(jobs_for("daily"))) == {"tmdb", "igdb", "musicbrainz"}


# --- log counts of crawls sharing the process --------------------------------------------------

module_logger = logging.getLogger("spiders_tests.syncall_module")


class NoisySpider(ContentSpider):
    """Logs two errors: one for itself (spider.logger), one through a module's logger."""

    name = "test_noisy"
    slot = "test"

    async def start(self):  # type: ignore[override]
        await asyncio.sleep(0.2)
        self.logger.error("noisy: through the spider's logger")
        await asyncio.sleep(0)
        module_logger.error("noisy: through a module's logger")
        return
        yield


class QuietSpider(ContentSpider):
    """Outlives the noisy one and logs one warning of its own, through a module's logger."""

    name = "test_quiet"
    slot = "test"

    async def start(self):  # type: ignore[override]
        await asyncio.sleep(0.4)
        module_logger.warning("quiet: a warning")
        await asyncio.sleep(0.1)
        return
        yield


@deferred_f_from_coro_f
async def test_each_crawl_counts_only_its_own_log_records(tmp_path: Path) -> None:
    settings = {
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "RUNS_ENABLED": False,
        "SPIDERMON_ENABLED": False,
    }
    noisy = make_crawler(NoisySpider, settings)
    quiet = make_crawler(QuietSpider, settings)
    with counted_for(noisy):
        noisy_crawl = asyncio.ensure_future(noisy.crawl_async())
    with counted_for(quiet):
        quiet_crawl = asyncio.ensure_future(quiet.crawl_async())
    await asyncio.gather(noisy_crawl, quiet_crawl)

    assert noisy.stats.get_value("log_count/ERROR") == 2
    assert quiet.stats.get_value("log_count/ERROR") is None
    assert quiet.stats.get_value("log_count/WARNING") == 1
