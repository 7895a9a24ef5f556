"""Run records tell the truth about liveness: a killed crawl does not stay ``running`` for
ever (that a ``scrapy shell`` session writes none, test_project_commands checks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.extensions.runs import mark_killed, run_time
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from contentcrawl.store import Store
from spiders_tests.conftest import read_store
from spiders_tests.crawling import child_env, crawl, run_scrapy
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.fakes.server import FakeResponse, FakeServer

HOST = socket.gethostname()


def running(run_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "spider": "tmdb_movies",
        "result": "running",
        "started_at": run_time(datetime.now(UTC) - timedelta(hours=1)),
        **fields,
    }


def dead_pid() -> int:
    """The id of a process that has just exited (not reused this soon)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_running_records_of_gone_processes_are_marked_killed(store: Store) -> None:
    fresh = run_time()
    stale = run_time(datetime.now(UTC) - timedelta(seconds=200))
    gone = dead_pid()
    store.add_run(running("dead-here", pid=gone, host=HOST, heartbeat_at=fresh))
    store.add_run(running("alive-here", pid=os.getpid(), host=HOST, heartbeat_at=fresh))
    store.add_run(running("silent-elsewhere", pid=1, host="other-host", heartbeat_at=stale))
    store.add_run(running("beating-elsewhere", pid=1, host="other-host", heartbeat_at=fresh))
    store.add_run(running("done", result="ok", pid=dead_pid(), host=HOST))

    killed = mark_killed(store, HOST, heartbeat_interval=60)

    assert sorted(run["id"] for run in killed) == ["dead-here", "silent-elsewhere"]
    results = {run["id"]: run for run in store.recent_runs()}
    assert results["dead-here"]["result"] == "killed"
    assert results["dead-here"]["problems"] == [f"process {gone} on {HOST} is gone"]
    assert results["dead-here"]["finished_at"] == fresh
    assert results["silent-elsewhere"]["result"] == "killed"
    assert results["silent-elsewhere"]["problems"][0].startswith("no heartbeat for ")
    assert results["alive-here"]["result"] == "running"
    assert results["beating-elsewhere"]["result"] == "running"
    assert results["done"]["result"] == "ok"


@pytest.fixture
def hanging_tmdb() -> Iterator[FakeServer]:
    """A TMDB API that answers only after a minute: the crawl is busy until it is killed."""
    server = FakeServer(latency=60).start()
    server.route("GET", r"/.*")(lambda request: FakeResponse.json({"id": 550}))
    yield server
    server.stop()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_crawl_killed_with_sigkill_is_marked_killed(
    hanging_tmdb: FakeServer, tmp_path: Path
) -> None:
    store_path = tmp_path / "store.sqlite3"
    settings = {"MONGO_URI": "", "SQLITE_PATH": str(store_path)}
    env = child_env(
        store_path,
        TMDB_API_URL=f"{hanging_tmdb.url}/3",
        TMDB_READ_ACCESS_TOKEN="liveness-token",  # noqa: S106 - a test credential
        RUNS_HEARTBEAT_INTERVAL="0.3",
        DOWNLOAD_TIMEOUT="120",
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "crawl", "tmdb_movies", "-a", "ids=550"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def beating() -> dict[str, Any] | None:
            if not store_path.exists():
                return None
            runs = read_store(settings, lambda store: store.recent_runs("tmdb_movies"))
            run = runs[0] if runs else None
            if run and run["heartbeat_at"] > run["started_at"]:
                return run
            return None

        run = wait_for(beating, 30, "a heartbeat in the run record")
        assert (run["result"], run["pid"], run["host"]) == ("running", child.pid, HOST)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert read_store(settings, lambda store: store.recent_runs("tmdb_movies"))[0]["result"] == (
        "running"
    )

    status = run_scrapy("status", "--json", cwd=tmp_path, env=env)

    assert status.returncode == 0, status.stderr
    last = json.loads(status.stdout)["spiders"]["tmdb_movies"]["last_run"]
    assert last["id"] == run["id"]
    assert last["result"] == "killed"
    assert last["problems"] == [f"process {child.pid} on {HOST} is gone"]


@deferred_f_from_coro_f
async def test_the_next_crawl_of_any_spider_marks_a_dead_run_killed(tmp_path: Path) -> None:
    settings = {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
    read_store(
        settings,
        lambda store: store.add_run(
            running("killed-9", pid=dead_pid(), host=HOST, heartbeat_at=run_time())
        ),
    )

    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(sample_dump("editions")))

    assert crawler.stats.get_value("runs/killed/marked") == 1
    runs = {run["id"]: run for run in read_store(settings, lambda store: store.recent_runs())}
    assert runs["killed-9"]["result"] == "killed"
    assert [run["result"] for run in runs.values() if run["spider"] == "openlibrary_books"] == [
        "ok"
    ]
