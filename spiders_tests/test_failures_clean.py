"""Failures that end cleanly: a garbage dump is a failed import, a store that does not
answer is one error, a public export needs no key."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from contentcrawl.dumps import BadLineLimit
from contentcrawl.extensions.runs import run_counts, run_problems
from contentcrawl.extensions.sync_state import SyncState
from contentcrawl.sources.tmdb import export_file_name
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.tmdb_keywords import TmdbKeywordsSpider
from spiders_tests.conftest import read_store
from spiders_tests.crawling import crawl
from spiders_tests.fakes.openlibrary import sample_lines
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake

TODAY = datetime.now(UTC).date()
# What a dump URL answered with an HTML error page looks like once gunzipped: text lines.
GARBAGE = [f"<p>Service unavailable, line {number}</p>\n".encode() for number in range(82)]


def sqlite_settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "DUMPS_DIR": str(tmp_path / "dumps"),
        **extra,
    }


def gz(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    return path


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR lines of the crawl itself (spidermon's monitor reports are not the crawl's)."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR and not record.getMessage().startswith("[Spidermon]")
    ]


def last_run(settings: dict[str, Any], spider: str) -> dict[str, Any]:
    return read_store(settings, lambda store: store.recent_runs(spider, limit=1))[0]


def state(settings: dict[str, Any], name: str) -> dict[str, Any] | None:
    return read_store(settings, lambda store: store.get_state(name))


# --- a dump of bad lines is a failed import ---------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "bad", "failed"),
    [
        (0, 0, False),
        (3, 1, False),  # one bad line in three: a skip
        (3, 3, True),  # no good line at all, however short the file
        (0, 1, True),  # a stream that breaks before its first line
        (9, 8, False),  # below the minimum, one line good: judged too early to call
        (12, 7, True),
        (12, 6, False),  # exactly half is not more than half
        (1000, 400, False),
    ],
)
def test_bad_line_limit(lines: int, bad: int, failed: bool) -> None:
    assert BadLineLimit(max_share=0.5, min_lines=10).exceeded(lines, bad) is failed


@deferred_f_from_coro_f
async def test_garbage_openlibrary_dump_is_a_failed_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sqlite_settings(tmp_path)
    dump = gz(tmp_path / "ol_dump_editions.txt.gz", GARBAGE)
    caplog.set_level(logging.INFO)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["openlibrary/bad_lines"] == 82
    assert stats["openlibrary/import/failed"] == 1
    assert error_lines(caplog) == [
        f"Import of {dump} failed: 82 of 82 lines are bad (DUMP_MAX_BAD_LINE_SHARE 0.5): "
        "not a usable dump, its sync state is not advanced"
    ]
    assert state(settings, "openlibrary_books/dump") is None
    run = last_run(settings, "openlibrary_books")
    assert run["result"] == "failed"
    assert "openlibrary import failed" in run["problems"]


@deferred_f_from_coro_f
async def test_mostly_bad_openlibrary_dump_fails_and_keeps_its_good_records(
    tmp_path: Path,
) -> None:
    settings = sqlite_settings(tmp_path)
    dump = gz(tmp_path / "editions.txt.gz", sample_lines("editions")[:4] + GARBAGE[:8])

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["store/books/inserted"] == 4
    assert stats["openlibrary/import/failed"] == 1
    assert state(settings, "openlibrary_books/dump") is None


@deferred_f_from_coro_f
async def test_one_bad_line_in_three_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    settings = sqlite_settings(tmp_path)
    dump = gz(tmp_path / "editions.txt.gz", [*sample_lines("editions")[:2], GARBAGE[0]])

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["openlibrary/bad_lines"] == 1
    assert "openlibrary/import/failed" not in stats
    assert state(settings, "openlibrary_books/dump")["complete"] is True
    assert last_run(settings, "openlibrary_books")["result"] == "ok"


@deferred_f_from_coro_f
async def test_garbage_musicbrainz_dump_is_a_failed_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sqlite_settings(tmp_path, MUSICBRAINZ_CONTACT="")
    dump = gz(tmp_path / "artist.jsonl.gz", GARBAGE)

    crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["musicbrainz/dump/bad_lines"] == 82
    assert stats["musicbrainz/import/failed"] == 1
    assert error_lines(caplog) == [
        "Import of artist.jsonl.gz failed: 82 of 82 lines are bad (DUMP_MAX_BAD_LINE_SHARE "
        "0.5): not a usable dump, its sync state is not advanced"
    ]
    assert state(settings, "musicbrainz_artists/dump/artist.jsonl.gz") is None
    assert last_run(settings, "musicbrainz_artists")["result"] == "failed"


@pytest.fixture
def tmdb(fake_server: FakeServer) -> Iterator[TmdbFake]:
    exports = FakeServer().start()
    yield TmdbFake(fake_server, exports, rate_limit=10_000)
    exports.stop()


@deferred_f_from_coro_f
async def test_garbage_tmdb_keywords_export_is_a_failed_import(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = export_file_name("keyword_ids", TODAY)
    tmdb.export_files[name] = gzip.compress(b"".join(GARBAGE), mtime=0)
    settings = sqlite_settings(tmp_path, **tmdb.settings())

    crawler = await crawl(TmdbKeywordsSpider, settings)

    stats = crawler.stats.get_stats()
    assert stats["tmdb/keywords/export/bad_line"] == 82
    assert stats["tmdb/import/failed"] == 1
    assert len(error_lines(caplog)) == 1
    assert state(settings, "tmdb_keywords/export") is None
    assert last_run(settings, "tmdb_keywords")["result"] == "failed"


def test_a_failed_import_fails_the_run_and_keeps_the_sync_state() -> None:
    """Whatever else the run logged: the stat alone is enough."""
    stats = {"openlibrary/import/failed": 1}
    assert run_problems("finished", stats, run_counts(stats)) == ["openlibrary import failed"]
    monitored = {**stats, "monitors/close/passed": 1}
    assert run_problems("finished", monitored, run_counts(monitored)) == [
        "openlibrary import failed"
    ]
    crawler = get_crawler(settings_dict={"EXTENSIONS": {}})
    crawler.stats.set_value("tmdb/import/failed", 1)
    assert SyncState(crawler).clean_finish_problems("finished") == ["tmdb/import/failed=1"]


# --- the keywords export is public ------------------------------------------------------------


@deferred_f_from_coro_f
async def test_keywords_export_runs_without_a_tmdb_key(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.add_export("keyword_ids", TODAY, [{"id": 258, "name": "bomb"}, {"id": 591, "name": "cia"}])
    settings = sqlite_settings(
        tmp_path, **{**tmdb.settings(), "TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""}
    )
    assert not get_project_settings().get("TMDB_API_KEY")

    crawler = await crawl(TmdbKeywordsSpider, settings, mode="export")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/keywords/inserted"] == 2
    assert tmdb.api.requests == []


@deferred_f_from_coro_f
async def test_keywords_by_id_still_need_a_tmdb_key(tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = sqlite_settings(
        tmp_path, **{**tmdb.settings(), "TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""}
    )

    crawler = await crawl(TmdbKeywordsSpider, settings, ids="258")

    assert crawler.stats.get_value("finish_reason") == "tmdb_no_credentials"
