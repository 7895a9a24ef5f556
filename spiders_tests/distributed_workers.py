"""Distributed runs on a real redis-server: ``scrapy crawl`` worker processes that share one
Redis run and one SQLite store, started, waited for and killed, and what they stored.

Each worker ``start_workers`` starts sends its own User-Agent, so a fake tells which worker
sent a request: ``kill_the_sender_and_finish`` kills (``kill -9``) the one that sent a held
request. ``left_by_a_dead_worker`` leaves in Redis what a killed worker would have left, for
an in-process run to find.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis import Redis

from contentcrawl import __version__
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import child_env
from spiders_tests.dates import utc_today
from spiders_tests.fakes.igdb import FakeIgdb
from spiders_tests.fakes.musicbrainz import CONTACT, FakeMusicBrainz
from spiders_tests.fakes.server import FakeRequest, RequestHold
from spiders_tests.fakes.tmdb import TmdbFake, movie_550

WORKERS = 2
# A TMDB movie's detail request; the group is its id.
DETAIL = r"/3/movie/(\d+)"
# A killed worker's lock and state expire soon, so the survivors take over in the test's
# time. Only the tests that kill a worker use them: with both cores busy, a live worker can
# miss a renewal by 2 s and lose its lock (a second seeder).
KILL_TTLS = {"DISTRIBUTED_LOCK_TTL": 2, "DISTRIBUTED_WORKER_TTL": 2}


# --- worker processes ----------------------------------------------------------------------


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


def worker_env(sqlite_path: Path, **extra: str) -> dict[str, str]:
    """A worker's environment: the SQLite store at ``sqlite_path``, no live progress, no
    spidermon."""
    return child_env(sqlite_path, **{"PROGRESS_LIVE": "0", "SPIDERMON_ENABLED": "0", **extra})


def start_worker(
    spider: str, env: dict[str, str], args: list[str], workdir: Path, number: int
) -> subprocess.Popen[bytes]:
    """``scrapy crawl spider`` in ``workdir``, its output in ``worker<number>.log`` there."""
    # The child writes to its own copy of the descriptor: this process closes its one.
    with (workdir / f"worker{number}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "scrapy", "crawl", spider, *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def worker_agent(number: int) -> str:
    """Worker ``number``'s User-Agent, in the shape MusicBrainz accepts."""
    return f"contentcrawl/{__version__} ( {CONTACT} worker{number} )"


def start_workers(
    spider: str,
    env: dict[str, str],
    spider_args: list[str],
    redis_url: str,
    workdir: Path,
    **settings: Any,
) -> list[subprocess.Popen[bytes]]:
    """``WORKERS`` worker processes, each with its own User-Agent and ``settings`` (``-s``)."""
    return [
        start_worker(
            spider,
            env,
            [
                *spider_args,
                *setting_args(redis_url, USER_AGENT=worker_agent(number), **settings),
            ],
            workdir,
            number,
        )
        for number in range(WORKERS)
    ]


def logs(workdir: Path) -> list[str]:
    """The logs of the ``WORKERS`` workers started in ``workdir``."""
    return [(workdir / f"worker{number}.log").read_text() for number in range(WORKERS)]


def wait_all(workers: list[subprocess.Popen[bytes]], timeout: float) -> list[int]:
    """The workers' exit codes once all have ended; past ``timeout`` s all are killed."""
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


def release_once_all_joined(fake: FakeIgdb | FakeMusicBrainz, redis: Redis, spider: str) -> None:
    """Answer the held first request once every worker has joined the run, so that each
    one finds work in the queue."""
    try:
        fake.holds.wait_held(timeout=30)
        wait_for_workers(redis, spider, WORKERS)
    finally:
        fake.holds.release()


def kill_sender(
    held: FakeRequest, workers: list[subprocess.Popen[bytes]]
) -> list[subprocess.Popen[bytes]]:
    """Kill -9 the worker that sent ``held``; the survivors."""
    agent = held.header("user-agent")
    (victim,) = [w for n, w in enumerate(workers) if worker_agent(n) == agent]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    return [worker for worker in workers if worker is not victim]


def kill_the_sender_and_finish(
    holds: RequestHold, workers: list[subprocess.Popen[bytes]], workdir: Path
) -> FakeRequest:
    """Kill -9 the worker that sent the held request, let the others finish the run (each
    with success); the held request."""
    try:
        held = holds.wait_held(timeout=30)
        survivors = kill_sender(held, workers)
    finally:
        holds.release()
    codes = wait_all(survivors, timeout=40)
    assert codes == [0] * len(survivors), [log[-3000:] for log in logs(workdir)]
    return held


# --- in-process workers, and what a run leaves ---------------------------------------------


def run_settings(redis_url: str, sqlite_path: Path) -> dict[str, Any]:
    """Settings of an in-process worker of a distributed run."""
    return {
        "REDIS_URL": redis_url,
        "DISTRIBUTED_TICK": 0.1,
        "DISTRIBUTED_LOCK_TTL": 2,
        "DISTRIBUTED_WORKER_TTL": 2,
        "MONGO_URI": "",
        "SQLITE_PATH": str(sqlite_path),
    }


def left_by_a_dead_worker(redis: Redis, spider: str, keys: list[str]) -> None:
    """The state a run's only worker leaves when killed after seeding: ``keys`` recorded,
    none stored or settled."""
    redis.set(f"contentcrawl:{spider}:seeded", "a-dead-worker")
    redis.sadd(f"contentcrawl:{spider}:ids", *keys)


def stored_keys(sqlite_path: Path, collection: str, key_field: str) -> list[Any]:
    """``key_field`` of every record of ``collection`` in the SQLite store at ``sqlite_path``."""
    with open_store_for({"SQLITE_PATH": str(sqlite_path), "MONGO_URI": ""}) as store:
        return [document[key_field] for document in store.iter_documents(collection)]


# --- a TMDB export run ---------------------------------------------------------------------


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
    """A TMDB worker's environment: ``fake`` at ``rate`` requests a second, dumps in its
    working directory."""
    return worker_env(
        sqlite_path,
        **fake.environment(),
        TMDB_REQUESTS_PER_SECOND=str(rate),
        DUMPS_DIR="dumps",
    )
