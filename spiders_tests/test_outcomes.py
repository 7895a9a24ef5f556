"""``scrapy crawl``'s exit code, the run record and the sync state tell one verdict.

Each case runs a real ``scrapy crawl`` child process against the fakes on 127.0.0.1 and
reads its exit code, its log and the run record it left in the SQLite store.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contentcrawl.commands.crawl import Command as CrawlCommand
from contentcrawl.verdict import EXIT_FAILED, EXIT_OK, EXIT_STOPPED
from spiders_tests.conftest import read_store
from spiders_tests.crawling import child_env, run_scrapy
from spiders_tests.dates import utc_today
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake

MOVIES = 40


@pytest.fixture
def tmdb() -> Iterator[TmdbFake]:
    """A TMDB of ``MOVIES`` small movies, all in today's export."""
    api, exports = FakeServer(latency=0.01).start(), FakeServer().start()
    fake = TmdbFake(api, exports, rate_limit=100_000)
    for tmdb_id in range(1, MOVIES + 1):
        fake.add("movie", {"id": tmdb_id, "title": f"Movie {tmdb_id}"})
    fake.add_export(
        "movie_ids", utc_today(), [{"id": i, "adult": False, "video": False} for i in range(1, 41)]
    )
    yield fake
    api.stop()
    exports.stop()


def env_for(tmp_path: Path, **overrides: str) -> dict[str, str]:
    defaults = {
        "DUMPS_DIR": str(tmp_path / "dumps"),
        "STORE_FAILED_DIR": str(tmp_path / "failed"),
        "PROGRESS_LIVE": "0",
        "RETRY_BACKOFF_BASE": "0.01",
        "RETRY_BACKOFF_MAX": "0.05",
        # TMDB's own 39/s would make 40 movies a second's wait.
        "TMDB_REQUESTS_PER_SECOND": "500",
    }
    return child_env(tmp_path / "store.sqlite3", **{**defaults, **overrides})


