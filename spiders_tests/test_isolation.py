"""The suite never touches a developer's data: their .env, store and queue variables are not
read, and nothing is written into the checkout (issue #14); what the project's own commands
write into a checkout, git ignores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pymongo
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.project import get_project_settings

from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import (
    PROJECT,
    isolate_environment,
    path_settings,
    settings_environment_names,
    user_directories,
)
from spiders_tests.fakes.openlibrary import sample_dump
from spiders_tests.mongo_server import free_port
from spiders_tests.scrapyd_http import get_json, point_deploy_at, wait_until

# Tests that named no store before the fix, and so wrote run records and a dead letter into
# the checkout's data/contentcrawl.sqlite3; and one that runs `scrapy` in a child process.
TESTS_ON_DEFAULTS = [
    "spiders_tests/test_polite_retry.py::test_give_up_sends_signal_once_and_logs_redacted_url",
    "spiders_tests/test_polite_retry.py::test_cut_connection_is_retried_with_backoff",
    "spiders_tests/test_project_commands.py::test_scrapy_shell_is_authenticated_for_the_api_host",
]


def checkout_copy(target: Path) -> Path:
    """What a developer's checkout holds to run the tests, copied to ``target``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("contentcrawl", "spiders_tests"):
        shutil.copytree(PROJECT / folder, target / folder, ignore=ignore)
    for name in ("pyproject.toml", "scrapy.cfg"):
        shutil.copy(PROJECT / name, target / name)
    return target


