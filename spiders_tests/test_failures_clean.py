"""Failures that end cleanly: a garbage dump is a failed import, a store that does not
answer is one error, a public export needs no key."""

from __future__ import annotations

import gzip
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.dumps import BadLineLimit
from contentcrawl.extensions.runs import RunRecorder
from contentcrawl.sources.tmdb import export_file_name
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.tmdb_keywords import TmdbKeywordsSpider
from contentcrawl.verdict import judge
from spiders_tests.conftest import read_store
from spiders_tests.crawling import PROJECT, child_env, crawl, make_crawler, run_scrapy
from spiders_tests.dates import utc_today
from spiders_tests.fakes.openlibrary import sample_dump, sample_lines
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake
from spiders_tests.mongo_server import free_port
from spiders_tests.settings_for import dump_settings, sqlite_settings
from spiders_tests.tmdb_crawls import running_tmdb

# What a dump URL answered with an HTML error page looks like once gunzipped: text lines.
GARBAGE = [f"<p>Service unavailable, line {number}</p>\n".encode() for number in range(82)]


def gz(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    return path


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR lines of the crawl itself, less the monitors' one summary of a failed run."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.ERROR
        and not record.getMessage().startswith("Monitors failed at close: ")
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
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)
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
    assert "import failed: openlibrary" in run["problems"]


@deferred_f_from_coro_f
async def test_mostly_bad_openlibrary_dump_fails_and_keeps_its_good_records(
    tmp_path: Path,
) -> None:
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)
    dump = gz(tmp_path / "editions.txt.gz", sample_lines("editions")[:4] + GARBAGE[:8])

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["store/books/inserted"] == 4
    assert stats["openlibrary/import/failed"] == 1
    assert state(settings, "openlibrary_books/dump") is None


@deferred_f_from_coro_f
async def test_one_bad_line_in_three_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path)
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
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path, MUSICBRAINZ_CONTACT="")
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
    """A fake TMDB with no records: each test serves what it needs."""
    with running_tmdb(fake_server, []) as fake:
        yield fake


