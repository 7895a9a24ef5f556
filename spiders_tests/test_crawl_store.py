"""CrawlStore: the crawl's one store, opened once, on one thread, closed when the engine stops;
and a whole crawl whose every part goes through it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from contentcrawl.extensions.crawl_store import CrawlStore
from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from contentcrawl.store import Store, StoreError
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.conftest import open_store_for, read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake
from spiders_tests.settings_for import sqlite_settings, tmdb_run_settings
from spiders_tests.tmdb_crawls import running_tmdb, two_movies


def service_for(path: Path) -> CrawlStore:
    return CrawlStore.from_crawler(get_crawler(settings_dict=sqlite_settings(path)))


def thread_name(store: Store) -> str:
    return threading.current_thread().name


@deferred_f_from_coro_f
async def test_every_call_runs_on_one_opened_store_on_one_thread(tmp_path: Path) -> None:
    service = service_for(tmp_path / "store.sqlite3")

    names = {await service.run(thread_name) for _ in range(5)}
    await service.run(lambda store, name: store.set_state(name, {"at": 1}), "cursor")
    stores = {id(await service.run(lambda store: store)) for _ in range(3)}
    await service.close()

    assert len(names) == 1
    assert names.pop().startswith("store")
    assert len(stores) == 1
    reopened = SqliteStore(str(tmp_path / "store.sqlite3"))
    with reopened:
        assert reopened.get_state("cursor") == {"at": 1}


@deferred_f_from_coro_f
async def test_a_store_that_cannot_open_fails_every_call_with_the_same_error(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    service = service_for(blocker / "store.sqlite3")

    with pytest.raises(StoreError) as first:
        await service.run(thread_name)
    with pytest.raises(StoreError) as second:
        await service.open()
    await service.close()

    assert second.value is first.value


@deferred_f_from_coro_f
async def test_engine_stopped_closes_it_and_later_calls_are_refused(tmp_path: Path) -> None:
    crawler = get_crawler(settings_dict=sqlite_settings(tmp_path / "store.sqlite3"))
    service = CrawlStore.from_crawler(crawler)
    await service.run(lambda store: store.set_state("cursor", {"at": 2}))

    await crawler.signals.send_catch_log_async(signal=signals.engine_stopped)

    with pytest.raises(StoreError, match="closed"):
        await service.run(thread_name)
    # Closed for real: the last connection to a WAL database folds the WAL file back in
    # and removes it as it closes.
    assert (tmp_path / "store.sqlite3").exists()
    assert not (tmp_path / "store.sqlite3-wal").exists()


@deferred_f_from_coro_f
async def test_close_without_a_call_opens_nothing(tmp_path: Path) -> None:
    service = service_for(tmp_path / "store.sqlite3")

    await service.close()

    assert not (tmp_path / "store.sqlite3").exists()


# -- a whole crawl: one connection, opened on the store's thread ------------------------------

CURSOR = "tmdb_movies/changes"
# The hook below once added (an audit hook cannot be removed), and what it notes meanwhile.
_AUDIT_HOOKS: list[Callable[[str, tuple[Any, ...]], None]] = []
_connections: list[tuple[str, str]] | None = None


def _note_sqlite_connection(event: str, arguments: tuple[Any, ...]) -> None:
    if event == "sqlite3.connect" and _connections is not None:
        _connections.append((str(arguments[0]), threading.current_thread().name))


@contextmanager
def sqlite_connections() -> Iterator[list[tuple[str, str]]]:
    """Every ``sqlite3.connect`` made meanwhile in this process (Python's audit event), as
    (database, thread name)."""
    global _connections
    if _note_sqlite_connection not in _AUDIT_HOOKS:
        # Added once; it notes nothing outside this block.
        sys.addaudithook(_note_sqlite_connection)
        _AUDIT_HOOKS.append(_note_sqlite_connection)
    _connections = []
    try:
        yield _connections
    finally:
        _connections = None


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    """The fake TMDB with Fight Club (550) and A Good Day to Die Hard (47964)."""
    with running_tmdb(fake_server, two_movies()) as fake:
        yield fake


@deferred_f_from_coro_f
async def test_a_crawl_opens_its_store_once_for_records_marks_failures_runs_and_cursors(
    tmdb: TmdbFake, tmp_path: Path
) -> None:
    store_settings = sqlite_settings(tmp_path)
    settings = tmdb_run_settings(
        tmdb,
        store_settings,
        tmp_path,
        RUNS_HEARTBEAT_INTERVAL=0.1,
        # One request given up (its dead letter kept, two ERROR lines) still makes a clean
        # run here, so that its cursor is saved too.
        SPIDERMON_MAX_RETRIES=1,
        SPIDERMON_MAX_ERRORS=2,
    )
    await crawl(TmdbMoviesSpider, settings, ids="550")
    today = datetime.now(UTC).date()
    since = (today - timedelta(days=2)).isoformat()
    read_store(store_settings, lambda store: store.set_state(CURSOR, {"synced_through": since}))
    del tmdb.records["movie"][550]  # TMDB deleted it: its stored record gets flagged
    tmdb.fail(r"/3/movie/1234$", *[500] * 5)  # out of retries: a dead letter
    for tmdb_id in (550, 47964, 1234):
        tmdb.add_change("movie", today, tmdb_id)

    with sqlite_connections() as connections:
        crawler = await crawl(TmdbMoviesSpider, settings, mode="changes")

    stats = crawler.stats.get_stats()
    assert stats["runs/result/ok"] == 1
    assert stats["store/movies/inserted"] == 1
    assert stats["tmdb/movies/marked_deleted"] == 1
    assert stats["failures/recorded"] == 1
    assert stats["sync_state/saved"] == 1
    assert connections == [(store_settings["SQLITE_PATH"], "store_0")]
    # What each part wrote is there, through that one connection.
    store = open_store_for(store_settings)
    try:
        assert store.get("movies", 47964) is not None
        assert (store.get("movies", 550) or {})["_meta"]["deleted_at"]
        assert [failure["id"] for failure in store.pending_failures("tmdb_movies")] == [1234]
        assert store.get_state(CURSOR) == {"synced_through": today.isoformat()}
        run = store.recent_runs("tmdb_movies", 1)[0]
    finally:
        store.close()
    assert (run["result"], run["failures_recorded"], run["inserted"]) == ("ok", 1, 1)
