"""Dump lines worked in processes: order, a killed worker, stop latency, the same records
with 0, 1 and 2 workers, skips by revision and of unchanged dump files."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.dumps.pool import ChunkWorkers, DumpWorkerError
from contentcrawl.dumps.read import parsed_json
from contentcrawl.dumps.workers import WorkedChunk
from contentcrawl.sources.openlibrary.lines import LineWorker
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.store import Store
from contentcrawl.store.base import canonical_json, content_hash
from spiders_tests.crawling import PROJECT, crawl, seconds_past_item_limit
from spiders_tests.fakes.openlibrary import (
    DATA,
    SAMPLE_EDITIONS,
    generated_lines,
    sample_dump,
    sample_lines,
    write_dump,
)
from spiders_tests.settings_for import dump_settings, sqlite_settings

# --- the pool on its own ------------------------------------------------------------------


@dataclass(frozen=True)
class SlowFirst:
    """Echoes each chunk's first line number; the earlier the chunk, the slower."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        time.sleep(max(0.0, 0.3 - 0.1 * context))
        return WorkedChunk(skipped={str(lines[0][0]): len(lines)})


@dataclass(frozen=True)
class KillOnChunk:
    """Kills its own worker process on chunk ``victim``: once (a marker file remembers),
    or every time."""

    victim: int
    marker: str
    every_time: bool = False

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        if context == self.victim and (self.every_time or not os.path.exists(self.marker)):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return WorkedChunk(skipped={str(context): len(lines)})


async def numbered_chunks(count: int) -> AsyncIterator[tuple[list[tuple[int, bytes]], int, int]]:
    for number in range(count):
        yield [(number * 10 + 1, b"line")], number, number


async def work_all(workers: ChunkWorkers, work: Any, count: int) -> list[tuple[int, WorkedChunk]]:
    try:
        return [
            result async for result in workers.worked(work, numbered_chunks(count), asyncio.Event())
        ]
    finally:
        workers.close()


@deferred_f_from_coro_f
async def test_results_come_back_in_chunk_order_though_later_chunks_finish_first() -> None:
    results = await work_all(ChunkWorkers(2, 20), SlowFirst(), 4)
    assert [note for note, _ in results] == [0, 1, 2, 3]
    assert [next(iter(chunk.skipped)) for _, chunk in results] == ["1", "11", "21", "31"]


@deferred_f_from_coro_f
async def test_a_worker_killed_mid_chunk_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    workers = ChunkWorkers(2, 20)
    results = await work_all(workers, KillOnChunk(2, str(tmp_path / "killed")), 6)
    assert (tmp_path / "killed").exists()
    assert [note for note, _ in results] == [0, 1, 2, 3, 4, 5]
    assert workers.restarts == 1


