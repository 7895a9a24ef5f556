"""Whole dump imports with workers: the same records with 0, 1 and 2 workers, skips by
revision and of unchanged dump files, a killed worker, stop latency, orjson's reading."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl import settings as project_settings
from contentcrawl.dumps.read import parsed_json
from contentcrawl.dumps.workers import WorkedChunk
from contentcrawl.sources.openlibrary.lines import LineWorker
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.store import Store
from contentcrawl.store.base import canonical_json, content_hash
from spiders_tests.crawling import crawl, seconds_past_item_limit
from spiders_tests.fakes.openlibrary import (
    DATA,
    SAMPLE_EDITIONS,
    generated_lines,
    sample_dump,
    sample_lines,
    write_dump,
)
from spiders_tests.settings_for import dump_settings, sqlite_settings


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


class BatchSizes:
    """A pipeline ahead of the project's: the records of each batch, as the import sent it."""

    seen: ClassVar[list[int]] = []

    def process_item(self, item: Any) -> Any:
        BatchSizes.seen.append(len(item))
        return item


def recording_batches(settings: dict[str, Any]) -> dict[str, Any]:
    BatchSizes.seen = []
    pipelines = {**project_settings.ITEM_PIPELINES, f"{__name__}.BatchSizes": 50}
    return {**settings, "ITEM_PIPELINES": pipelines}


@deferred_f_from_coro_f
async def test_a_reimports_few_changed_records_reach_the_pipelines_as_one_batch(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    """Three changed lines in three chunks: one batch of three records, not three of one
    (DUMP_MAX_PENDING_ITEMS batches then hold as many records as in a first import)."""
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=50, DUMP_WORKERS=2)
    lines = sample_lines("editions")
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    await crawl(OpenLibraryBooksSpider, recording_batches(settings), dump=str(dump))
    assert BatchSizes.seen == [50, 50, 50, SAMPLE_EDITIONS - 150]

    keys = []
    for index in (9, 74, 129):
        lines[index], key, _ = retitled(lines[index])
        keys.append(key)
    write_dump(dump, lines)
    crawler = await crawl(OpenLibraryBooksSpider, recording_batches(settings), dump=str(dump))

    assert BatchSizes.seen == [3]
    assert crawler.stats.get_value("store/books/updated") == 3
    assert all(store.get("books", key)["title"] == "A new title" for key in keys)
    assert store.get_state("openlibrary_books/dump")["complete"] is True

    # 30 changed lines in each of two chunks: two batches, none over a chunk's 50 lines.
    for index in [*range(30), *range(50, 80)]:
        lines[index], _, _ = retitled(lines[index])
    write_dump(dump, lines)
    await crawl(OpenLibraryBooksSpider, recording_batches(settings), dump=str(dump))
    assert BatchSizes.seen == [30, 30]


@dataclass(frozen=True)
class KillOnce:
    """The books' line work, killing its worker on the chunk from line ``line``: once (a
    marker file remembers), or every time."""

    work: LineWorker
    line: int
    marker: str
    every_time: bool = False

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        if (
            lines
            and lines[0][0] == self.line
            and (self.every_time or not os.path.exists(self.marker))
        ):
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


class AlwaysKilledBooksSpider(OpenLibraryBooksSpider):
    marker = ""

    def line_work(self) -> Any:
        return KillOnce(super().line_work(), 130, self.marker, every_time=True)


@deferred_f_from_coro_f
async def test_records_held_for_a_batch_are_stored_when_the_import_fails_after_them(
    store_settings: dict[str, Any], store: Store, tmp_path: Path
) -> None:
    # One worker: the chunks of lines 10 and 75 are worked before the one that kills it (two
    # workers may both die, and the pool send them again, before either has answered).
    settings = dump_settings(store_settings, tmp_path, DUMP_CHUNK_LINES=50, DUMP_WORKERS=1)
    lines = sample_lines("editions")
    dump = write_dump(tmp_path / "editions.txt.gz", lines)
    await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))
    first_import = store.get_state("openlibrary_books/dump")
    # Lines 10 and 75 change; the chunk of line 130 kills its worker every time.
    keys = []
    for index in (9, 74, 129):
        lines[index], key, _ = retitled(lines[index])
        keys.append(key)
    write_dump(dump, lines)

    AlwaysKilledBooksSpider.marker = str(tmp_path / "killed")
    crawler = await crawl(AlwaysKilledBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["openlibrary/import/failed"] == 1
    assert stats["store/books/updated"] == 2
    assert [store.get("books", key)["title"] == "A new title" for key in keys] == [
        True,
        True,
        False,
    ]
    # Not advanced: the next import reads the file again.
    assert store.get_state("openlibrary_books/dump") == first_import


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
