"""Running a real crawl: in the test process (pytest-twisted supplies the asyncio reactor), or
a ``scrapy`` command in a child process; and what the store pipeline counted in its stats."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.settings import SETTINGS_PRIORITIES
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from contentcrawl.renamed_settings import RENAMED_SETTINGS


def make_crawler(spidercls: type[Spider], settings: dict[str, Any] | None = None) -> Crawler:
    """A crawler with the project's settings, ``settings`` on top (as ``-s`` would be)."""
    project = get_project_settings()
    # Only what the project sets: re-applying Scrapy's defaults would trip its deprecations.
    own = {
        name: project[name]
        for name in project
        if (project.getpriority(name) or 0) > SETTINGS_PRIORITIES["default"]
    }
    return get_crawler(spidercls, {**own, **(settings or {})})


async def crawl(
    spidercls: type[Spider], settings: dict[str, Any] | None = None, **spider_kwargs: Any
) -> Crawler:
    """Run one crawl to its end and return the crawler (stats, spider, components)."""
    crawler = make_crawler(spidercls, settings)
    await crawler.crawl_async(**spider_kwargs)
    return crawler


async def seconds_past_item_limit(
    spidercls: type[Spider], settings: dict[str, Any], limit: int, **spider_kwargs: Any
) -> tuple[Crawler, float]:
    """Run a crawl with ``CLOSESPIDER_ITEMCOUNT=limit``: the crawler, and the seconds from
    its ``limit``-th record (a batch counts its records) to the crawl's end."""
    crawler = make_crawler(spidercls, {**settings, "CLOSESPIDER_ITEMCOUNT": limit})
    scraped = 0
    reached: list[float] = []

    def count(item: Any) -> None:
        # CLOSESPIDER_ITEMCOUNT's own count: the close starts when it reaches the limit.
        nonlocal scraped
        scraped += len(item)
        if scraped >= limit and not reached:
            reached.append(time.monotonic())

    crawler.signals.connect(count, signal=signals.item_scraped)
    await crawler.crawl_async(**spider_kwargs)
    return crawler, time.monotonic() - reached[0]


def store_counts(stats: dict[str, Any], collection: str) -> dict[str, int]:
    """What the store pipeline did with a collection's records in a crawl's ``stats``."""
    return {
        outcome: stats.get(f"store/{collection}/{outcome}", 0)
        for outcome in ("inserted", "updated", "unchanged", "failed")
    }


PROJECT = Path(__file__).resolve().parent.parent
SETTINGS_FILE = PROJECT / "contentcrawl" / "settings.py"


def settings_environment_names() -> frozenset[str]:
    """Every environment variable ``contentcrawl/settings.py`` reads (its ``_env*`` calls)."""
    tree = ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))
    return frozenset(
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("_env")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def path_settings(root: Path) -> dict[str, str]:
    """Every path setting of ``contentcrawl/settings.py``, each at its own place under ``root``."""
    return {
        "SQLITE_PATH": str(root / "contentcrawl.sqlite3"),
        "STORE_FAILED_DIR": str(root / "store_failed"),
        "IMAGES_STORE": str(root / "images"),
        "DUMPS_DIR": str(root / "dumps"),
    }


def user_directories(root: Path) -> dict[str, str]:
    """The XDG base directories, each at its own place under ``root``: where libraries that
    keep per-user files (Scrapy's remote-control job files, tldextract's cache) write them."""
    return {
        name: str(root / folder)
        for name, folder in (
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_STATE_HOME", "state"),
        )
    }


def isolate_environment(environ: MutableMapping[str, str], root: Path) -> None:
    """Make ``environ`` a test's: none of the settings' variables (a developer's store, queue,
    keys), no ``.env``, the project's settings, and every path setting and user directory
    under ``root``."""
    for name in settings_environment_names() | set(RENAMED_SETTINGS) | {"SCRAPY_PROJECT"}:
        environ.pop(name, None)
    environ["CONTENTCRAWL_ENV_FILE"] = os.devnull
    environ["SCRAPY_SETTINGS_MODULE"] = "contentcrawl.settings"
    environ.update(path_settings(root))
    environ.update(user_directories(root / "user"))


def child_env(sqlite_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``scrapy`` child process on the SQLite store at ``sqlite_path``:
    the project found from any directory, no developer's ``.env``, no MongoDB, and (from the
    test's own environment, see ``isolate_environment``) every other path in a temp dir."""
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "SCRAPY_SETTINGS_MODULE": "contentcrawl.settings",
        "CONTENTCRAWL_ENV_FILE": os.devnull,
        "MONGO_URI": "",
        "SQLITE_PATH": str(sqlite_path),
        **overrides,
    }
    env.pop("SCRAPY_PROJECT", None)
    return env


def command_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``scrapy`` command run in ``tmp_path`` (outside the checkout, so
    relative data paths such as dumps and failed batches land there) on the SQLite store
    there: one quick retry, INFO logs."""
    defaults = {
        "RETRY_TIMES": "1",
        "RETRY_BACKOFF_BASE": "0.01",
        "RETRY_BACKOFF_MAX": "0.05",
        "LOG_LEVEL": "INFO",
    }
    return child_env(tmp_path / "store.sqlite3", **{**defaults, **overrides})


def run_scrapy(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``scrapy <args>`` in a child process, as an operator runs it; its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "scrapy", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def descendants(pid: int) -> set[int]:
    """The processes ``pid`` started, and theirs, as Linux's ``/proc`` shows them now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue  # ended while being read
        children.setdefault(parent, []).append(int(stat.parent.name))
    found: set[int] = set()
    waiting = [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found


def still_running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that have not ended (a zombie has)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running