@deferred_f_from_coro_f
async def test_garbage_tmdb_keywords_export_is_a_failed_import(
    tmdb: TmdbFake, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = export_file_name("keyword_ids", utc_today())
    tmdb.export_files[name] = gzip.compress(b"".join(GARBAGE), mtime=0)
    settings = dump_settings(sqlite_settings(tmp_path), tmp_path, **tmdb.settings())

    crawler = await crawl(TmdbKeywordsSpider, settings)

    stats = crawler.stats.get_stats()
    assert stats["tmdb/keywords/export/bad_line"] == 82
    assert stats["tmdb/import/failed"] == 1
    assert len(error_lines(caplog)) == 1
    assert state(settings, "tmdb_keywords/export") is None
    assert last_run(settings, "tmdb_keywords")["result"] == "failed"


def test_a_failed_import_fails_the_run_whatever_else_it_logged() -> None:
    """The stat alone is enough, with the monitors' results in the stats or without."""
    settings = get_project_settings()
    for stats in (
        {"openlibrary/import/failed": 1, "item_scraped_count": 10_000},
        {"tmdb/import/failed": 1, "item_scraped_count": 10_000, "monitors/close/passed": 1},
    ):
        verdict = judge("finished", stats, settings)
        assert verdict.failed == {
            "import_failed": f"import failed: {next(iter(stats)).split('/')[0]}"
        }
        assert verdict.exit_code == 1


# --- the keywords export is public ------------------------------------------------------------


@deferred_f_from_coro_f
async def test_keywords_export_runs_without_a_tmdb_key(tmdb: TmdbFake, tmp_path: Path) -> None:
    tmdb.add_export(
        "keyword_ids", utc_today(), [{"id": 258, "name": "bomb"}, {"id": 591, "name": "cia"}]
    )
    settings = dump_settings(
        sqlite_settings(tmp_path),
        tmp_path,
        **{**tmdb.settings(), "TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""},
    )
    assert not get_project_settings().get("TMDB_API_KEY")

    crawler = await crawl(TmdbKeywordsSpider, settings, mode="export")

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["store/keywords/inserted"] == 2
    assert tmdb.api.requests == []


@deferred_f_from_coro_f
async def test_keywords_by_id_still_need_a_tmdb_key(tmdb: TmdbFake, tmp_path: Path) -> None:
    settings = dump_settings(
        sqlite_settings(tmp_path),
        tmp_path,
        **{**tmdb.settings(), "TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""},
    )

    crawler = await crawl(TmdbKeywordsSpider, settings, ids="258")

    assert crawler.stats.get_value("finish_reason") == "tmdb_no_credentials"


# --- a MongoDB that does not answer -----------------------------------------------------------

PASSWORD = "pa55-w0rd"  # noqa: S105 - a test credential
# A timestamped log line's level; Spidermon's report of failed monitors (its own unittest
# style listing, with the failed assertion's traceback) is not the crawl's.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(?P<logger>[^\]]+)\] (?P<level>[A-Z]+): ")


def crawl_output(output: str) -> str:
    """The output without Spidermon's failed-monitor report (a multi-line ERROR record)."""
    kept, in_report = [], False
    for line in output.splitlines():
        match = LOG_LINE.match(line)
        if match:
            in_report = match["level"] == "ERROR" and "[Spidermon]" in line
        if not in_report:
            kept.append(line)
    return "\n".join(kept)


@pytest.fixture
def unreachable_mongo(tmp_path: Path) -> dict[str, str]:
    """A child environment whose MONGO_URI names a local port nothing listens on."""
    uri = f"mongodb://crawler:{PASSWORD}@127.0.0.1:{free_port()}/"
    return child_env(tmp_path / "unused.sqlite3", MONGO_URI=uri, MONGO_CONNECT_TIMEOUT="1")


def test_unreachable_mongo_is_one_error_and_the_close_reason(
    unreachable_mongo: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    done = run_scrapy(
        "crawl",
        "openlibrary_books",
        "-a",
        f"dump={sample_dump('editions')}",
        cwd=tmp_path,
        env=unreachable_mongo,
    )
    elapsed = time.monotonic() - started

    output = done.stdout + done.stderr
    own = crawl_output(output)
    # The cause, then the monitors' one summary of the failed run.
    errors = [line for line in own.splitlines() if " ERROR: " in line]
    assert len(errors) == 2, own
    assert (
        "Monitors failed at close: finish_reason (finish reason 'store_unavailable')" in (errors[1])
    )
    assert done.returncode == 1
    assert "Store unavailable" in errors[0]
    assert "cannot open MongoDB mongodb://crawler:***@127.0.0.1:" in errors[0]
    assert "Traceback" not in own
    assert "Closing spider (store_unavailable)" in output
    assert "Closing spider (shutdown)" not in output
    assert PASSWORD not in output
    # One connection timeout (1 s) and Scrapy's start-up, not one timeout per component.
    assert elapsed < 15, f"{elapsed:.1f} s"


def test_read_api_on_an_unreachable_mongo_says_so_in_one_line(
    unreachable_mongo: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "contentcrawl.api", "--port", str(free_port())],
        cwd=PROJECT,
        env=unreachable_mongo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "contentcrawl.api: cannot open the store: cannot open MongoDB "
        f"mongodb://crawler:***@127.0.0.1:{unreachable_mongo['MONGO_URI'].rsplit(':', 1)[1]} "
        "database contentcrawl: ServerSelectionTimeoutError"
    ]
    assert time.monotonic() - started < 10


@deferred_f_from_coro_f
async def test_a_run_closed_before_its_spider_opened_is_logged_not_a_key_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crawler = make_crawler(
        OpenLibraryBooksSpider, dump_settings(sqlite_settings(tmp_path), tmp_path)
    )
    crawler.spider = OpenLibraryBooksSpider.from_crawler(crawler)
    recorder = RunRecorder(crawler)
    crawler.stats.set_value("store/connection/unavailable", 1)
    caplog.set_level(logging.INFO)

    await recorder.spider_closed(crawler.spider, "store_unavailable")

    assert crawler.stats.get_value("runs/store/failed") == 1
    assert "of openlibrary_books: failed (finish reason 'store_unavailable')" in caplog.text
    assert not (tmp_path / "store.sqlite3").exists()
