"""The project as an operator meets it: `scrapy list` and an authenticated `scrapy shell`
(which writes no run record)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from spiders_tests.conftest import read_store
from spiders_tests.crawling import PROJECT, run_scrapy
from spiders_tests.fakes.server import FakeResponse, FakeServer

SPIDERS = {
    "igdb_games",
    "musicbrainz_artists",
    "openlibrary_authors",
    "openlibrary_books",
    "openlibrary_works",
    "tmdb_collections",
    "tmdb_companies",
    "tmdb_keywords",
    "tmdb_movies",
    "tmdb_networks",
    "tmdb_people",
    "tmdb_series",
}


def scrapy(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "MONGO_URI": "",
        **env,
    }
    return run_scrapy(*args, cwd=PROJECT, env=environment)


def test_scrapy_list_shows_every_spider(tmp_path: Path) -> None:
    listed = scrapy(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert set(listed.stdout.split()) == SPIDERS


def test_scrapy_shell_is_authenticated_for_the_api_host(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    @fake_server.route("GET", r"/3/movie/550")
    def movie(request: Any) -> FakeResponse:
        if request.header("authorization") != "Bearer shell-token":
            return FakeResponse.json({"status_code": 7}, 401)
        return FakeResponse.json({"id": 550, "title": "Fight Club"})

    shell = scrapy(
        tmp_path,
        "shell",
        f"{fake_server.url}/3/movie/550",
        "-c",
        "(response.status, response.json()['title'])",
        TMDB_API_URL=f"{fake_server.url}/3",
        TMDB_READ_ACCESS_TOKEN="shell-token",  # noqa: S106 - a test credential
    )
    assert shell.returncode == 0, shell.stderr[-2000:]
    assert shell.stdout.strip() == "(200, 'Fight Club')"
    assert "shell-token" not in shell.stderr
    # A shell session is no run: it leaves no run record.
    store = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
    assert read_store(store, lambda opened: opened.recent_runs()) == []
