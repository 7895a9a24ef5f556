"""A TMDB export killed with SIGKILL (no JOBDIR, no clean stop), then run again.

The rerun skips the ids whose records the killed run stored (fetched on or after the
export's day) and fetches only the rest: the fake sees each remaining id once.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from spiders_tests.crawling import child_env, run_scrapy
from spiders_tests.dates import utc_today
from spiders_tests.fakes.tmdb import TmdbFake, exported_movies

MOVIES = 297
KILL_AT = 200
DETAIL = r"/3/movie/(\d+)"


@pytest.fixture
def tmdb() -> Iterator[TmdbFake]:
    """A TMDB of ``MOVIES`` small movies, all in today's export."""
    with exported_movies(MOVIES, utc_today()) as fake:
        yield fake


def stored_ids(database: Path) -> set[int]:
    """Ids in the movies table, read while a crawl may be writing ({} before its first batch)."""
    try:
        with closing(sqlite3.connect(database, timeout=5)) as db:
            return {int(key) for (key,) in db.execute("SELECT key FROM movies")}
    except sqlite3.OperationalError:  # no table yet
        return set()


def fetched_ids(fake: TmdbFake) -> Counter[int]:
    return Counter(int(hit.path.rsplit("/", 1)[1]) for hit in fake.api.hits(DETAIL))


def test_a_rerun_after_a_killed_export_fetches_only_what_was_not_stored(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    database = tmp_path / "store.sqlite3"
    env = child_env(
        database,
        **tmdb.environment(),
        DUMPS_DIR=str(tmp_path / "dumps"),
        STORE_FAILED_DIR=str(tmp_path / "store_failed"),
        PROGRESS_LIVE="0",
        STORE_BATCH_SIZE="20",
        TMDB_REQUESTS_PER_SECOND="1000",
    )
    # The last movie goes unanswered: the crawl cannot end before the kill.
    tmdb.api.stall(rf"/3/movie/{MOVIES}")
    command = [sys.executable, "-m", "scrapy", "crawl", "tmdb_movies", "-a", "mode=export"]
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        killed = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while len(stored_ids(database)) < KILL_AT:
                assert killed.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the crawl stored too little in time"
                time.sleep(0.02)
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=10)
        finally:
            if killed.poll() is None:
                killed.kill()
    stored = stored_ids(database)
    first_run = fetched_ids(tmdb)
    assert KILL_AT <= len(stored) < MOVIES
    assert stored <= set(first_run)
    tmdb.api.unstall()

    rerun = run_scrapy("crawl", "tmdb_movies", "-a", "mode=export", cwd=tmp_path, env=env)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "'finish_reason': 'finished'" in rerun.stderr
    second_run = fetched_ids(tmdb) - first_run
    # Only the ids the killed run did not store, each once.
    assert set(second_run) == set(range(1, MOVIES + 1)) - stored
    assert set(second_run.values()) == {1}
    assert f"'tmdb/movies/export/skipped_fresh': {len(stored)}" in rerun.stderr
    assert stored_ids(database) == set(range(1, MOVIES + 1))
    # Calls wasted over both runs: ids the killed run asked for but did not store, asked
    # for again (without the skip, every stored id as well).
    wasted = sum((first_run + second_run).values()) - MOVIES
    assert wasted == len(set(first_run) - stored)
    print(f"killed at {len(stored)} stored; rerun fetched {sum(second_run.values())}; {wasted=}")
