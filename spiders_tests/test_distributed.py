"""Distributed runs: worker processes on a real redis-server against the local fakes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import child_env
from spiders_tests.dates import utc_today
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.openlibrary import generated_lines, write_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.sqlite_files import stored_count

EXTENSION = "contentcrawl.extensions.distributed.DistributedRun"
LIMITS = "contentcrawl.middlewares.redis_limits.RedisAccountLimits"
DETAIL = r"/3/movie/(\d+)"


# A killed worker's lock and state expire soon, so the survivors take over in the test's
# time. Only the tests that kill a worker use them: with both cores busy, a live worker can
# miss a renewal by 2 s and lose its lock (a second seeder).
KILL_TTLS = {"DISTRIBUTED_LOCK_TTL": 2, "DISTRIBUTED_WORKER_TTL": 2}


def setting_args(redis_url: str, **extra: Any) -> list[str]:
    """``-s`` options putting a worker in distributed mode: REDIS_URL does it (DistributedAddon)."""
    settings = {
        "REDIS_URL": redis_url,
        "DISTRIBUTED_TICK": 0.2,
        "DISTRIBUTED_LOCK_TTL": 10,
        "DISTRIBUTED_WORKER_TTL": 10,
        **extra,
    }
    args = []
    for name, value in settings.items():
        text = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
        args += ["-s", f"{name}={text}"]
    return args


def start_worker(
    spider: str, env: dict[str, str], args: list[str], workdir: Path, number: int
) -> subprocess.Popen[bytes]:
    # The child writes to its own copy of the descriptor: this process closes its one.
    with (workdir / f"worker{number}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "scrapy", "crawl", spider, *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def worker_env(sqlite_path: Path, **extra: str) -> dict[str, str]:
    return child_env(sqlite_path, **{"PROGRESS_LIVE": "0", "SPIDERMON_ENABLED": "0", **extra})


def wait_all(workers: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            raise
    return codes


def wait_for_workers(redis: Redis, spider: str, count: int) -> None:
    """Return once ``count`` workers have joined the run of ``spider`` (a worker takes seconds
    to start, a crawl about one)."""
    deadline = time.monotonic() + 30
    while len(list(redis.scan_iter(f"contentcrawl:{spider}:worker:*"))) < count:
        assert time.monotonic() < deadline, "the workers did not all join the run"
        time.sleep(0.05)


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    exports = FakeServer().start()
    fake = TmdbFake(fake_server, exports, rate_limit=10_000)
    yield fake
    exports.stop()


def movie_catalogue(fake: TmdbFake, count: int) -> list[int]:
    """``count`` movies served by the fake and listed in today's export."""
    template = movie_550()
    ids = list(range(1000, 1000 + count))
    for tmdb_id in ids:
        fake.add_clone("movie", template, tmdb_id)
    fake.add_export(
        "movie_ids", utc_today(), [{"id": i, "adult": False, "video": False} for i in ids]
    )
    return ids


def tmdb_env(fake: TmdbFake, sqlite_path: Path, rate: int) -> dict[str, str]:
    return worker_env(
        sqlite_path,
        **fake.environment(),
        TMDB_REQUESTS_PER_SECOND=str(rate),
        DUMPS_DIR="dumps",
    )


def stored_movie_ids(sqlite_path: Path) -> set[int]:
    with open_store_for({"SQLITE_PATH": str(sqlite_path), "MONGO_URI": ""}) as store:
        return {document["tmdb_id"] for document in store.iter_documents("movies")}


def detail_hits(fake: TmdbFake) -> Counter[int]:
    return Counter(
        int(hit.path.rsplit("/", 1)[1]) for hit in fake.api.hits(DETAIL) if hit.method == "GET"
    )


def test_three_workers_fetch_every_id_once_and_store_every_record(
    tmdb: TmdbFake, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    ids = movie_catalogue(tmdb, 240)
    sqlite_path = tmp_path / "shared.sqlite3"
    env = tmdb_env(tmdb, sqlite_path, rate=100)
    args = ["-a", "mode=export", *setting_args(redis_url, DISTRIBUTED_SEED_BATCH=40)]
    # No movie is answered before all three workers have joined: each finds work.
    tmdb.api.stall(DETAIL)
    workers = [start_worker("tmdb_movies", env, args, tmp_path, n) for n in range(3)]
    try:
        wait_for_workers(redis, "tmdb_movies", len(workers))
    finally:
        tmdb.api.unstall()

    codes = wait_all(workers, timeout=50)

    assert codes == [0, 0, 0], [(tmp_path / f"worker{n}.log").read_text()[-3000:] for n in range(3)]
    hits = detail_hits(tmdb)
    assert set(hits) == set(ids)
    assert set(hits.values()) == {1}, "an id was fetched more than once"
    assert stored_movie_ids(sqlite_path) == set(ids)
    # The export was read by one worker only, and the other two did part of the work.
    assert len(tmdb.exports.hits(r"/p/exports/movie_ids_.*", method="GET")) == 1
    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(3)]
    assert sum("seeds the run" in log for log in logs) == 1
    assert all("'item_scraped_count'" in log for log in logs), "a worker fetched nothing"
    # The run's keys are gone: the next run starts afresh.
    assert not [key for key in redis.keys("contentcrawl:tmdb_movies:*") if not key.endswith("done")]


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
    assert stored_movie_ids(sqlite_path) == set(ids)
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


def test_one_worker_imports_a_dump_the_others_stand_by(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    dump, keys = edition_dump(tmp_path, 3_000)
    sqlite_path = tmp_path / "shared.sqlite3"
    args = ["-a", f"dump={dump}", *setting_args(redis_url)]
    workers = [
        start_worker("openlibrary_books", worker_env(sqlite_path), args, tmp_path, n)
        for n in range(3)
    ]

    codes = wait_all(workers, timeout=50)

    logs = [(tmp_path / f"worker{n}.log").read_text() for n in range(3)]
    assert codes == [0, 0, 0], [log[-3000:] for log in logs]
    assert stored_book_keys(sqlite_path) == (len(keys), keys)
    # One worker read the dump (and wrote every record); the others read none of it.
    readers = [log for log in logs if "'openlibrary/lines': 3000" in log]
    assert len(readers) == 1
    assert "'store/books/inserted': 3000" in readers[0]
    assert sum("the dump was imported by another worker" in log for log in logs) == 2
    assert not [
        key for key in redis.keys("contentcrawl:openlibrary_books:*") if not key.endswith("done")
    ]


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
