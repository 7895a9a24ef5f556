"""Secrets at rest: owner-only files and directories, and the IGDB token kept out of the store.

A process umask covers only new files: a file an earlier run left readable by all keeps
its mode when appended to or reopened, so these tests start from such files.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.middlewares.igdb_oauth import REDIS_KEY, STATE_NAME
from contentcrawl.spiders.igdb_games import IgdbGamesSpider
from contentcrawl.store.base import Record
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import child_env, crawl
from spiders_tests.fakes.igdb import FakeIgdb, sample_games
from spiders_tests.fakes.openlibrary import FakeOpenLibraryDumps, generated_lines, write_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.settings_for import igdb_settings, sqlite_settings

WIDE_FILE, WIDE_DIR = 0o644, 0o755


@contextmanager
def permissive_umask() -> Iterator[None]:
    """The umask of a shell that creates files readable by all (a crawl must not rely on it)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def shared(root: Path) -> dict[str, str]:
    """Files and directories under ``root`` (itself included) others may read or enter."""
    paths = [root, *root.rglob("*")]
    return {
        str(path.relative_to(root.parent)): oct(mode(path)) for path in paths if mode(path) & 0o077
    }


def wide_sqlite(path: Path) -> None:
    """A WAL-mode SQLite file readable by all, as a run before owner-only files left it."""
    with permissive_umask(), closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE leftover (x)")
    path.chmod(WIDE_FILE)


# --- the SQLite store --------------------------------------------------------------------


@pytest.mark.parametrize("existing", [False, True], ids=["new", "left-readable-by-all"])
def test_the_sqlite_store_and_its_wal_and_shm_files_are_owner_only(
    tmp_path: Path, existing: bool
) -> None:
    database = tmp_path / "data" / "store.sqlite3"
    if existing:
        database.parent.mkdir()
        wide_sqlite(database)
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").write_bytes(b"")
            Path(f"{database}{suffix}").chmod(WIDE_FILE)
    store = SqliteStore(database)
    with permissive_umask():
        store.open()
    try:
        store.upsert_many("books", [Record({"ol_key": "/books/OL1M"}, "openlibrary")])
        # While the store is open its -wal and -shm files exist.
        files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
        assert {path.name: oct(mode(path)) for path in files} == {
            path.name: oct(0o600) for path in files
        }
        if not existing:
            assert oct(mode(database.parent)) == oct(0o700)
    finally:
        store.close()


# --- a whole crawl -----------------------------------------------------------------------


def test_a_crawl_leaves_every_file_and_directory_it_writes_owner_only(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", 300))
    dumps = FakeOpenLibraryDumps(fake_server, {"editions": dump.read_bytes()})
    data = tmp_path / "data"
    data.mkdir(mode=WIDE_DIR)
    data.chmod(WIDE_DIR)
    # What a run before owner-only files left behind, readable by all.
    wide_sqlite(data / "store.sqlite3")
    failed = data / "store_failed"
    failed.mkdir()
    (failed / "books.jsonl").write_text("a line damaged by a crash\n")
    (failed / "books.bad").write_text("set aside before\n")
    job = data / "job"
    job.mkdir()
    images = data / "images"
    images.mkdir()
    log = data / "crawl.log"
    log.write_text("an earlier run's log\n")
    for path in (failed, job, images):
        path.chmod(WIDE_DIR)
    for path in (failed / "books.jsonl", failed / "books.bad", log):
        path.chmod(WIDE_FILE)
    env = child_env(
        data / "store.sqlite3",
        **dumps.settings,
        DUMPS_DIR=str(data / "dumps"),
        STORE_FAILED_DIR=str(failed),
        IMAGES_STORE=str(images),
        PROGRESS_LIVE="0",
    )

    settings = ["-s", f"JOBDIR={job}", "-s", f"LOG_FILE={log}"]
    done = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "openlibrary_books", *settings],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        umask=0o022,
    )

    text = log.read_text()
    assert done.returncode == 0, text[-3000:] + done.stderr[-3000:]
    assert "'store/books/inserted': 300" in text
    # Everything the crawl wrote is there: the store, a downloaded dump, the set-aside
    # line, JOBDIR's state, the log.
    written = {str(path.relative_to(data)) for path in data.rglob("*") if path.is_file()}
    assert {"store.sqlite3", "store_failed/books.bad", "job/spider.state", "crawl.log"} <= written
    assert any(name.startswith("dumps/ol_dump_editions") for name in written)
    assert shared(data) == {"data": oct(WIDE_DIR)}  # the parent the operator made is theirs


