"""Distributed runs: worker processes on a real redis-server against the local fakes."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from redis import Redis

from spiders_tests.distributed_workers import (
    DETAIL,
    KILL_TTLS,
    movie_catalogue,
    setting_args,
    start_worker,
    stored_keys,
    tmdb_env,
    wait_all,
    wait_for_workers,
    worker_env,
)
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.openlibrary import generated_lines, write_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake
from spiders_tests.sqlite_files import stored_count
from spiders_tests.tmdb_crawls import running_tmdb


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """A fake TMDB with no records: each test serves a catalogue of its own."""
    with running_tmdb(fake_server, []) as fake:
        yield fake


def detail_hits(fake: TmdbFake) -> Counter[int]:
    return Counter(
        int(hit.path.rsplit("/", 1)[1]) for hit in fake.api.hits(DETAIL) if hit.method == "GET"
    )


def test_two_workers_fetch_every_id_once_and_store_every_record(
    tmdb: TmdbFake, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = movie_catalogue(tmdb, 240)
    sqlite_path = tmp_path / "shared.sqlite3"
    env = tmdb_env(tmdb, sqlite_path, rate=100)
    args = ["-a", "mode=export", *setting_args(redis_url, DISTRIBUTED_SEED_BATCH=40)]
    # No movie is answered before both workers have joined: each finds work.
    tmdb.api.stall(DETAIL)
    workers = [start_worker("tmdb_movies", env, args, tmp_path, n) for n in range(2)]
    try:
        wait_for_workers(redis, "tmdb_movies", len(workers))
    finally:
        tmdb.api.unstall()

    codes = wait_all(workers, timeout=50)

    assert codes == [0, 0], [(tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(2)]
    hits = detail_hits(tmdb)
    assert set(hits) == set(ids)
    assert set(hits.values()) == {1}, "an id was fetched more than once"
    assert set(stored_keys(sqlite_path, "movies", "tmdb_id")) == set(ids)
    # The export was read by one worker only, and the other did part of the work.
    assert len(tmdb.exports.hits(r"/p/exports/movie_ids_.*", method="GET")) == 1
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert sum("seeds the run" in log for log in logs) == 1
    assert all("'item_scraped_count'" in log for log in logs), "a worker fetched nothing"
    # The run's keys are gone: the next run starts afresh.
    assert not [key for key in redis.keys("contentcrawl:tmdb_movies:*") if not key.endswith("done")]


@pytest.mark.long
def test_a_killed_worker_loses_no_record(
    tmdb: TmdbFake, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = movie_catalogue(tmdb, 200)
    sqlite_path = tmp_path / "shared.sqlite3"
    env = tmdb_env(tmdb, sqlite_path, rate=50)
    # The last movie goes unanswered until the kill: the run cannot end before it.
    tmdb.api.stall(rf"/3/movie/{ids[-1]}")
    args = [
        "-a",
        "mode=export",
        *setting_args(
            redis_url, DISTRIBUTED_SEED_BATCH=20, DISTRIBUTED_QUEUE_HIGH_WATER=40, **KILL_TTLS
        ),
    ]
    workers = [start_worker("tmdb_movies", env, args, tmp_path, n) for n in range(3)]
    deadline = time.monotonic() + 30
    while len(detail_hits(tmdb)) < len(ids) // 2:
        assert time.monotonic() < deadline, "the workers did not get halfway"
        time.sleep(0.05)
    # Kill the seeder mid-seed: its lost requests and the rest of the source must come back.
    holder = redis.get("contentcrawl:tmdb_movies:lock") or ""
    victim = next((w for w in workers if f":{w.pid}:" in holder), workers[0])
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    tmdb.api.unstall()
    survivors = [w for w in workers if w is not victim]

    codes = wait_all(survivors, timeout=50)

    assert codes == [0, 0]
    assert set(stored_keys(sqlite_path, "movies", "tmdb_id")) == set(ids)
    logs = "".join((tmp_path / f"worker{n}.log").read_text() for n in range(3))
    assert "distributed/seed/takeover" in logs or "Reconcile round" in logs


@pytest.mark.timing
def test_the_igdb_account_limit_holds_across_three_workers(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    igdb = FakeIgdb(fake_server, sample_games(30), requests_per_second=4, max_open=8, latency=0.3)
    envs = [
        worker_env(
            tmp_path / f"igdb{n}.sqlite3",
            **igdb.environment(),
            IGDB_PAGE_SIZE="10",
        )
        for n in range(3)
    ]
    # Three independent crawls (own scheduler, own store) on one account: alone, each
    # would go at 3.7/s with 7 open; together, 11/s and 21 open without the shared limit.
    args = [
        "-a",
        "mode=full",
        "-a",
        "limit=30",
        *setting_args(
            redis_url,
            SCHEDULER="scrapy.core.scheduler.Scheduler",
            DUPEFILTER_CLASS="scrapy.dupefilters.RFPDupeFilter",
        ),
    ]
    workers = [start_worker("igdb_games", envs[n], args, tmp_path, n) for n in range(3)]

    codes = wait_all(workers, timeout=55)

    assert codes == [0, 0, 0], [(tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(3)]
    report = igdb.report()
    assert report["statuses"].get("429", 0) == 0
    assert report["max_open"] <= 7
    assert fake_server.max_requests_in_window(1.0, r"/v4/.*") <= 4
    # Every worker fetched its pages, and they had to wait for each other.
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(3)]
    assert all("'store/games/inserted': 30" in log for log in logs)
    assert sum("redis_limits/igdb/waited" in log for log in logs) >= 2


# --- dumps: one worker imports, the others stand by ---------------------------------------


def stored_book_keys(sqlite_path: Path) -> tuple[int, set[str]]:
    """How many rows ``books`` holds, and their distinct keys."""
    with closing(sqlite3.connect(sqlite_path, timeout=10)) as db:
        keys = [key for (key,) in db.execute("SELECT key FROM books")]
    return len(keys), set(keys)


def edition_dump(tmp_path: Path, lines: int) -> tuple[Path, set[str]]:
    dump = write_dump(tmp_path / "ol_dump_editions.txt.gz", generated_lines("editions", lines))
    keys = {line.split(b"\t", 2)[1].decode() for line in generated_lines("editions", lines)}
    return dump, keys


def test_one_worker_imports_a_dump_the_other_stands_by(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    dump, keys = edition_dump(tmp_path, 3_000)
    sqlite_path = tmp_path / "shared.sqlite3"
    args = ["-a", f"dump={dump}", *setting_args(redis_url)]
    workers = [
        start_worker("openlibrary_books", worker_env(sqlite_path), args, tmp_path, n)
        for n in range(2)
    ]

    codes = wait_all(workers, timeout=50)

    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(2)]
    assert codes == [0, 0], [log[-3000:] for log in logs]
    assert stored_book_keys(sqlite_path) == (len(keys), keys)
    # One worker read the dump (and wrote every record); the other read none of it.
    readers = [log for log in logs if "'openlibrary/lines': 3000" in log]
    assert len(readers) == 1
    assert "'store/books/inserted': 3000" in readers[0]
    assert sum("the dump was imported by another worker" in log for log in logs) == 1
    assert not [
        key for key in redis.keys("contentcrawl:openlibrary_books:*") if not key.endswith("done")
    ]


@pytest.mark.long
def test_a_killed_dump_importer_is_taken_over_and_nothing_is_lost(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    # Several times what is stored at the kill: the importer is still reading when it dies.
    dump, keys = edition_dump(tmp_path, 16_000)
    sqlite_path = tmp_path / "shared.sqlite3"
    env = worker_env(sqlite_path, STORE_BATCH_SIZE="200")
    args = ["-a", f"dump={dump}", *setting_args(redis_url, **KILL_TTLS)]
    workers = [start_worker("openlibrary_books", env, args, tmp_path, n) for n in range(3)]
    deadline = time.monotonic() + 30
    while stored_count(sqlite_path, "books")[0] < 2_000:
        assert time.monotonic() < deadline, "the import did not start"
        assert all(w.poll() is None for w in workers), "a worker ended before the kill"
        time.sleep(0.05)
    holder = redis.get("contentcrawl:openlibrary_books:lock") or ""
    victim = next(w for w in workers if f":{w.pid}:" in holder)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = stored_count(sqlite_path, "books")[0]
    survivors = [w for w in workers if w is not victim]

    codes = wait_all(survivors, timeout=60)

    assert codes == [0, 0]
    assert killed_at < len(keys), "the importer finished before it was killed"
    assert stored_book_keys(sqlite_path) == (len(keys), keys)
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(3)]
    # One survivor took the lock over and read the whole dump again: what the victim had
    # stored was skipped by its revision, without a write.
    takeover = [log for log in logs if "'distributed/seed/takeover'" in log]
    assert len(takeover) == 1
    assert f"'openlibrary/lines': {len(keys)}" in takeover[0]
    assert "'openlibrary/import/unchanged_revision'" in takeover[0]
