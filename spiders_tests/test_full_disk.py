"""A store that runs out of room: a SQLite file on a full filesystem, or one at its size cap.

The first ``SQLITE_FULL`` ends the crawl at once (reason ``store_full``) with one ERROR line,
no write retried, the connection's transaction state recovered, and every record the store
did not take saved to ``STORE_FAILED_DIR``.
"""

from __future__ import annotations

import gc
import json
import logging
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pymongo.errors import BulkWriteError, OperationFailure
from scrapy import signals
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.dumps import IMPORT_GC_THRESHOLD
from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.store import Record, StoreFullError
from contentcrawl.store.mongo import out_of_space
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.fakes.openlibrary import generated_lines, write_dump

# About 1.1 kB a line: some 13 MB of records, three times what the 4 MB filesystem holds,
# so that the reader stopping shows: the store fills within 4 batches of 1,000, and up to
# DUMP_MAX_PENDING_ITEMS (4) more may be on their way, one more read ahead.
EDITIONS = 12_000
# Pages a capped store may grow by: about 3.2 MB, one batch of 1,000 editions and a half.
CAP_PAGES = 800


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (needs root: skipped when the mount is refused)."""
    mount_point = tmp_path / "tiny_disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a 4 MB tmpfs was refused: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        unmounted = subprocess.run(
            ["umount", str(mount_point)], capture_output=True, text=True, check=False
        )
        if unmounted.returncode != 0:
            # Detached all the same, so that no mount outlives the test under pytest's
            # temporary folders (whose clean-up would warn in every later session).
            subprocess.run(["umount", "--lazy", str(mount_point)], check=True)
            pytest.fail(f"the crawl left the store's filesystem busy: {unmounted.stderr.strip()}")


def stored_keys(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as db:
        return {key for (key,) in db.execute("SELECT key FROM books")}


def saved_keys(folder: Path) -> list[str]:
    lines = (folder / "books.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["content"]["ol_key"] for line in lines]


def run_record(database: Path) -> dict[str, Any] | None:
    with closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT doc FROM runs").fetchone()
    return json.loads(row[0]) if row else None


def cap_the_store(crawler: Any, pages: int) -> None:
    """Once the crawl's store is open, let its file grow by ``pages`` pages at most.

    The cap holds for the crawl's one connection, run records included: it is lifted once
    the store pipeline has found the store full (it tries no write after that), as freeing
    room would, so that the run record can be written.
    """

    def cap(store: SqliteStore) -> None:
        (used,) = store.connection.execute("PRAGMA page_count").fetchone()
        store.connection.execute(f"PRAGMA max_page_count = {used + pages}")

    def lift(store: SqliteStore) -> None:
        store.connection.execute(f"PRAGMA max_page_count = {2**31}")

    async def capped() -> None:
        await crawl_store(crawler).run(cap)

    lifted = False

    async def lift_once_full() -> None:
        nonlocal lifted
        if not lifted and crawler.stats.get_value("store/books/failed"):
            lifted = True
            await crawl_store(crawler).run(lift)

    # weak=False: the functions are local, nothing else keeps them alive.
    crawler.signals.connect(capped, signal=signals.spider_opened, weak=False)
    crawler.signals.connect(lift_once_full, signal=signals.item_scraped, weak=False)


def assert_ended_at_the_first_full_batch(
    crawler: Any, caplog: pytest.LogCaptureFixture, database: Path, failed_dir: Path
) -> None:
    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "store_full"
    assert stats["runs/result/failed"] == 1
    store_errors = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR
        and record.name.startswith(("contentcrawl.store", "contentcrawl.pipelines.store"))
    ]
    assert len(store_errors) == 1, [record.getMessage() for record in store_errors]
    message = store_errors[0].getMessage()
    assert "is full" in message
    assert "database or disk is full" in message
    assert "closing the spider (store_full)" in message
    assert "cannot rollback" not in caplog.text
    # No write was retried: a full disk does not clear by waiting.
    assert "retry 1/" not in caplog.text
    # Every record the pipeline took is in the store or in the saved batches, once.
    stored = stored_keys(database)
    saved = saved_keys(failed_dir)
    assert len(saved) == len(set(saved)) == stats["store/books/failed"]
    assert stored.isdisjoint(saved)
    assert len(stored) + len(saved) == stats["store/books/received"]
    assert len(stored) == stats["store/books/inserted"]
    assert stored
    assert saved
    # The reader stopped: the crawl did not read the whole dump into saved batches.
    assert stats["store/books/received"] < EDITIONS
    # And it ended with the crawl, though Scrapy never closes a closing spider's start():
    # its dump and store connection are closed, the import's GC setting undone.
    assert crawler.spider.import_ended.is_set()
    assert gc.get_threshold()[0] != IMPORT_GC_THRESHOLD


@deferred_f_from_coro_f
async def test_a_full_filesystem_ends_the_crawl_at_once_with_every_record_saved(
    tiny_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", EDITIONS))
    database = tiny_disk / "store.sqlite3"
    failed_dir = tmp_path / "store_failed"
    settings = {
        "MONGO_URI": "",
        "SQLITE_PATH": str(database),
        "STORE_FAILED_DIR": str(failed_dir),
        "DUMPS_DIR": str(tmp_path / "dumps"),
    }

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    assert_ended_at_the_first_full_batch(crawler, caplog, database, failed_dir)


@deferred_f_from_coro_f
async def test_a_store_at_its_size_cap_ends_the_crawl_at_once_with_every_record_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite's max_page_count raises the same SQLITE_FULL a full disk does, without root.
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", EDITIONS))
    database = tmp_path / "store.sqlite3"
    failed_dir = tmp_path / "store_failed"
    settings = {
        "MONGO_URI": "",
        "SQLITE_PATH": str(database),
        "STORE_FAILED_DIR": str(failed_dir),
        "DUMPS_DIR": str(tmp_path / "dumps"),
    }
    crawler = make_crawler(OpenLibraryBooksSpider, settings)
    cap_the_store(crawler, CAP_PAGES)

    await crawler.crawl_async(dump=str(dump))

    assert_ended_at_the_first_full_batch(crawler, caplog, database, failed_dir)
    # The run record says why.
    run = run_record(database)
    assert run is not None
    assert run["result"] == "failed"
    assert run["finish_reason"] == "store_full"


def books(start: int, count: int) -> list[Record]:
    return [
        Record({"ol_key": f"/books/OL{n}M", "title": "x" * 2000}, "openlibrary")
        for n in range(start, start + count)
    ]


def test_after_sqlite_full_the_connection_recovers_and_nothing_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3", write_retries=3, retry_wait=0.5)
    store.open()
    try:
        connection = store.connection
        (used,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {used + 50}")
        # Larger than SQLite's page cache, so the statement itself hits the cap and SQLite
        # rolls the transaction back on its own.
        for attempt in range(3):
            with pytest.raises(StoreFullError, match="database or disk is full"):
                store.upsert_many("books", books(attempt * 1000, 1000))
            assert not connection.in_transaction
        assert "retry" not in caplog.text
        assert store.count("books") == 0

        # Room again: the same connection writes.
        connection.execute("PRAGMA max_page_count = 1073741823")
        assert store.upsert_many("books", books(0, 1000)).inserted == 1000
        assert store.count("books") == 1000
    finally:
        store.close()


def test_mongodb_out_of_space_errors_are_told_apart() -> None:
    # As servers report them: OutOfDiskSpace (14031) in a bulk write or a command, and
    # WiredTiger's ENOSPC passed on by older servers.
    full_bulk = BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 14031, "errmsg": "Not enough disk space"}]}
    )
    full_concern = BulkWriteError(
        {"writeErrors": [], "writeConcernErrors": [{"code": 14031, "errmsg": "disk full"}]}
    )
    enospc = OperationFailure(
        "WT_ERROR: No space left on device", code=8, details={"code": 8, "ok": 0}
    )
    full_command = OperationFailure("Not enough disk space", code=14031)
    duplicate = BulkWriteError(
        {"writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"}]}
    )
    too_large = OperationFailure("BSONObj size is invalid", code=10334)

    assert all(map(out_of_space, (full_bulk, full_concern, enospc, full_command)))
    assert not any(map(out_of_space, (duplicate, too_large, ValueError("no"))))
