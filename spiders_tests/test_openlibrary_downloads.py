"""Whole Open Library imports of downloaded dumps in process: the download, its
revalidation, a cut download resumed, a dump URL's secret kept out of sight (local files,
re-imports and the rest: test_openlibrary_crawl.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.dumps import Validators
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.spiders.openlibrary_works import OpenLibraryWorksSpider
from contentcrawl.store import Store
from spiders_tests.crawling import crawl, store_counts
from spiders_tests.fakes.openlibrary import (
    SAMPLE_EDITIONS,
    FakeOpenLibraryDumps,
    sample_dump,
    sample_lines,
)
from spiders_tests.fakes.server import FakeServer
from spiders_tests.settings_for import dump_settings, sqlite_settings
from spiders_tests.sqlite_files import saved_state


@deferred_f_from_coro_f
async def test_default_dump_is_downloaded_then_revalidated(
    fake_server: FakeServer, store: Store, store_settings: dict[str, Any], tmp_path: Path
) -> None:
    data = sample_dump("editions").read_bytes()
    dumps = FakeOpenLibraryDumps(fake_server, {"editions": data})
    settings = dump_settings(store_settings, tmp_path, **dumps.settings)

    first = await crawl(OpenLibraryBooksSpider, settings)
    stats = first.stats.get_stats()
    assert stats["dumps/download/downloaded"] == 1
    assert stats["dumps/download/bytes"] == len(data)
    assert stats["store/books/inserted"] == SAMPLE_EDITIONS
    local = tmp_path / "dumps" / "ol_dump_editions_latest.txt.gz"
    assert local.read_bytes() == data
    assert [request.path for request in fake_server.requests] == [
        "/data/ol_dump_editions_latest.txt.gz",
        dumps.dated_path("editions"),
    ]

    second = await crawl(OpenLibraryBooksSpider, settings)
    stats = second.stats.get_stats()
    conditional = fake_server.requests[-1]
    assert conditional.path == dumps.dated_path("editions")
    assert (
        conditional.header("if-none-match")
        == Validators.load(local.with_name(local.name + ".download.json")).etag
    )
    assert stats["dumps/download/not_modified"] == 1
    assert "dumps/download/bytes" not in stats or stats["dumps/download/bytes"] == 0
    # The very file the first run imported whole: not read again.
    assert stats["openlibrary/import/unchanged_dump"] == 1
    assert "openlibrary/lines" not in stats
    assert store_counts(stats, "books")["unchanged"] == 0
    state = store.get_state("openlibrary_books/dump")
    assert state is not None
    assert state["complete"] is True
    assert state["etag"] == conditional.header("if-none-match")


@deferred_f_from_coro_f
async def test_cut_download_resumes_on_the_next_run(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    data = sample_dump("editions").read_bytes()
    dumps = FakeOpenLibraryDumps(fake_server, {"editions": data})
    half = len(data) // 2
    dumps.cut_next["editions"] = half
    settings = dump_settings(
        sqlite_settings(tmp_path / "s.sqlite3"),
        tmp_path,
        DUMP_DOWNLOAD_RETRIES=0,
        **dumps.settings,
    )
    part = tmp_path / "dumps" / "ol_dump_editions_latest.txt.gz.part"

    failed = await crawl(OpenLibraryBooksSpider, settings)
    assert failed.stats.get_value("finish_reason") == "dump_download_failed"
    assert failed.stats.get_value("dumps/download/failed") == 1
    assert failed.stats.get_value("item_scraped_count") is None
    assert part.stat().st_size == half
    assert saved_state(tmp_path / "s.sqlite3", "openlibrary_books/dump") == {}

    resumed = await crawl(OpenLibraryBooksSpider, settings)
    ranged = fake_server.requests[-1]
    assert ranged.header("range") == f"bytes={half}-"
    assert ranged.header("if-range", "").startswith('"')
    stats = resumed.stats.get_stats()
    assert stats["dumps/download/resumed"] == 1
    assert stats["dumps/download/bytes"] == len(data) - half
    assert (tmp_path / "dumps" / "ol_dump_editions_latest.txt.gz").read_bytes() == data
    assert not part.exists()
    assert stats["store/books/inserted"] == SAMPLE_EDITIONS
    assert saved_state(tmp_path / "s.sqlite3", "openlibrary_books/dump")["download"] == "resumed"


@deferred_f_from_coro_f
async def test_dump_url_secret_stays_out_of_logs_stats_and_state(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dumps = FakeOpenLibraryDumps(fake_server, {"works": sample_dump("works").read_bytes()})
    store_settings = sqlite_settings(tmp_path / "s.sqlite3")
    settings = dump_settings(store_settings, tmp_path, DUMP_PROGRESS_INTERVAL=0)
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-t0ken"  # noqa: S105 - a made-up token the logs must not show

    ok = await crawl(
        OpenLibraryWorksSpider,
        settings,
        dump=f"{fake_server.url}{dumps.dated_path('works')}?token={secret}",
    )
    missing = await crawl(
        OpenLibraryWorksSpider, settings, dump=f"{fake_server.url}/nothing.txt.gz?token={secret}"
    )

    assert ok.stats.get_value("store/works/inserted") == len(sample_lines("works"))
    assert missing.stats.get_value("finish_reason") == "dump_download_failed"
    assert "HTTP 404" in caplog.text
    assert secret not in caplog.text
    for crawler in (ok, missing):
        assert secret not in repr(crawler.stats.get_stats())
    state = saved_state(tmp_path / "s.sqlite3", "openlibrary_works/dump")
    assert secret not in json.dumps(state)
    assert state["dump"].endswith("?token=***")