@dataclass(frozen=True)
class WhereWorked:
    """Names the process that worked each chunk."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        return WorkedChunk(skipped={str(os.getpid()): len(lines)})


@deferred_f_from_coro_f
async def test_one_chunk_is_worked_in_this_process_and_two_in_the_workers() -> None:
    one = ChunkWorkers(2, 20)
    [(_, chunk)] = await work_all(one, WhereWorked(), 1)
    assert set(chunk.skipped) == {str(os.getpid())}
    assert one.workers == 0

    two = ChunkWorkers(2, 20)
    results = await work_all(two, WhereWorked(), 2)
    assert str(os.getpid()) not in {pid for _, chunk in results for pid in chunk.skipped}
    assert two.workers == 2


@deferred_f_from_coro_f
async def test_a_chunk_that_kills_its_worker_twice_fails_cleanly(tmp_path: Path) -> None:
    workers = ChunkWorkers(1, 20)
    results: list[int] = []

    async def work() -> None:
        work = KillOnChunk(1, str(tmp_path / "killed"), every_time=True)
        try:
            async for note, _ in workers.worked(work, numbered_chunks(4), asyncio.Event()):
                results.append(note)
        finally:
            workers.close()

    with pytest.raises(DumpWorkerError, match="died twice"):
        await work()
    assert results == [0]


@deferred_f_from_coro_f
async def test_short_chunks_go_ahead_by_their_lines_not_their_number() -> None:
    """A re-import's chunks hold only their changed lines: ``in_flight`` chunks' worth of
    lines go ahead of a slow one, not ``in_flight`` chunks."""
    workers = ChunkWorkers(2, 20, chunk_lines=10)
    asked: list[int] = []

    async def one_line_chunks() -> AsyncIterator[tuple[list[tuple[int, bytes]], int, int]]:
        for number in range(100):
            asked.append(number)
            yield [(number + 1, b"line")], number, number

    asked_by_first_result = None
    try:
        async for _ in workers.worked(SlowFirst(), one_line_chunks(), asyncio.Event()):
            if asked_by_first_result is None:
                asked_by_first_result = len(asked)
    finally:
        workers.close()
    # 4 chunks in flight (2 workers) of up to 10 lines: 40 one-line chunks before the first
    # result (SlowFirst holds chunk 0 for 0.3 s); then each result lets one more go.
    assert asked_by_first_result == 4 * 10
    assert len(asked) == 100


# A fresh process (a fork server of its own) whose workers import Scrapy: a slow start.
EVENT_LOOP_DURING_THE_START = """
import asyncio, logging, time
from contentcrawl.dumps.pool import ChunkWorkers
from contentcrawl.dumps.workers import WorkedChunk
from spiders_tests.test_dump_workers import WhereWorked

async def main():
    ticks = [time.monotonic()]

    async def tick():
        while True:
            await asyncio.sleep(0.005)
            ticks.append(time.monotonic())

    ticker = asyncio.ensure_future(tick())
    workers = ChunkWorkers(2, logging.INFO, preload=("scrapy.crawler",))
    started = time.monotonic()

    async def chunks():
        for number in range(2):
            yield [(number + 1, b"line")], number, number

    async for _ in workers.worked(WhereWorked(), chunks(), asyncio.Event()):
        break
    first_result = time.monotonic() - started
    workers.close()
    ticker.cancel()
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    print(first_result, max(gaps))

asyncio.run(main())
"""


@pytest.mark.timing
def test_the_event_loop_runs_on_while_the_worker_processes_start() -> None:
    """The first start of the workers (a fork server, here importing Scrapy) does not hold
    the event loop: the crawl reads and looks chunks up meanwhile."""
    run = subprocess.run(
        [sys.executable, "-c", EVENT_LOOP_DURING_THE_START],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first_result, longest_gap = map(float, run.stdout.split())
    assert first_result > 0.2
    assert longest_gap < 0.1


def test_the_workers_import_no_scrapy() -> None:
    """A worker process imports its modules at its start: without Scrapy (and Twisted) it
    starts in a fraction of the time."""
    modules = (
        "contentcrawl.dumps.workers",
        "contentcrawl.dumps.pool",
        "contentcrawl.sources.musicbrainz.lines",
        "contentcrawl.sources.openlibrary.lines",
    )
    check = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'scrapy', 'twisted'}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"


# A crawl's main module as the ``scrapy`` console script is one: a script that imports
# Scrapy, its work guarded by ``__name__``.
CONSOLE_SCRIPT_LIKE = """
from scrapy.cmdline import execute
import asyncio, logging
from contentcrawl.dumps.pool import ChunkWorkers
from spiders_tests.worker_probe import LoadedFrameworks

async def main():
    workers = ChunkWorkers(1, logging.INFO)

    async def chunks():
        for number in range(2):
            yield [(number + 1, b"line")], number, number

    try:
        async for _, chunk in workers.worked(LoadedFrameworks(), chunks(), asyncio.Event()):
            print(sorted(chunk.skipped))
            break
    finally:
        workers.close()

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_worker_does_not_import_the_crawls_main_module(tmp_path: Path) -> None:
    """multiprocessing would import the ``scrapy`` console script in each worker, and
    Scrapy with it; the workers need none of it."""
    script = tmp_path / "scrapy_like"
    script.write_text(CONSOLE_SCRIPT_LIKE)
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# --- whole imports ------------------------------------------------------------------------


