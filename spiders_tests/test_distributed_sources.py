"""Distributed IGDB and TMDB runs on a real redis-server, against the local fakes (MusicBrainz:
test_distributed_musicbrainz.py; the workers' helpers: distributed_workers.py).

Two ``scrapy crawl`` workers share one Redis run and one SQLite store. Each worker sends
its own User-Agent, so the fake tells which worker sent a request: the kill tests hold one
page in the fake, kill the worker that sent it (``kill -9``) and expect the other to
store every record all the same. In-process runs find in Redis what a dead worker left
(keys recorded, nothing stored) and must ask for each kind of key again.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.crawling import crawl
from spiders_tests.distributed_workers import (
    KILL_TTLS,
    WORKERS,
    kill_the_sender_and_finish,
    left_by_a_dead_worker,
    logs,
    release_once_all_joined,
    run_settings,
    start_workers,
    stored_keys,
    wait_all,
    worker_env,
)
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import movie_550
from spiders_tests.settings_for import tmdb_run_settings
from spiders_tests.tmdb_crawls import running_tmdb

# Account limits far above what the fake needs: this file tests the shared run, not them.
FAST_ACCOUNT = {"igdb": {"rate": 50, "concurrency": 24}}
IGDB_PAGES = r"/v4/games"


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


def test_igdb_workers_fetch_every_game_once_and_store_it(
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
    # Crawls of their own (own queue) on one account and one store: each one's first
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
    with running_tmdb(fake_server, []) as fake:
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
