"""A clean run logs no WARNING: switched-off optional components say why at DEBUG only."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from scrapy.core.downloader.middleware import DownloaderMiddlewareManager
from scrapy.extension import ExtensionManager
from scrapy.middleware import MiddlewareManager
from scrapy.pipelines import ItemPipelineManager
from scrapy.utils.test import get_crawler

from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import child_env, run_scrapy
from spiders_tests.fakes.openlibrary import DATA

SAMPLE_DUMP = DATA / "ol_dump_editions_sample.txt.gz"
# Scrapy's log format: "<date> <time> [<logger>] <LEVEL>: <message>".
LOG_LEVEL = re.compile(r"^\S+ \S+ \[[^\]]+\] (?P<level>[A-Z]+): ")


def levels_of(log: str) -> dict[str, list[str]]:
    """The lines of a Scrapy log by level (continuation lines belong to no level)."""
    by_level: dict[str, list[str]] = {}
    for line in log.splitlines():
        match = LOG_LEVEL.match(line)
        if match:
            by_level.setdefault(match["level"], []).append(line)
    return by_level


def test_a_clean_open_library_import_logs_no_warning(tmp_path: Path) -> None:
    store_path = tmp_path / "store.sqlite3"
    env = child_env(store_path, LOG_LEVEL="INFO")

    done = run_scrapy(
        "crawl", "openlibrary_books", "-a", f"dump={SAMPLE_DUMP}", cwd=tmp_path, env=env
    )

    assert done.returncode == 0, done.stderr[-3000:]
    levels = levels_of(done.stderr)
    assert levels.get("WARNING", []) + levels.get("ERROR", []) == []
    # The log read is a whole INFO log of a real import, not an empty one.
    assert any("Enabled downloader middlewares" in line for line in levels["INFO"])
    with SqliteStore(store_path) as store:
        assert store.count("books") > 0
        assert store.recent_runs("openlibrary_books")[0]["result"] == "ok"


@pytest.mark.parametrize(
    ("manager", "components", "path", "settings"),
    [
        (
            DownloaderMiddlewareManager,
            "DOWNLOADER_MIDDLEWARES",
            "contentcrawl.middlewares.tmdb_auth.TmdbAuthMiddleware",
            {"TMDB_READ_ACCESS_TOKEN": "", "TMDB_API_KEY": ""},
        ),
        (
            DownloaderMiddlewareManager,
            "DOWNLOADER_MIDDLEWARES",
            "contentcrawl.middlewares.igdb_oauth.IgdbOAuthMiddleware",
            {"IGDB_API_URL": ""},
        ),
        (
            DownloaderMiddlewareManager,
            "DOWNLOADER_MIDDLEWARES",
            "contentcrawl.middlewares.redis_limits.RedisAccountLimits",
            {"REDIS_URL": ""},
        ),
        (
            ExtensionManager,
            "EXTENSIONS",
            "contentcrawl.extensions.distributed.DistributedRun",
            {"REDIS_URL": ""},
        ),
        (
            ExtensionManager,
            "EXTENSIONS",
            "contentcrawl.extensions.progress.Progress",
            {"PROGRESS_LOG_INTERVAL": 0},
        ),
        (
            ExtensionManager,
            "EXTENSIONS",
            "contentcrawl.extensions.runs.RunRecorder",
            {"RUNS_ENABLED": False},
        ),
        (
            ItemPipelineManager,
            "ITEM_PIPELINES",
            "contentcrawl.pipelines.images.ContentImagesPipeline",
            {"IMAGES_ENABLED": False},
        ),
    ],
)
def test_a_switched_off_component_says_why_at_debug_only(
    caplog: pytest.LogCaptureFixture,
    manager: type[MiddlewareManager],
    components: str,
    path: str,
    settings: dict[str, Any],
) -> None:
    crawler = get_crawler(settings_dict={**settings, components: {path: 500}})

    with caplog.at_level(logging.DEBUG):
        built = manager.from_crawler(crawler)

    assert path not in [f"{type(mw).__module__}.{type(mw).__name__}" for mw in built.middlewares]
    name = path.rsplit(".", 1)[1]
    said = [record for record in caplog.records if name in record.getMessage()]
    assert said, f"nothing says why {name} is off"
    assert {logging.getLevelName(record.levelno) for record in said} == {"DEBUG"}
    assert said[0].getMessage().startswith(f"Disabled {name}: ")