def stored_books(store: Store) -> dict[str, tuple[str, dict[str, Any]]]:
    """Key → (hash, document without its dates) of every stored book."""
    books = {}
    for document in store.iter_documents("books"):
        meta = document.pop("_meta")
        books[document["ol_key"]] = (meta["hash"], document)
    return books


@deferred_f_from_coro_f
async def test_records_and_hashes_are_the_same_with_0_1_and_2_workers(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    dump = str(sample_dump("editions"))
    seen = []
    for workers in (0, 1, 2):
        # More than one chunk: a dump of one is worked in the crawl's own process.
        settings = dump_settings(
            store_settings, tmp_path, DUMP_WORKERS=workers, DUMP_CHUNK_LINES=50
        )
        crawler = await crawl(OpenLibraryBooksSpider, settings, dump=dump, rework="1")
        assert crawler.stats.get_value("openlibrary/records") == SAMPLE_EDITIONS
        assert crawler.stats.get_value("openlibrary/import/worker_processes") == workers
        seen.append(stored_books(store))
        if workers == 0:
            assert crawler.stats.get_value("store/books/inserted") == SAMPLE_EDITIONS
        else:
            # The same canonical JSON and hash: nothing to write.
            assert crawler.stats.get_value("store/books/unchanged") == SAMPLE_EDITIONS
    assert len(seen[0]) == SAMPLE_EDITIONS
    assert seen[0] == seen[1] == seen[2]
    # The hash is the one the store pipeline gives the same content in this process.
    for key, (hash_, document) in seen[0].items():
        assert content_hash(document) == hash_, key


def retitled(line: bytes) -> tuple[bytes, str, int]:
    """An Open Library dump ``line`` at its next revision with a new title: the new line,
    its key and its revision."""
    type_, key, revision, modified, payload = line.rstrip(b"\n").split(b"\t")
    doc = json.loads(payload)
    doc["title"] = "A new title"
    new_revision = int(revision) + 1
    new = b"\t".join([type_, key, b"%d" % new_revision, modified, json.dumps(doc).encode()])
    return new + b"\n", key.decode(), new_revision


@deferred_f_from_coro_f
async def test_a_changed_revision_mid_chunk_is_the_only_line_worked_again(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=50)
    lines = sample_lines("editions")
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    # Line 75 is in the middle of the second chunk of 50.
    lines[74], key, new_revision = retitled(lines[74])
    write_dump(dump, lines)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))
    stats = crawler.stats.get_stats()
    assert stats["openlibrary/lines"] == SAMPLE_EDITIONS
    assert stats["openlibrary/import/unchanged_revision"] == SAMPLE_EDITIONS - 1
    assert stats["openlibrary/records"] == 1
    assert stats["store/books/updated"] == 1
    assert "store/books/unchanged" not in stats
    stored = store.get("books", key)
    assert stored is not None
    assert stored["title"] == "A new title"
    assert stored["_meta"]["revision"] == new_revision
    assert store.get_state("openlibrary_books/dump")["complete"] is True


@deferred_f_from_coro_f
async def test_a_key_twice_in_a_chunk_skips_only_its_line_at_the_stored_revision(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=50)
    lines = sample_lines("editions")
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    # A newer line for line 75's key, earlier in the same chunk; line 75 itself unchanged.
    newer, key, new_revision = retitled(lines[74])
    lines.insert(60, newer)
    write_dump(dump, lines)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["openlibrary/import/unchanged_revision"] == SAMPLE_EDITIONS
    assert stats["store/books/updated"] == 1
    stored = store.get("books", key)
    assert stored is not None
    assert stored["title"] == "A new title"
    assert stored["_meta"]["revision"] == new_revision