def scrapy_crawl(
    tmp_path: Path, spider: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return run_scrapy("crawl", spider, *args, cwd=tmp_path, env=env_for(tmp_path, **env))


def store_of(tmp_path: Path) -> dict[str, Any]:
    return {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}


def last_run(tmp_path: Path) -> dict[str, Any]:
    return read_store(store_of(tmp_path), lambda store: store.recent_runs())[0]


def state(tmp_path: Path, name: str) -> Any:
    return read_store(store_of(tmp_path), lambda store: store.get_state(name))


def assert_outcome(done: subprocess.CompletedProcess[str], tmp_path: Path, code: int) -> None:
    """The exit code, and the same verdict in the run record and the crawl's stats."""
    assert done.returncode == code, done.stderr[-3000:]
    run = last_run(tmp_path)
    assert run["exit_code"] == code
    assert run["result"] == ("ok" if code == EXIT_OK else "failed")
    assert f"'runs/result/{run['result']}': 1" in done.stderr
    assert f"'runs/exit_code/{code}': 1" in done.stderr


def test_a_clean_import_exits_0_and_advances_its_sync_state(tmp_path: Path) -> None:
    done = scrapy_crawl(tmp_path, "openlibrary_books", "-a", f"dump={sample_dump('editions')}")

    assert_outcome(done, tmp_path, EXIT_OK)
    assert last_run(tmp_path)["problems"] == []
    assert state(tmp_path, "openlibrary_books/dump") is not None


def test_no_credentials_exits_1(tmdb: TmdbFake, tmp_path: Path) -> None:
    env = {**tmdb.environment(), "TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""}
    done = scrapy_crawl(tmp_path, "tmdb_movies", "-a", "mode=export", **env)

    assert_outcome(done, tmp_path, EXIT_FAILED)
    assert last_run(tmp_path)["problems"] == [
        "finish reason 'tmdb_no_credentials'",
        "1 errors logged",
    ]


def test_a_dump_not_found_exits_1(tmp_path: Path) -> None:
    done = scrapy_crawl(tmp_path, "openlibrary_books", "-a", f"dump={tmp_path / 'none.txt.gz'}")

    assert_outcome(done, tmp_path, EXIT_FAILED)
    assert state(tmp_path, "openlibrary_books/dump") is None


def test_a_store_that_cannot_open_exits_1_in_one_line(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    env = env_for(tmp_path, SQLITE_PATH=str(not_a_directory / "store.sqlite3"))
    dump = f"dump={sample_dump('editions')}"

    done = run_scrapy("crawl", "openlibrary_books", "-a", dump, cwd=tmp_path, env=env)

    assert done.returncode == EXIT_FAILED
    # The cause, then the monitors' one summary of the failed run.
    errors = [line for line in done.stderr.splitlines() if " ERROR: " in line]
    assert len(errors) == 2, done.stderr
    assert "Store unavailable, closing the spider: cannot open SQLite " in errors[0]
    assert "Not a directory" in errors[0]
    assert (
        "Monitors failed at close: finish_reason (finish reason 'store_unavailable')" in (errors[1])
    )
    assert "Traceback" not in done.stderr
    assert "(shutdown)" not in done.stderr
    assert "Task exception was never retrieved" not in done.stderr


def test_a_failed_monitor_exits_1(tmp_path: Path) -> None:
    done = scrapy_crawl(
        tmp_path,
        "openlibrary_books",
        "-a",
        f"dump={sample_dump('editions')}",
        SPIDERMON_MIN_ITEMS="1000",
    )

    assert_outcome(done, tmp_path, EXIT_FAILED)
    assert last_run(tmp_path)["problems"] == ["170 records scraped, expected at least 1000"]
    assert "'monitors/extracted_items/failed': 1" in done.stderr
    assert state(tmp_path, "openlibrary_books/dump") is None


def test_recovered_429s_are_a_clean_run(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.fail(r"/3/movie/7", 429, 429, 503)

    done = scrapy_crawl(tmp_path, "tmdb_movies", "-a", "mode=export", **tmdb.environment())

    assert_outcome(done, tmp_path, EXIT_OK)
    run = last_run(tmp_path)
    assert (run["429s"], run["503s"], run["inserted"]) == (2, 1, MOVIES)
    assert state(tmp_path, "tmdb_movies/export") == {"date": utc_today().isoformat()}


def test_a_request_given_up_fails_the_run(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.fail(r"/3/movie/7", 500, 500)

    done = scrapy_crawl(
        tmp_path, "tmdb_movies", "-a", "mode=export", RETRY_TIMES="1", **tmdb.environment()
    )

    assert_outcome(done, tmp_path, EXIT_FAILED)
    assert "1 requests given up after their retries" in last_run(tmp_path)["problems"]
    assert state(tmp_path, "tmdb_movies/export") is None


def test_a_crawl_stopped_by_a_signal_exits_3(tmdb: TmdbFake, tmp_path: Path) -> None:
    # Slow enough to be stopped midway: 40 movies at 10 a second.
    env = env_for(tmp_path, **tmdb.environment(), TMDB_REQUESTS_PER_SECOND="10")
    command = [sys.executable, "-m", "scrapy", "crawl", "tmdb_movies", "-a", "mode=export"]
    log = tmp_path / "crawl.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 30
            while len(tmdb.api.hits(r"/3/movie/\d+")) < 3:
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    done = subprocess.CompletedProcess(command, process.returncode, "", log.read_text())

    assert_outcome(done, tmp_path, EXIT_STOPPED)
    assert last_run(tmp_path)["finish_reason"] == "shutdown"
    assert state(tmp_path, "tmdb_movies/export") is None


def test_the_help_lists_the_exit_codes() -> None:
    # What ``scrapy crawl -h`` prints under its usage line (the exit codes themselves are
    # the project command's: the tests above run it).
    text = " ".join(CrawlCommand().long_desc().split())

    for code, meaning in ((0, "the run was clean"), (2, "usage error"), (3, "stopped by")):
        assert f"{code} {meaning}" in text
