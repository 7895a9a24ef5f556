"""Per-source settings of a test crawl, in one place: the store, the fake, and fast slots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scrapy.utils.project import get_project_settings

from spiders_tests.fakes.igdb import FakeIgdb
from spiders_tests.fakes.musicbrainz import FakeMusicBrainz
from spiders_tests.fakes.tmdb import TmdbFake

TMDB_AUTH_MIDDLEWARE = "contentcrawl.middlewares.tmdb_auth.TmdbAuthMiddleware"
# MusicBrainz allows 1 request a second; its tests run 20 times faster against the fake.
MUSICBRAINZ_FAST_DELAY = 0.05


def project_slots() -> dict[str, dict[str, Any]]:
    """A copy of the project's DOWNLOAD_SLOTS, each slot its own dict to change."""
    slots = get_project_settings().getdict("DOWNLOAD_SLOTS")
    return {name: dict(conf) for name, conf in slots.items()}


# The IGDB and Twitch slots without their real pace (4/s, 8 open): a test crawl in seconds.
IGDB_FAST_SLOTS = {
    **project_slots(),
    "igdb": {"concurrency": 7, "delay": 0.0, "rate": 100.0, "jitter": 0},
    "twitch": {"concurrency": 1, "delay": 0.0, "jitter": 0},
}
MUSICBRAINZ_FAST_SLOTS = {
    **project_slots(),
    "musicbrainz": {
        "concurrency": 1,
        "delay": 0.0,
        "jitter": 0,
        "rate": 1 / MUSICBRAINZ_FAST_DELAY,
    },
}


def sqlite_settings(database: Path, **extra: Any) -> dict[str, Any]:
    """Settings naming the SQLite store at ``database`` (a directory gets store.sqlite3)."""
    path = database / "store.sqlite3" if database.is_dir() else database
    return {"MONGO_URI": "", "SQLITE_PATH": str(path), **extra}


def dump_settings(store_settings: dict[str, Any], tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A dump import (Open Library, MusicBrainz) into ``store_settings``, dumps in a temp dir."""
    return {**store_settings, "DUMPS_DIR": str(tmp_path / "dumps"), **extra}


def tmdb_settings(
    fake: TmdbFake, store_settings: dict[str, Any], tmp_path: Path, **extra: Any
) -> dict[str, Any]:
    """A TMDB crawl of ``fake``: its auth middleware registered, short backoff, DEBUG logs."""
    own = {
        "DOWNLOADER_MIDDLEWARES": with_tmdb_auth(),
        "RETRY_BACKOFF_BASE": 0.05,
        "LOG_LEVEL": "DEBUG",
    }
    return _tmdb_base(fake, store_settings, tmp_path, **{**own, **extra})


def tmdb_run_settings(
    fake: TmdbFake, store_settings: dict[str, Any], tmp_path: Path, **extra: Any
) -> dict[str, Any]:
    """A TMDB crawl of ``fake`` with the project's run records and spidermon; one quick retry."""
    own = {"RETRY_BACKOFF_BASE": 0.01, "RETRY_BACKOFF_MAX": 0.05, "RETRY_TIMES": 1}
    return _tmdb_base(fake, store_settings, tmp_path, **{**own, **extra})


def _tmdb_base(
    fake: TmdbFake, store_settings: dict[str, Any], tmp_path: Path, **extra: Any
) -> dict[str, Any]:
    # The tmdb slot at 500/s: the fake has TMDB's limit only where a test gives it one.
    slots = project_slots()
    slots["tmdb"]["rate"] = 500.0
    return {
        **store_settings,
        **fake.settings(),
        "DOWNLOAD_SLOTS": slots,
        "DUMPS_DIR": str(tmp_path / "dumps"),
        "STORE_FAILED_DIR": str(tmp_path / "failed"),
        "IMAGES_ENABLED": False,
        **extra,
    }


def with_tmdb_auth() -> dict[str, int]:
    """The project's DOWNLOADER_MIDDLEWARES with TMDB's auth middleware registered."""
    middlewares = dict(get_project_settings().getdict("DOWNLOADER_MIDDLEWARES"))
    middlewares[TMDB_AUTH_MIDDLEWARE] = 950
    return middlewares


def igdb_settings(fake: FakeIgdb, store_settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The IGDB fake + a store: fast slots, pages of 25 over 8 id ranges."""
    return fake.settings(
        **{
            "DOWNLOAD_SLOTS": IGDB_FAST_SLOTS,
            "IGDB_PAGE_SIZE": 25,
            "IGDB_PARALLEL_RANGES": 8,
            **store_settings,
            **extra,
        }
    )


def musicbrainz_settings(
    fake: FakeMusicBrainz, store_settings: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The MusicBrainz fake + a store, its slot at the fast test pace."""
    return fake.settings(**{"DOWNLOAD_SLOTS": MUSICBRAINZ_FAST_SLOTS, **store_settings, **extra})