# --- the IGDB token ------------------------------------------------------------------------


def token_settings(fake: FakeIgdb, database: Path, **overrides: Any) -> dict[str, Any]:
    """A crawl of ``fake`` into the SQLite file ``database``, over 4 id ranges."""
    return igdb_settings(fake, sqlite_settings(database), IGDB_PARALLEL_RANGES=4, **overrides)


def bytes_at_rest(database: Path) -> bytes:
    """The SQLite file and whatever its WAL holds right now."""
    wal = Path(f"{database}-wal")
    return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("kept_in", ["store", "memory", "redis"])
@deferred_f_from_coro_f
async def test_the_igdb_token_stays_out_of_the_sqlite_file_and_its_wal_unless_kept_there(
    fake_server: FakeServer, tmp_path: Path, request: pytest.FixtureRequest, kept_in: str
) -> None:
    fake = FakeIgdb(fake_server, sample_games(60), requests_per_second=None, max_open=None)
    database = tmp_path / "store.sqlite3"
    extra: dict[str, Any] = {"IGDB_TOKEN_STORE": kept_in}
    if kept_in == "redis":
        request.getfixturevalue("redis")
        extra["REDIS_URL"] = request.getfixturevalue("redis_url")
    SqliteStore(database).open()
    # A reader holding the file open keeps the WAL file there (the last connection to
    # close folds it into the database and deletes it).
    with closing(sqlite3.connect(database)) as reader:
        reader.execute("SELECT COUNT(*) FROM games").fetchone()

        crawler = await crawl(IgdbGamesSpider, token_settings(fake, database, **extra))

        at_rest = bytes_at_rest(database)
    assert crawler.stats.get_value("item_scraped_count") == 60
    (token,) = fake.issued
    assert (token.encode() in at_rest) is (kept_in == "store")
    assert (token.encode() in bytes_at_rest(database)) is (kept_in == "store")


@deferred_f_from_coro_f
async def test_redis_shares_one_token_across_crawls_and_expires_it_with_the_token(
    fake_server: FakeServer, tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    fake = FakeIgdb(fake_server, sample_games(30), requests_per_second=None, max_open=None)
    redis_kept = {"IGDB_TOKEN_STORE": "redis", "REDIS_URL": redis_url}
    # Two crawls on two stores: only Redis can carry the token from one to the other.
    first = await crawl(
        IgdbGamesSpider,
        token_settings(fake, tmp_path / "first.sqlite3", **redis_kept),
    )
    # A later run: the first run's shared queue, duplicate filter and run state are gone.
    token_keys = set(redis.keys(REDIS_KEY.format(app="*")))
    redis.delete(*(set(redis.keys("*")) - token_keys))
    second = await crawl(
        IgdbGamesSpider,
        token_settings(fake, tmp_path / "second.sqlite3", **redis_kept),
    )

    assert fake.token_requests == 1
    (token,) = fake.issued
    assert first.stats.get_value("igdb/token/fetched") == 1
    assert second.stats.get_value("igdb/token/loaded") == 1
    assert second.stats.get_value("item_scraped_count") == 30
    (key,) = redis.keys(REDIS_KEY.format(app="*"))
    assert token in redis.get(key)
    assert redis.pttl(key) / 1000 == pytest.approx(fake.expires_in, abs=60)
    assert fake.client_id not in key
    for database in ("first.sqlite3", "second.sqlite3"):
        with closing(sqlite3.connect(tmp_path / database)) as db:
            rows = db.execute("SELECT 1 FROM sync_state WHERE name = ?", (STATE_NAME,))
            assert rows.fetchone() is None
        assert token.encode() not in bytes_at_rest(tmp_path / database)


@deferred_f_from_coro_f
async def test_memory_keeps_the_token_to_its_own_crawl(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake = FakeIgdb(fake_server, sample_games(30), requests_per_second=None, max_open=None)
    memory = {"IGDB_TOKEN_STORE": "memory"}
    settings = token_settings(fake, tmp_path / "store.sqlite3", **memory)

    first = await crawl(IgdbGamesSpider, settings)
    second = await crawl(IgdbGamesSpider, settings)

    assert fake.token_requests == 2
    assert first.stats.get_value("igdb/token/fetched") == 1
    assert second.stats.get_value("igdb/token/fetched") == 1
    assert second.stats.get_value("igdb/token/loaded") is None
