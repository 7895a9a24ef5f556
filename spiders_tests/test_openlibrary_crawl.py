"""Whole Open Library dump imports in process: local files, re-imports, bad lines, memory,
crashes (downloaded dumps: test_openlibrary_downloads.py)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl import settings as project_settings
from contentcrawl.spiders.openlibrary_authors import OpenLibraryAuthorsSpider
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.openlibrary_works import OpenLibraryWorksSpider
from contentcrawl.store import Store
from spiders_tests.crawling import PROJECT, crawl, descendants, still_running, store_counts
from spiders_tests.fakes.openlibrary import (
    DATA,
    SAMPLE_EDITIONS,
    dump_line,
    generated_lines,
    sample_dump,
    sample_lines,
    write_dump,
)
from spiders_tests.settings_for import dump_settings, sqlite_settings
from spiders_tests.sqlite_files import saved_state, stored_count

# --- local files, re-imports --------------------------------------------------------------


@deferred_f_from_coro_f
async def test_sample_dump_imports_and_reimport_writes_nothing(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = dump_settings(store_settings, tmp_path)
    dump = str(sample_dump("editions"))

    first = await crawl(OpenLibraryBooksSpider, settings, dump=dump)
    stats = first.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert store_counts(stats, "books") == {
        "inserted": SAMPLE_EDITIONS,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
    }
    assert stats["openlibrary/records"] == stats["openlibrary/lines"] == SAMPLE_EDITIONS
    assert store.count("books") == SAMPLE_EDITIONS
    book = store.get("books", "/books/OL10000135M")
    assert book is not None
    assert book["publish_date"] == "1993-12"
    assert book["publish_date_raw"] == "December 1993"
    assert book["_meta"]["revision"] == 4
    first_seen = book["_meta"]["first_seen"]

    # rework=1: the unchanged file is read again and every line worked (no revision skip).
    again = await crawl(OpenLibraryBooksSpider, settings, dump=dump, rework="1")
    stats = again.stats.get_stats()
    assert store_counts(stats, "books") == {
        "inserted": 0,
        "updated": 0,
        "unchanged": SAMPLE_EDITIONS,
        "failed": 0,
    }
    book = store.get("books", "/books/OL10000135M")
    assert book is not None
    assert book["_meta"]["first_seen"] == first_seen
    state = store.get_state("openlibrary_books/dump")
    assert state is not None
    assert state["complete"] is True
    assert state["records"] == SAMPLE_EDITIONS
    assert state["download"] == "local"


@deferred_f_from_coro_f
async def test_changed_revision_is_exactly_one_update(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = dump_settings(store_settings, tmp_path)
    lines = sample_lines("editions")
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    type_, key, revision, modified, payload = lines[7].rstrip(b"\n").split(b"\t")
    doc = json.loads(payload)
    doc["revision"] = int(revision) + 1
    lines[7] = b"\t".join([type_, key, b"%d" % doc["revision"], modified, json.dumps(doc).encode()])
    lines[7] += b"\n"
    write_dump(dump, lines)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))
    stats = crawler.stats.get_stats()
    # The other lines' revisions are those stored: skipped before the store is asked.
    assert stats["openlibrary/import/unchanged_revision"] == SAMPLE_EDITIONS - 1
    assert store_counts(stats, "books") == {
        "inserted": 0,
        "updated": 1,
        "unchanged": 0,
        "failed": 0,
    }
    stored = store.get("books", key.decode())
    assert stored is not None
    assert stored["_meta"]["revision"] == doc["revision"]


@deferred_f_from_coro_f
async def test_plain_text_dump_is_read_in_place(tmp_path: Path) -> None:
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path)
    plain = DATA / "ol_dump_works_head100.txt"
    crawler = await crawl(OpenLibraryWorksSpider, settings, dump=str(plain))
    stats = crawler.stats.get_stats()
    assert stats["store/works/inserted"] == 100
    assert not (tmp_path / "dumps").exists()


@deferred_f_from_coro_f
async def test_works_and_authors_samples(tmp_path: Path) -> None:
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path)
    works = await crawl(OpenLibraryWorksSpider, settings, dump=str(sample_dump("works")))
    authors = await crawl(OpenLibraryAuthorsSpider, settings, dump=str(sample_dump("authors")))
    assert works.stats.get_value("store/works/inserted") == len(sample_lines("works"))
    assert authors.stats.get_value("store/authors/inserted") == len(sample_lines("authors"))
    with closing(sqlite3.connect(tmp_path / "s.sqlite3")) as db:
        (doc,) = db.execute("SELECT doc FROM authors WHERE key = '/authors/OL118077A'").fetchone()
    orwell = json.loads(doc)
    assert orwell["name"] == "George Orwell"
    assert orwell["birth_date"] == "1903-06-25"
    assert orwell["photo_urls"][0] == "https://covers.openlibrary.org/a/id/9160343-L.jpg"


@deferred_f_from_coro_f
async def test_author_names_come_from_the_store(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = dump_settings(store_settings, tmp_path)
    author = json.loads((DATA / "api_authors_OL25176A.json").read_text())
    edition = json.loads((DATA / "api_isbn_0879973420.json").read_text())
    authors_dump = write_dump(tmp_path / "authors.txt", [dump_line(author)])
    editions_dump = write_dump(tmp_path / "editions.txt", [dump_line(edition)])

    await crawl(OpenLibraryAuthorsSpider, settings, dump=str(authors_dump))
    await crawl(OpenLibraryBooksSpider, settings, dump=str(editions_dump))

    book = store.get("books", "/books/OL8131917M")
    assert book is not None
    assert book["author_keys"] == ["/authors/OL25176A"]
    assert book["author_names"] == ["Gordon R. Dickson"]


@deferred_f_from_coro_f
async def test_limit_stops_after_n_records(tmp_path: Path) -> None:
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path)
    crawler = await crawl(
        OpenLibraryBooksSpider, settings, dump=str(sample_dump("editions")), limit="25"
    )
    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["openlibrary/records"] == 25
    assert stats["store/books/inserted"] == 25
    assert stats["openlibrary/lines"] < SAMPLE_EDITIONS
    assert saved_state(tmp_path / "s.sqlite3", "openlibrary_books/dump")["complete"] is False


@deferred_f_from_coro_f
async def test_progress_line_reports_rate_bytes_percent_and_eta(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dump_settings(
        sqlite_settings(tmp_path / "s.sqlite3"), tmp_path, DUMP_PROGRESS_INTERVAL=0
    )
    caplog.set_level(logging.INFO)
    await crawl(OpenLibraryBooksSpider, settings, dump=str(sample_dump("editions")))
    size = sample_dump("editions").stat().st_size
    progress = [r.getMessage() for r in caplog.records if "records (" in r.getMessage()]
    assert progress
    assert f"{SAMPLE_EDITIONS} records (" in progress[-1]
    assert f"/ {size / 1024:.1f} KiB (100.0%)" in progress[-1]
    assert "ETA 0:00:00" in progress[-1]


# --- bad input ----------------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_malformed_lines_are_counted_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = sample_lines("editions")[:20]
    bad = {
        3: b'/type/edition\t/books/OL1M\t4\t2010-01-01\t{"title": "cut off\n',
        6: b"/type/edition\t/books/OL2M\t4\t{}\n",
        9: b'/type/edition\t\t4\t2010-01-01\t{"title": "no key"}\n',
        12: b'/type/edition\t/books/OL3M\tfour\t2010-01-01\t{"title": "T"}\n',
        15: b'/type/redirect\t/books/OL4M\t2\t2010-01-01\t{"location": "/books/OL5M"}\n',
    }
    lines = list(good)
    for number in sorted(bad):
        lines.insert(number - 1, bad[number])
    last = sample_lines("editions")[20]
    dump = tmp_path / "editions.txt.gz"
    # A whole gzip member, then half of a second one: the download stopped mid-file.
    member = gzip.compress(last, mtime=0)
    dump.write_bytes(gzip.compress(b"".join(lines), mtime=0) + member[: len(member) // 2])
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path)
    caplog.set_level(logging.INFO)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["openlibrary/bad_lines"] == 5
    for reason in ("json", "columns", "key", "revision", "truncated"):
        assert stats[f"openlibrary/bad_lines/{reason}"] == 1
    assert stats["openlibrary/skipped/redirect"] == 1
    assert stats["store/books/inserted"] == 20
    messages = caplog.text
    for number, reason in [(3, "json"), (6, "columns"), (9, "key"), (12, "revision")]:
        assert f"line {number} skipped ({reason})" in messages
    assert f"line {len(lines) + 1} skipped (truncated)" in messages
    assert "20 records from 25 lines" in messages
    assert "5 bad lines skipped, 1 lines of other types skipped" in messages
    state = saved_state(tmp_path / "s.sqlite3", "openlibrary_books/dump")
    assert state["bad_lines"] == 5
    assert state["complete"] is False


@deferred_f_from_coro_f
async def test_missing_dump_file_closes_with_a_reason(tmp_path: Path) -> None:
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path)
    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(tmp_path / "nope.txt.gz"))
    assert crawler.stats.get_value("finish_reason") == "dump_not_found"


# --- memory and crashes ---------------------------------------------------------------------


async def import_generated(tmp_path: Path, lines: int, *, traced: bool, **extra: Any) -> int:
    """Import ``lines`` generated editions; the peak of traced Python memory (0 if not traced)."""
    dump = write_dump(tmp_path / f"ed{lines}.txt.gz", generated_lines("editions", lines))
    settings = dump_settings(
        {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / f"s{lines}.sqlite3")}, tmp_path, **extra
    )
    if traced:
        tracemalloc.start()
    try:
        crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert crawler.stats.get_value("store/books/inserted") == lines
    return peak


@deferred_f_from_coro_f
async def test_memory_stays_flat_as_the_dump_grows(tmp_path: Path) -> None:
    # A first crawl imports and caches what every crawl needs; it is not measured.
    await import_generated(tmp_path, 100, traced=False)
    # One batch in the pipelines at a time: with the batch being read and the store's
    # buffer, both sizes reach the most the import ever holds within their first few
    # 1,000-line batches (~3 MiB each), and what differs is only what a leak would hold:
    # ~3 KiB per line kept (6,000 more lines: > 18 MiB).
    small = await import_generated(tmp_path, 3_000, traced=True, DUMP_MAX_PENDING_ITEMS=1)
    large = await import_generated(tmp_path, 9_000, traced=True, DUMP_MAX_PENDING_ITEMS=1)
    assert large - small < 10 * 1024 * 1024, (small, large)


class SlowPipeline:
    """A pipeline as slow as a remote store: records how many items it held at once."""

    most_at_once = 0

    def __init__(self) -> None:
        self.holding = 0

    async def process_item(self, item: Any) -> Any:
        self.holding += 1
        SlowPipeline.most_at_once = max(SlowPipeline.most_at_once, self.holding)
        # Slower than the reader fills a 1,000-line batch.
        await asyncio.sleep(0.2)
        self.holding -= 1
        return item


@deferred_f_from_coro_f
async def test_reading_waits_for_slow_pipelines(tmp_path: Path) -> None:
    SlowPipeline.most_at_once = 0
    pipelines = {**project_settings.ITEM_PIPELINES, f"{__name__}.SlowPipeline": 250}
    await import_generated(
        tmp_path, 6_000, traced=False, DUMP_MAX_PENDING_ITEMS=3, ITEM_PIPELINES=pipelines
    )
    # Without backpressure the reader runs ahead and batches pile up in the pipelines.
    assert 2 <= SlowPipeline.most_at_once <= 3


def import_command(tmp_path: Path, total: int) -> tuple[list[str], dict[str, str], Path]:
    """The command line and environment of a subprocess import of ``total`` generated lines."""
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", total))
    database = tmp_path / "store.sqlite3"
    env = {
        **os.environ,
        "SQLITE_PATH": str(database),
        "MONGO_URI": "",
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "STORE_BATCH_SIZE": "100",
    }
    command = [sys.executable, "-m", "scrapy", "crawl", "openlibrary_books", "-a", f"dump={dump}"]
    return command, env, database


def wait_for_books(process: subprocess.Popen[Any], database: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while stored_count(database, "books")[0] < count:
        assert process.poll() is None, "the import ended before it could be stopped"
        assert time.monotonic() < deadline, "no records written in time"
        time.sleep(0.05)


def test_import_killed_midway_reruns_to_every_record_once(tmp_path: Path) -> None:
    total = 6_000
    command, env, database = import_command(tmp_path, total)
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        env={**env, "DUMP_WORKERS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_books(process, database, 500)
        # The fork server and the two workers it started.
        workers = descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = stored_count(database, "books")[0]
    assert process.returncode == -signal.SIGKILL
    assert 0 < killed_at < total
    assert len(workers) >= 3, workers
    # Nothing of the killed crawl lives on, waiting for chunks that will never come.
    deadline = time.monotonic() + 10
    while still_running(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert still_running(workers) == set()

    rerun = subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert stored_count(database, "books") == (total, total)
    assert f"'store/books/inserted': {total - killed_at}" in rerun.stderr


def test_ctrl_c_stops_the_import_at_once_with_what_was_read_stored(tmp_path: Path) -> None:
    # Far more than the 2,000 stored at the stop and the batches the reader may be ahead.
    total = 30_000
    command, env, database = import_command(tmp_path, total)
    log = tmp_path / "first.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=out, stderr=out)
        try:
            wait_for_books(process, database, 2_000)
            process.send_signal(signal.SIGINT)
            # One Ctrl-C: the reader stops and the batches in the pipelines are stored.
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
    text = log.read_text()
    assert "'finish_reason': 'shutdown'" in text
    stored, distinct = stored_count(database, "books")
    assert 0 < stored == distinct < total
    assert f"'store/books/inserted': {stored}," in text
    assert saved_state(database, "openlibrary_books/dump").get("complete") is not True

    rerun = subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert stored_count(database, "books") == (total, total)
