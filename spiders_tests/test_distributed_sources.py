"""Distributed IGDB and TMDB runs on a real redis-server, against the local fakes (MusicBrainz:
test_distributed_musicbrainz.py, which shares the workers' helpers of this file).

Three ``scrapy crawl`` workers share one Redis run and one SQLite store. Each worker sends
its own User-Agent, so the fake tells which worker sent a request: the kill tests hold one
page in the fake, kill the worker that sent it (``kill -9``) and expect the survivors to
store every record all the same. In-process runs find in Redis what a dead worker left
(keys recorded, nothing stored) and must ask for each kind of key again.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl import __version__
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.conftest import open_store_for
from spiders_tests.crawling import crawl
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.musicbrainz import (
    CONTACT,
    FakeMusicBrainz,
)
from spiders_tests.fakes.server import FakeRequest, FakeServer, RequestHold
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.settings_for import tmdb_run_settings
from spiders_tests.test_distributed import (
    KILL_TTLS,
    setting_args,
    start_worker,
    wait_all,
    worker_env,
)

WORKERS = 3
# Account limits far above what the fake needs: this file tests the shared run, not them.
FAST_ACCOUNT = {"igdb": {"rate": 50, "concurrency": 24}}
IGDB_PAGES = r"/v4/games"
MB_BROWSES = r"/ws/2/release-group/?"


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
    return [(workdir / f"worker{number}.log").read_text() for number in range(WORKERS)]


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


def release_once_all_joined(fake: FakeIgdb | FakeMusicBrainz, redis: Redis, spider: str) -> None:
    """Answer the held first request once every worker has joined the run, so that each
    one finds work in the queue (a worker takes seconds to start, the crawl about one)."""
    try:
        fake.holds.wait_held(timeout=30)
        deadline = time.monotonic() + 30
        while len(list(redis.scan_iter(f"contentcrawl:{spider}:worker:*"))) < WORKERS:
            assert time.monotonic() < deadline, "the workers did not all join the run"
            time.sleep(0.05)
    finally:
        fake.holds.release()


def stored_keys(sqlite_path: Path, collection: str, key_field: str) -> list[Any]:
    with open_store_for({"SQLITE_PATH": str(sqlite_path), "MONGO_URI": ""}) as store:
        return [document[key_field] for document in store.iter_documents(collection)]


# --- IGDB -------------------------------------------------------------------------------------


def igdb_fake(server: FakeServer, games: int) -> FakeIgdb:
    # Slow answers keep pages in flight on every worker, as a loaded IGDB would.
    return FakeIgdb(
        server, sample_games(games), requests_per_second=None, max_open=None, latency=0.25
    )


def igdb_env(fake: FakeIgdb, sqlite_path: Path) -> dict[str, str]:
    return worker_env(
        sqlite_path,
        **fake.environment(),
        IGDB_PAGE_SIZE="10",
        # More ranges than one worker holds (IGDB_CONCURRENCY + 1): the others take the rest.
        IGDB_PARALLEL_RANGES="16",
    )


def start_igdb_workers(
    fake: FakeIgdb, sqlite_path: Path, redis_url: str, workdir: Path, **settings: Any
) -> list[subprocess.Popen[bytes]]:
    env = igdb_env(fake, sqlite_path)
    args = ["-a", "mode=full"]
    return start_workers(
        "igdb_games", env, args, redis_url, workdir, REDIS_ACCOUNT_LIMITS=FAST_ACCOUNT, **settings
    )


def test_three_igdb_workers_fetch_every_game_once_and_store_it(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = igdb_fake(fake_server, 240)
    fake.holds.hold(1, r"/v4/multiquery")
    sqlite_path = tmp_path / "shared.sqlite3"
    workers = start_igdb_workers(fake, sqlite_path, redis_url, tmp_path)
    release_once_all_joined(fake, redis, "igdb_games")

    codes = wait_all(workers, timeout=40)

    assert codes == [0] * WORKERS, [log[-3000:] for log in logs(tmp_path)]
    assert set(fake.games_served) == set(fake.games)
    assert set(fake.games_served.values()) == {1}, "a game was fetched more than once"
    assert sorted(stored_keys(sqlite_path, "games", "igdb_id")) == sorted(fake.games)
    # Nothing was missing at the end: the reconcile asked for nothing again.
    assert "Reconcile round" not in "".join(logs(tmp_path))
    # One worker probed and planned the ranges; the pages were shared out (a worker holds
    # 8 requests at most, and 16 ranges start at once).
    assert len(fake_server.hits(r"/v4/multiquery")) == 1
    assert sum("seeds the run" in log for log in logs(tmp_path)) == 1
    senders = Counter(hit.header("user-agent") for hit in fake_server.hits(IGDB_PAGES))
    assert len(senders) >= 2, senders
    assert not [k for k in redis.keys("contentcrawl:igdb_games:*") if not k.endswith(":done")]


def test_an_igdb_worker_killed_with_a_page_in_flight_loses_no_game(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = igdb_fake(fake_server, 240)
    # The 8th page: the worker that sent it dies with it (and up to 7 more) in flight.
    fake.holds.hold(8)
    sqlite_path = tmp_path / "shared.sqlite3"
    workers = start_igdb_workers(fake, sqlite_path, redis_url, tmp_path, **KILL_TTLS)

    held = kill_the_sender_and_finish(fake.holds, workers, tmp_path)

    assert sorted(stored_keys(sqlite_path, "games", "igdb_id")) == sorted(fake.games)
    # The page the dead worker had in flight was asked for again by the reconcile.
    assert "Reconcile round 1" in "".join(logs(tmp_path))
    assert [hit.body for hit in fake_server.hits(IGDB_PAGES)].count(held.body) == 2


@deferred_f_from_coro_f
async def test_the_igdb_reconcile_asks_again_for_every_kind_of_key(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    fake = FakeIgdb(fake_server, sample_games(60), requests_per_second=None, max_open=None)
    ids = sorted(fake.games)
    game, (after, end) = ids[0], (ids[20], ids[40])
    left_by_a_dead_worker(
        redis, "igdb_games", [str(game), f"range:{after}-{end}", "999999", "probe:games"]
    )
    settings = {
        **fake.settings(),
        **run_settings(redis_url, tmp_path / "store.sqlite3"),
        "REDIS_ACCOUNT_LIMITS": FAST_ACCOUNT,
        "IGDB_PAGE_SIZE": 10,
    }

    crawler = await crawl(IgdbGamesSpider, settings, mode="full")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["distributed/reconcile/requeued"] == 4
    assert stats["distributed/reconcile/rounds"] == 1
    # A game by id, a range page by page (and its next page), a probe that plans every range.
    queries = [hit.body.decode() for hit in fake_server.hits(IGDB_PAGES)]
    assert f"where id = {game}; limit 1;" in " ".join(queries)
    assert any(f"where id > {after} & id <= {end};" in query for query in queries)
    assert len(fake_server.hits(r"/v4/multiquery")) == 1
    assert sorted(stored_keys(tmp_path / "store.sqlite3", "games", "igdb_id")) == ids
    # A game IGDB no longer has is settled, not asked for again and again.
    assert stats["igdb/games/not_found"] == 1
    assert "distributed/reconcile/unresolved" not in stats


def test_igdb_workers_starting_together_get_one_token(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    # A slow token endpoint: every worker asks for a token before any has stored one.
    fake = FakeIgdb(
        fake_server, sample_games(20), requests_per_second=None, max_open=None, token_latency=1.0
    )
    sqlite_path = tmp_path / "shared.sqlite3"
    # Three crawls of their own (own queue) on one account and one store: each one's first
    # request needs a token at once, as after a deploy or when IGDB refuses the token.
    workers = start_workers(
        "igdb_games",
        igdb_env(fake, sqlite_path),
        ["-a", "mode=full"],
        redis_url,
        tmp_path,
        SCHEDULER="scrapy.core.scheduler.Scheduler",
        DUPEFILTER_CLASS="scrapy.dupefilters.RFPDupeFilter",
    )

    codes = wait_all(workers, timeout=40)

    assert codes == [0] * WORKERS, [log[-3000:] for log in logs(tmp_path)]
    assert fake.token_requests == 1
    worker_logs = logs(tmp_path)
    assert sum("obtained from Twitch" in log for log in worker_logs) == 1
    assert sum("taken from the store" in log for log in worker_logs) == WORKERS - 1
    assert all("'store/games/" in log for log in worker_logs)


# --- TMDB listing pages ---------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_the_tmdb_reconcile_asks_again_for_changes_and_list_pages(
    fake_server: FakeServer, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    exports = FakeServer().start()
    try:
        fake = TmdbFake(fake_server, exports, rate_limit=10_000)
        template = movie_550()
        for tmdb_id in range(2000, 2241):
            fake.add_clone("movie", template, tmdb_id)
        today = datetime.now(UTC).date()
        # Two pages of changes (100 a page) and two of a list (20 a page).
        for tmdb_id in range(2000, 2150):
            fake.add_change("movie", today, tmdb_id)
        fake.lists["movie/popular"] = list(range(2200, 2240))
        window = f"{today - timedelta(days=1)}:{today}"
        # A dead worker had the first page of each listing and one detail request in flight.
        keys = [f"changes:{window}:1", "list:1:movie/popular", "2240"]
        left_by_a_dead_worker(redis, "tmdb_movies", keys)
        # The fake's pace, not TMDB's 39/s: 191 movies.
        settings = tmdb_run_settings(
            fake, run_settings(redis_url, tmp_path / "store.sqlite3"), tmp_path
        )

        crawler = await crawl(TmdbMoviesSpider, settings, mode="ids", ids="2240")
    finally:
        exports.stop()

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["distributed/reconcile/requeued"] == len(keys)
    assert stats["distributed/reconcile/rounds"] == 1
    assert "distributed/reconcile/unresolved" not in stats
    # Each page was asked for again, and led to its next page and to its records.
    pages = Counter(
        (hit.path, hit.param("page")) for hit in fake_server.hits(r"/3/movie/(changes|popular)")
    )
    assert pages == {
        ("/3/movie/changes", "1"): 1,
        ("/3/movie/changes", "2"): 1,
        ("/3/movie/popular", "1"): 1,
        ("/3/movie/popular", "2"): 1,
    }
    expected = [*range(2000, 2150), *range(2200, 2241)]
    assert sorted(stored_keys(tmp_path / "store.sqlite3", "movies", "tmdb_id")) == expected
