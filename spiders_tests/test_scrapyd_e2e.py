"""End to end: a real scrapyd with deploy/scrapyd.conf, ``scrapyd-deploy``, ``scrapy schedule``.

A copy of the checkout (what a clean clone holds) is deployed with ``scrapyd-deploy`` to a
scrapyd started on a free port from the project's config (ports and directories moved to
a temporary directory). ``scrapy schedule`` queues a TMDB and an Open Library job; they run
against local fakes, configured, credentials included, through scrapyd's environment only.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contentcrawl.jobs import jobs_for
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import PROJECT
from spiders_tests.fakes.openlibrary import FakeOpenLibraryDumps
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, movie_550
from spiders_tests.mongo_server import free_port
from spiders_tests.scrapyd_http import get_json, point_deploy_at, wait_until

TOKEN = "e2e-secret-read-token"  # noqa: S105 - a test credential
TMDB_JOB = "tmdb_movies-changes"
OL_JOB = "openlibrary_authors-dump"


def checkout_copy(target: Path, scrapyd_url: str) -> Path:
    """The project as a clean clone has it, its deploy target pointed at ``scrapyd_url``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", ".env")
    shutil.copytree(PROJECT / "contentcrawl", target / "contentcrawl", ignore=ignore)
    shutil.copy(PROJECT / "pyproject.toml", target / "pyproject.toml")
    shutil.copy(PROJECT / "scrapy.cfg", target / "scrapy.cfg")
    point_deploy_at(target / "scrapy.cfg", scrapyd_url)
    return target


def scrapyd_home(home: Path, port: int, poll_interval: float = 0.2) -> Path:
    """deploy/scrapyd.conf with its port and directories moved into ``home``."""
    config = configparser.ConfigParser()
    config.read(PROJECT / "deploy" / "scrapyd.conf")
    section = config["scrapyd"]
    assert section["jobstorage"] == "scrapyd.jobstorage.SqliteJobStorage"
    section["http_port"] = str(port)
    section["poll_interval"] = str(poll_interval)
    for name in ("dbs_dir", "eggs_dir", "logs_dir"):
        section[name] = str(home / name)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "scrapyd.conf").open("w") as conf:
        config.write(conf)
    return home


class Scrapyd:
    def __init__(self, home: Path, port: int, env: dict[str, str]) -> None:
        self.home, self.port, self.env = home, port, env
        self.url = f"http://127.0.0.1:{port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # cwd = home: scrapyd reads ./scrapyd.conf, and relative job paths land here. The
        # child writes to its own copy of the log's descriptor: this process closes its one.
        with (self.home / "scrapyd.out").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "scrapyd"],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        wait_until(
            lambda: get_json(f"{self.url}daemonstatus.json")["status"] == "ok", 20, "scrapyd"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def jobs(self) -> dict[str, list[dict[str, Any]]]:
        return get_json(f"{self.url}listjobs.json?project=contentcrawl")


@pytest.fixture
def tmdb() -> Iterator[TmdbFake]:
    """A TMDB whose answers take a while, so a job is still running when scheduled again."""
    api, exports = FakeServer(latency=0.5).start(), FakeServer().start()
    fake = TmdbFake(api, exports, token=TOKEN, rate_limit=10_000)
    today = datetime.now(UTC).date()
    for tmdb_id in (550, 551, 552):
        fake.add_clone("movie", movie_550(), tmdb_id)
        fake.add_change("movie", today, tmdb_id)
    yield fake
    api.stop()
    exports.stop()


@pytest.mark.long
def test_deploy_schedule_run_and_no_duplicate_while_running(
    tmdb: TmdbFake, openlibrary: FakeOpenLibraryDumps, tmp_path: Path
) -> None:
    deploy = shutil.which("scrapyd-deploy")
    assert deploy, "pip install scrapyd-client==2.0.3"
    port = free_port()
    store_path = tmp_path / "store.sqlite3"
    with SqliteStore(store_path) as store:
        # A clean TMDB sync yesterday: today's job reads the changes feed.
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        store.set_state("tmdb_movies/changes", {"synced_through": yesterday})
    env = {
        **os.environ,
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "MONGO_URI": "",
        "SQLITE_PATH": str(store_path),
        **tmdb.settings(),
        "TMDB_READ_ACCESS_TOKEN": TOKEN,
        **openlibrary.settings,
        "LOG_LEVEL": "INFO",
    }
    for name in ("SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "PYTHONPATH"):
        env.pop(name, None)
    scrapyd = Scrapyd(scrapyd_home(tmp_path / "scrapyd", port), port, env)
    checkout = checkout_copy(tmp_path / "checkout", scrapyd.url)
    # The deploying and scheduling side knows no secret.
    client_env = {k: v for k, v in env.items() if not k.startswith(("TMDB_", "OPENLIBRARY_"))}
    scrapyd.start()
    try:
        deployed = subprocess.run(
            [deploy], cwd=checkout, env=client_env, capture_output=True, text=True, timeout=60
        )
        assert deployed.returncode == 0, deployed.stderr
        assert '"status": "ok"' in deployed.stdout + deployed.stderr

        def schedule() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "scrapy", "schedule", "--job", TMDB_JOB, "--job", OL_JOB],
                cwd=checkout,
                env=client_env,
                capture_output=True,
                text=True,
                timeout=30,
            )

        first = schedule()
        assert first.returncode == 0, first.stderr
        assert [line.split()[:2] for line in first.stdout.splitlines()] == [
            ["scheduled", TMDB_JOB],
            ["scheduled", OL_JOB],
        ]
        wait_until(
            lambda: any(job["spider"] == "tmdb_movies" for job in scrapyd.jobs()["running"]),
            20,
            "the TMDB job to run",
        )
        again = schedule()
        assert again.returncode == 0, again.stderr
        assert [line.split()[:2] for line in again.stdout.splitlines()] == [
            ["skipped", f"{TMDB_JOB}:"],
            ["skipped", f"{OL_JOB}:"],
        ]
        finished = wait_until(
            lambda: (
                (jobs := scrapyd.jobs())["finished"]
                and not jobs["pending"]
                and not jobs["running"]
                and jobs["finished"]
            ),
            45,
            "both jobs to finish",
        )
        assert sorted(job["spider"] for job in finished) == ["openlibrary_authors", "tmdb_movies"]
        # A job that fails (its dump does not exist) exits non-zero: scrapyd's log says so,
        # and so does its run record (below).
        missing_dump = {"project": "contentcrawl", "spider": "openlibrary_books"}
        missing_dump["dump"] = str(tmp_path / "no_such_dump.txt.gz")
        assert get_json(f"{scrapyd.url}schedule.json", missing_dump)["status"] == "ok"
        wait_until(lambda: len(scrapyd.jobs()["finished"]) == 3, 30, "the failing job to end")

        # Job history is in SQLite: it survives a scrapyd restart.
        scrapyd.stop()
        scrapyd.start()
        assert len(scrapyd.jobs()["finished"]) == 3
    finally:
        scrapyd.stop()

    scrapyd_log = (tmp_path / "scrapyd" / "scrapyd.out").read_text()
    assert scrapyd_log.count("Process died: exitstatus=") == 1
    assert "Process died: exitstatus=1" in scrapyd_log

    with SqliteStore(store_path) as store:
        assert store.count("movies") == 3
        assert store.count("authors") > 0
        runs = {run["spider"]: run for run in store.recent_runs()}
    assert set(runs) == {"tmdb_movies", "openlibrary_authors", "openlibrary_books"}
    failed_run = runs["openlibrary_books"]
    assert (failed_run["result"], failed_run["exit_code"]) == ("failed", 1)
    assert failed_run["problems"] == ["finish reason 'dump_not_found'", "1 errors logged"]
    movies_run = runs["tmdb_movies"]
    assert movies_run["id"].startswith(f"{TMDB_JOB}-")
    assert (movies_run["result"], movies_run["exit_code"]) == ("ok", 0), movies_run["problems"]
    assert movies_run["arguments"] == {"mode": "changes"}
    assert (movies_run["items"], movies_run["inserted"]) == (3, 3)
    assert runs["openlibrary_authors"]["result"] == "ok", runs["openlibrary_authors"]["problems"]
    assert runs["openlibrary_authors"]["inserted"] > 0
    assert len(tmdb.api.hits(r"/3/movie/55[012]")) == 3
    logs = list((tmp_path / "scrapyd" / "logs_dir").rglob("*.log"))
    assert len(logs) == 3
    assert all(TOKEN not in log.read_text() for log in logs)
    assert all(job["spider"] for job in finished)


