"""Quiet monitors: one line per run at INFO (clean) or ERROR (failed), the rest at DEBUG."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.settings_for import dump_settings, sqlite_settings


def import_settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """An Open Library import into SQLite, without the live progress line."""
    own = {"STORE_FAILED_DIR": str(tmp_path / "failed"), "PROGRESS_LIVE": False}
    return dump_settings(sqlite_settings(tmp_path), tmp_path, **{**own, **extra})


def shown(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records an operator sees at the default LOG_LEVEL (INFO)."""
    return [record for record in caplog.records if record.levelno >= logging.INFO]


def monitor_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in shown(caplog)
        if record.name == "contentcrawl.monitors" or record.getMessage().startswith("[Spidermon]")
    ]


@deferred_f_from_coro_f
async def test_a_clean_run_logs_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    crawler = await crawl(
        OpenLibraryBooksSpider, import_settings(tmp_path), dump=str(sample_dump("editions"))
    )

    assert crawler.stats.get_value("monitors/close/passed") == 7
    [line] = monitor_lines(caplog)
    assert (line.levelname, line.getMessage()) == ("INFO", "Monitors: all 7 passed")
    # spidermon's own report is still there, for whoever runs at DEBUG.
    assert any(
        record.levelno == logging.DEBUG and record.getMessage().startswith("[Spidermon]")
        for record in caplog.records
    )


@deferred_f_from_coro_f
async def test_a_failed_run_logs_one_error_line_naming_what_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = import_settings(tmp_path, SPIDERMON_MIN_ITEMS=1000, MONITOR_MAX_DROPPED_SHARE=0)

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(sample_dump("editions")))

    assert crawler.stats.get_value("monitors/extracted_items/failed") == 1
    [line] = monitor_lines(caplog)
    assert line.levelname == "ERROR"
    assert line.getMessage() == (
        "Monitors failed at close: extracted_items (170 records scraped, expected at least 1000)"
    )
    for record in shown(caplog):
        assert "AssertionError" not in record.getMessage()
        assert "Traceback" not in record.getMessage()
        assert record.exc_info is None
    details = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("AssertionError: 170 records scraped" in message for message in details)
