"""CrawlStore: the crawl's one store, opened once, on one thread, closed when the engine stops."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from contentcrawl.extensions.crawl_store import CrawlStore
from contentcrawl.store import Store, StoreError
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.settings_for import sqlite_settings


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