def test_daily_schedule_queues_every_api_spiders_replay_after_its_run(tmp_path: Path) -> None:
    deploy = shutil.which("scrapyd-deploy")
    assert deploy, "pip install scrapyd-client==2.0.3"
    port = free_port()
    env = {**os.environ, "CONTENTCRAWL_ENV_FILE": os.devnull, "MONGO_URI": ""}
    env["SQLITE_PATH"] = str(tmp_path / "store.sqlite3")
    for name in ("SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "PYTHONPATH"):
        env.pop(name, None)
    # No poll in the test's time: every job stays pending, in scrapyd's queue order.
    scrapyd = Scrapyd(scrapyd_home(tmp_path / "scrapyd", port, poll_interval=3600), port, env)
    checkout = checkout_copy(tmp_path / "checkout", scrapyd.url)
    scrapyd.start()
    try:
        deployed = subprocess.run(
            [deploy], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
        )
        assert deployed.returncode == 0, deployed.stderr

        def schedule_daily() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "scrapy", "schedule", "daily"],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        first = schedule_daily()
        assert first.returncode == 0, first.stderr
        pending = [job["id"].rsplit("-", 1)[0] for job in scrapyd.jobs()["pending"]]
        again = schedule_daily()
        assert again.returncode == 0, again.stderr
        assert len(scrapyd.jobs()["pending"]) == len(pending)
    finally:
        scrapyd.stop()

    daily = [job.name for job in jobs_for("daily")]
    assert sorted(pending) == sorted(daily)
    replays = [name for name in daily if name.endswith("-failed")]
    assert len(replays) == 9
    for replay in replays:
        spider = replay.removesuffix("-failed")
        runs = [name for name in pending if name.startswith(f"{spider}-") and name != replay]
        assert all(pending.index(run) < pending.index(replay) for run in runs), pending
    assert [line.split()[0] for line in first.stdout.splitlines()] == ["scheduled"] * len(daily)
    assert [line.split()[0] for line in again.stdout.splitlines()] == ["skipped"] * len(daily)


def test_schedule_says_clearly_when_scrapyd_is_unreachable(tmp_path: Path) -> None:
    url = f"http://operator:hunter2@127.0.0.1:{free_port()}/"
    env = {**os.environ, "CONTENTCRAWL_ENV_FILE": os.devnull}
    env.pop("SCRAPY_SETTINGS_MODULE", None)

    done = subprocess.run(
        [sys.executable, "-m", "scrapy", "schedule", "daily", "--url", url],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 1
    assert done.stderr.startswith("scrapyd: http://operator:***@127.0.0.1:")
    assert "hunter2" not in done.stderr + done.stdout