@deferred_f_from_coro_f
async def test_an_unchanged_dump_file_is_not_read_unless_forced(
    store_settings: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = dump_settings(store_settings, tmp_path)
    dump = str(sample_dump("editions"))
    await crawl(OpenLibraryBooksSpider, settings, dump=dump)

    again = await crawl(OpenLibraryBooksSpider, settings, dump=dump)
    stats = again.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["openlibrary/import/unchanged_dump"] == 1
    assert "openlibrary/lines" not in stats
    assert "is unchanged since its complete import" in caplog.text

    # force: the file is read, its lines' revisions are those stored.
    forced = await crawl(OpenLibraryBooksSpider, settings, dump=dump, force="1")
    stats = forced.stats.get_stats()
    assert "openlibrary/import/unchanged_dump" not in stats
    assert (
        stats["openlibrary/lines"]
        == stats["openlibrary/import/unchanged_revision"]
        == SAMPLE_EDITIONS
    )
    assert "store/books/received" not in stats
    # The closing line says where the lines went, not only "0 records".
    assert f"{SAMPLE_EDITIONS} lines at the revision already stored skipped" in caplog.text

    # rework: every line is worked again and found unchanged by the store.
    reworked = await crawl(OpenLibraryBooksSpider, settings, dump=dump, rework="1")
    stats = reworked.stats.get_stats()
    assert "openlibrary/import/unchanged_revision" not in stats
    assert stats["store/books/unchanged"] == SAMPLE_EDITIONS


@dataclass(frozen=True)
class KillOnce:
    """The books' line work, killing its worker once on the chunk from line ``line``."""

    work: LineWorker
    line: int
    marker: str

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        if lines and lines[0][0] == self.line and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.work(lines, context)


class KilledWorkerBooksSpider(OpenLibraryBooksSpider):
    marker = ""

    def line_work(self) -> Any:
        return KillOnce(super().line_work(), 51, self.marker)


@deferred_f_from_coro_f
async def test_an_import_goes_on_after_a_worker_is_killed_mid_chunk(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    KilledWorkerBooksSpider.marker = str(tmp_path / "killed")
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=50, DUMP_WORKERS=2)
    crawler = await crawl(KilledWorkerBooksSpider, settings, dump=str(sample_dump("editions")))
    stats = crawler.stats.get_stats()
    assert (tmp_path / "killed").exists()
    assert stats["openlibrary/import/worker_restarts"] == 1
    assert stats["store/books/inserted"] == store.count("books") == SAMPLE_EDITIONS
    assert stats["finish_reason"] == "finished"
    assert store.get_state("openlibrary_books/dump")["complete"] is True


@deferred_f_from_coro_f
async def test_a_stop_mid_import_ends_the_crawl_within_a_second(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", 30_000))
    limit = 3000
    settings = dump_settings(sqlite_settings(tmp_path / "s.sqlite3"), tmp_path, DUMP_WORKERS=2)

    crawler, seconds = await seconds_past_item_limit(
        OpenLibraryBooksSpider, settings, limit, dump=str(dump)
    )

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "closespider_itemcount"
    assert stats["openlibrary/lines"] < 30_000
    # Workers busy with the next chunks are not waited for.
    assert seconds < 1.0


# --- orjson -------------------------------------------------------------------------------


def real_dump_lines() -> list[bytes]:
    """Every real Open Library dump line the repository holds."""
    files = list(DATA.glob("ol_dump_*"))
    lines = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as dump:
            lines.extend(line.rstrip(b"\n") for line in dump if line.count(b"\t") >= 4)
    return lines


def test_orjson_reads_real_dump_lines_into_the_same_records_and_hashes() -> None:
    lines = real_dump_lines()
    assert len(lines) > 500
    for line in lines:
        payload = line.split(b"\t", 4)[4]
        fast, standard = parsed_json(payload), json.loads(payload)
        assert fast == standard
        assert canonical_json(fast) == canonical_json(standard)


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 123456789012345678901234567890}',
        b'{"n": -9223372036854775809}',
        b'{"x": NaN}',
        b'{"t": "\\ud800"}',
        b'{"f": 1e16, "g": 1.5e-7}',
    ],
)
def test_what_orjson_refuses_is_read_by_the_json_module(text: bytes) -> None:
    fast, standard = parsed_json(text), json.loads(text)
    assert canonical_json(fast) == canonical_json(standard)
    assert [type(value) for value in fast.values()] == [type(value) for value in standard.values()]
