"""``scrapy status``: counts, last runs and pending failures, as text and as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from contentcrawl.commands.status import collect_status, format_status
from contentcrawl.store import Record, Store
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import command_env, run_scrapy


def fill(store: Store) -> None:
    """Two movies, one author, two runs of tmdb_movies (the last failed), two failures."""
    store.upsert_many(
        "movies",
        [Record({"tmdb_id": 550, "title": "Fight Club"}, "tmdb"), Record({"tmdb_id": 551}, "tmdb")],
    )
    store.upsert_many("authors", [Record({"ol_key": "/authors/OL1A", "name": "A"}, "openlibrary")])
    base = {"spider": "tmdb_movies", "finish_reason": "finished", "inserted": 2, "updated": 0}
    store.add_run({**base, "id": "r1", "started_at": "2024-05-01T00:00:00.000Z", "result": "ok"})
    store.add_run(
        {
            **base,
            "id": "r2",
            "started_at": "2024-05-02T00:00:00.000Z",
            "result": "failed",
            "items": 7,
            "problems": ["monitors failed: retry_count"],
        }
    )
    for key, when in (
        ("tmdb_movies:13", "2024-05-02T00:00:00Z"),
        ("igdb_games:9", "2024-05-01T00:00:00Z"),
    ):
        store.put_failure(
            {
                "key": key,
                "spider": key.split(":")[0],
                "last_try": when,
                "error": "503",
                "attempts": 6,
            }
        )


def test_status_reports_collections_runs_and_failures(store: Store) -> None:
    fill(store)

    status = collect_status(store, ["tmdb_movies", "tmdb_people"])

    assert status["collections"]["movies"]["count"] == 2
    assert status["collections"]["movies"]["last_updated"]
    assert status["collections"]["authors"]["count"] == 1
    assert status["collections"]["games"] == {"count": 0, "last_updated": None}
    movies = status["spiders"]["tmdb_movies"]
    assert movies["last_run"]["id"] == "r2"
    assert movies["pending_failures"] == 1
    assert status["spiders"]["tmdb_people"] == {"last_run": None, "pending_failures": 0}
    # A spider with failures is listed even when not asked for.
    assert status["spiders"]["igdb_games"]["pending_failures"] == 1
    assert status["failures"]["pending"] == 2
    assert [f["key"] for f in status["failures"]["oldest"]] == ["igdb_games:9", "tmdb_movies:13"]
    json.dumps(status)


def test_text_is_one_line_per_collection_and_spider(store: Store) -> None:
    fill(store)

    text = format_status(collect_status(store, ["tmdb_movies", "tmdb_people"], shown_failures=1))

    lines = text.splitlines()
    movies = next(line for line in lines if line.startswith("movies "))
    assert movies.split()[1] == "2"
    spider = next(line for line in lines if line.startswith("tmdb_movies "))
    assert spider.split()[1:3] == ["failed", "2024-05-02T00:00:00.000Z"]
    assert spider.endswith("monitors failed: retry_count")
    assert next(line for line in lines if line.startswith("tmdb_people ")).split()[1] == "never"
    assert "Pending failures: 2" in lines
    assert any("igdb_games:9" in line and "since 2024-05-01" in line for line in lines)
    assert lines[-1].strip() == "… and 1 more"


def test_the_command_prints_text_and_json(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "store.sqlite3") as store:
        fill(store)
    env = command_env(tmp_path)

    text = run_scrapy("status", cwd=tmp_path, env=env)
    as_json = run_scrapy("status", "--json", cwd=tmp_path, env=env)

    assert text.returncode == 0, text.stderr
    assert "tmdb_movies" in text.stdout
    assert "Pending failures: 2" in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    status: dict[str, Any] = json.loads(as_json.stdout)
    assert status["collections"]["movies"]["count"] == 2
    assert status["spiders"]["tmdb_movies"]["last_run"]["result"] == "failed"
    # Every project spider is listed, run or not.
    assert "openlibrary_books" in status["spiders"]
    assert status["failures"]["pending"] == 2


def test_an_unreachable_store_is_a_clear_error(tmp_path: Path) -> None:
    env = command_env(
        tmp_path, MONGO_URI="mongodb://user:pw@127.0.0.1:1/?serverSelectionTimeoutMS=200"
    )

    done = run_scrapy("status", cwd=tmp_path, env=env)

    assert done.returncode == 1
    assert "Cannot read the store" in done.stderr
    assert "pw" not in done.stderr.replace("pw@", "")
    assert ":pw@" not in done.stderr


def test_long_failure_keys_and_spider_names_keep_the_columns_aligned(store: Store) -> None:
    long_key = "musicbrainz_artists:search:" + "artist:(Tombs OR Perkele) AND country:US " * 3
    for key, error in ((long_key, "TimeoutError"), ("tmdb_movies:13", "503")):
        store.put_failure(
            {"key": key, "spider": key.split(":")[0], "last_try": "2024-05-02T00:00:00Z"}
            | {"error": error, "attempts": 6}
        )
    spider = "a_spider_named_far_longer_than_the_column_was"
    store.add_run({"id": "r", "spider": spider, "started_at": "2024-05-03T00:00:00.000Z"})

    text = format_status(collect_status(store, [spider, "tmdb_movies"]))

    lines = text.splitlines()
    failure_lines = [line for line in lines if " since " in line]
    assert len(failure_lines) == 2
    assert len({line.index(" since ") for line in failure_lines}) == 1
    assert any("…" in line for line in failure_lines)
    header = next(line for line in lines if line.startswith("SPIDER"))
    rows = [line for line in lines if line.startswith(("a_spider", "tmdb_movies "))]
    assert len(rows) == 2
    result_column = header.index("RESULT")
    assert [row[result_column - 1 :].split()[0] for row in rows] == ["?", "never"]


def test_status_piped_into_a_reader_that_stops_early_exits_quietly(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "store.sqlite3") as store:
        for number in range(3000):
            store.put_failure(
                {
                    "key": f"tmdb_movies:{number}",
                    "spider": "tmdb_movies",
                    "last_try": "2024-05-02T00:00:00Z",
                    "error": "503",
                    "attempts": 6,
                }
            )
    env = command_env(tmp_path)
    for extra in ([], ["--json"]):
        # ``scrapy status | head -1``: the reader is gone before the report is written.
        child = subprocess.Popen(
            [sys.executable, "-m", "scrapy", "status", "--failures", "3000", *extra],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stderr is not None
        child.stdout.close()
        stderr = child.stderr.read().decode()
        child.stderr.close()
        assert child.wait(timeout=60) == 0, stderr
        assert "Traceback" not in stderr
        assert "BrokenPipeError" not in stderr
