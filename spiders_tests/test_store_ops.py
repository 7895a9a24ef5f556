"""The store's operations contract (run records, dead letters) over SQLite and MongoDB."""

from __future__ import annotations

from typing import Any

from contentcrawl.store import Store
from spiders_tests.conftest import open_store_for


def run(run_id: str, spider: str, started_at: str, **fields: Any) -> dict[str, Any]:
    return {"id": run_id, "spider": spider, "started_at": started_at, "result": "ok", **fields}


def failure(key: str, spider: str, last_try: str, **fields: Any) -> dict[str, Any]:
    return {"key": key, "spider": spider, "last_try": last_try, "error": "503", **fields}


def test_runs_come_back_newest_first_per_spider(store: Store) -> None:
    store.add_run(run("a", "tmdb_movies", "2024-05-01T00:00:00Z"))
    store.add_run(run("b", "tmdb_series", "2024-05-02T00:00:00Z"))
    store.add_run(run("c", "tmdb_movies", "2024-05-03T00:00:00Z", items=3))
    assert [r["id"] for r in store.recent_runs()] == ["c", "b", "a"]
    assert [r["id"] for r in store.recent_runs("tmdb_movies")] == ["c", "a"]
    assert [r["id"] for r in store.recent_runs("tmdb_movies", limit=1)] == ["c"]
    assert store.recent_runs("igdb_games") == []
    assert store.recent_runs("tmdb_movies", limit=1)[0]["items"] == 3


def test_a_run_saved_again_replaces_its_record(store: Store) -> None:
    store.add_run(run("a", "tmdb_movies", "2024-05-01T00:00:00Z", result="running"))
    store.add_run(run("a", "tmdb_movies", "2024-05-01T00:00:00Z", result="failed", items=2))
    runs = store.recent_runs()
    assert len(runs) == 1
    assert (runs[0]["result"], runs[0]["items"]) == ("failed", 2)


def test_a_failure_failing_again_keeps_its_first_date_and_counts_runs(store: Store) -> None:
    store.put_failure(failure("tmdb_movies:550", "tmdb_movies", "2024-05-01T00:00:00Z"))
    store.put_failure(
        failure("tmdb_movies:550", "tmdb_movies", "2024-05-02T00:00:00Z", error="500")
    )
    [pending] = store.pending_failures()
    assert pending["first_failed"] == "2024-05-01T00:00:00Z"
    assert pending["last_try"] == "2024-05-02T00:00:00Z"
    assert pending["error"] == "500"
    assert pending["runs"] == 2


def test_pending_failures_per_spider_oldest_first_and_cleared_by_key(store: Store) -> None:
    store.put_failure(failure("tmdb_movies:2", "tmdb_movies", "2024-05-03T00:00:00Z"))
    store.put_failure(failure("tmdb_movies:1", "tmdb_movies", "2024-05-01T00:00:00Z"))
    store.put_failure(failure("tmdb_people:9", "tmdb_people", "2024-05-02T00:00:00Z"))
    assert [f["key"] for f in store.pending_failures()] == [
        "tmdb_movies:1",
        "tmdb_people:9",
        "tmdb_movies:2",
    ]
    assert [f["key"] for f in store.pending_failures("tmdb_movies")] == [
        "tmdb_movies:1",
        "tmdb_movies:2",
    ]
    assert [f["key"] for f in store.pending_failures(limit=1)] == ["tmdb_movies:1"]
    assert store.clear_failures(["tmdb_movies:1", "tmdb_movies:404"]) == 1
    assert store.clear_failures([]) == 0
    assert [f["key"] for f in store.pending_failures()] == ["tmdb_people:9", "tmdb_movies:2"]


def test_runs_and_failures_survive_reopening(store_settings: dict[str, Any]) -> None:
    first = open_store_for(store_settings)
    first.add_run(run("a", "tmdb_movies", "2024-05-01T00:00:00Z"))
    first.put_failure(failure("tmdb_movies:1", "tmdb_movies", "2024-05-01T00:00:00Z"))
    first.close()
    again = open_store_for(store_settings)
    try:
        assert [r["id"] for r in again.recent_runs()] == ["a"]
        assert [f["key"] for f in again.pending_failures()] == ["tmdb_movies:1"]
    finally:
        again.close()