def snapshot(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file (size, modification time) and folder under ``root``."""
    return {
        str(path.relative_to(root)): (
            (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
        )
        for path in root.rglob("*")
    }


def users_environment() -> dict[str, str]:
    """This process's environment as a developer's shell has it: without what the test
    session set (isolation, project paths)."""
    env = dict(os.environ)
    for name in {*settings_environment_names(), "CONTENTCRAWL_ENV_FILE", "SCRAPY_SETTINGS_MODULE"}:
        env.pop(name, None)
    env.pop("PYTHONPATH", None)  # the copy runs its own code, not this checkout's
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the checkout snapshot sees every write
    return env


def test_the_suite_leaves_the_developers_store_and_checkout_alone(
    tmp_path: Path, mongo_uri: str
) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    # A developer's store in the environment and another in .env (which the environment
    # would win over): a test reading either one writes into a database named here.
    databases = {where: f"developers_{uuid.uuid4().hex[:12]}" for where in ("environment", ".env")}
    env = users_environment()
    env.update(MONGO_URI=mongo_uri, MONGO_DATABASE=databases["environment"])
    dotenv = {"MONGO_URI": mongo_uri, "MONGO_DATABASE": databases[".env"]}
    lines = "".join(f"{name}={value}\n" for name, value in dotenv.items())
    (checkout / ".env").write_text(lines, encoding="utf-8")
    # The one way to choose a test MongoDB (the child's tests get this session's server).
    env["CONTENTCRAWL_TEST_MONGO_URI"] = mongo_uri
    before = snapshot(checkout)
    basetemp = tmp_path / "basetemp"

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            # In this worker: a few tests gain nothing from workers of their own.
            "-n",
            "0",
            f"--basetemp={basetemp}",
            "-q",
            *TESTS_ON_DEFAULTS,
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(TESTS_ON_DEFAULTS)} passed" in done.stdout
    assert snapshot(checkout) == before
    with pymongo.MongoClient(mongo_uri) as client:
        for database in databases.values():
            assert client[database].list_collection_names() == []
    # The tests did keep their run records and dead letter: in their own temp dirs.
    kept = 0
    for store_path in basetemp.rglob("contentcrawl.sqlite3"):
        with SqliteStore(store_path) as store:
            kept += len(store.recent_runs()) + len(store.pending_failures())
    assert kept > 0


def test_a_tests_environment_keeps_no_setting_of_the_developers(tmp_path: Path) -> None:
    names = settings_environment_names()
    assert {"MONGO_URI", "MONGO_DATABASE", "REDIS_URL", "TMDB_API_KEY", "LOG_LEVEL"} <= names
    developers = dict.fromkeys([*names, "SCRAPY_PROJECT"], "the developer's")

    isolate_environment(developers, tmp_path)

    assert developers == {
        **path_settings(tmp_path),
        **user_directories(tmp_path / "user"),
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "SCRAPY_SETTINGS_MODULE": "contentcrawl.settings",
    }


def test_every_path_setting_lies_in_this_tests_temp_dir(isolated_paths: Path) -> None:
    settings = get_project_settings()
    project_paths = {
        name: settings[name]
        for name in settings
        if (settings.getpriority(name) or 0) >= SETTINGS_PRIORITIES["project"]
        and isinstance(settings[name], str)
        and "/" in settings[name]
        and "://" not in settings[name]
    }
    assert set(path_settings(isolated_paths)) <= set(project_paths)
    for name, value in project_paths.items():
        assert Path(value).is_relative_to(isolated_paths), name
        assert Path(os.environ[name]) == Path(value), name


def git(checkout: Path, *args: str) -> str:
    """``git <args>`` in ``checkout``, its output; no user or system git configuration read."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_what_scrapyd_and_a_crawl_write_into_the_checkout_git_ignores(tmp_path: Path) -> None:
    checkout = checkout_copy(tmp_path / "checkout")
    shutil.copy(PROJECT / ".gitignore", checkout / ".gitignore")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # scrapyd run from the checkout with its defaults (dbs/, eggs/, logs/ there) on a free port.
    (checkout / "scrapyd.conf").write_text(
        f"[scrapyd]\nbind_address = 127.0.0.1\nhttp_port = {port}\npoll_interval = 0.2\n",
        encoding="utf-8",
    )
    point_deploy_at(checkout / "scrapy.cfg", url)
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", "clone")
    # No store or path variable: the job writes to the default paths, under scrapyd's cwd.
    # The user's own directories are watched: nothing of a job's may land there.
    home = tmp_path / "home"
    env = {
        **users_environment(),
        **user_directories(home),
        "CONTENTCRAWL_ENV_FILE": os.devnull,
    }
    deploy = shutil.which("scrapyd-deploy")
    assert deploy, "pip install scrapyd-client"
    with (tmp_path / "scrapyd.out").open("wb") as out:
        scrapyd = subprocess.Popen(
            [sys.executable, "-m", "scrapyd"], cwd=checkout, env=env, stdout=out, stderr=out
        )
    try:
        wait_until(lambda: get_json(f"{url}daemonstatus.json")["status"] == "ok", 20, "scrapyd")
        deployed = subprocess.run(
            [deploy], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
        )
        assert deployed.returncode == 0, deployed.stderr
        job = {
            "project": "contentcrawl",
            "spider": "openlibrary_books",
            "dump": str(sample_dump("editions")),
            "setting": "JOBDIR=crawls/openlibrary_books",
        }
        assert get_json(f"{url}schedule.json", job)["status"] == "ok"
        finished = wait_until(
            lambda: get_json(f"{url}listjobs.json?project=contentcrawl")["finished"], 30, "the job"
        )
    finally:
        scrapyd.terminate()
        scrapyd.wait(timeout=10)

    assert finished[0]["spider"] == "openlibrary_books"
    assert git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
    written = {
        line[3:] for line in git(checkout, "status", "--porcelain", "--ignored").splitlines()
    }
    # What the job, scrapyd and scrapyd-deploy wrote is there, ignored.
    assert {"build/", "crawls/", "data/", "dbs/", "eggs/", "logs/", "setup.py"} <= written
    # Scrapy's remote control (a code-running HTTP server with its token in a job file under
    # XDG_STATE_HOME) stays off in the project's crawls.
    assert sorted(home.rglob("*")) == []
