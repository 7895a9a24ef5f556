"""Shared fixtures: fake API servers, the two stores (SQLite file, MongoDB wire server), and
every test kept off a developer's .env, environment variables and data/ folder."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis

from contentcrawl.scrapy_internals import set_engine_heartbeat_interval
from contentcrawl.store import Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.crawling import isolate_environment, path_settings
from spiders_tests.fakes.openlibrary import FakeOpenLibraryDumps, sample_dump
from spiders_tests.fakes.server import FakeServer
from spiders_tests.mongo_server import running_mongo
from spiders_tests.redis_server import redis_server

T = TypeVar("T")

DATA = Path(__file__).parent / "data"

# Tests never touch a developer's data. contentcrawl/settings.py reads the environment once, at
# its first import (after this): with none of its variables set and no .env read, a MONGO_URI
# or REDIS_URL of the developer's cannot reach a test, and with every path setting in a temp
# dir, neither can the checkout's data/ (the default). Each test then gets paths of its own
# (isolated_paths); these hold for what runs outside a test (session fixtures).
SESSION_PATHS = Path(tempfile.mkdtemp(prefix="contentcrawl-tests-"))
atexit.register(shutil.rmtree, SESSION_PATHS, ignore_errors=True)
isolate_environment(os.environ, SESSION_PATHS)

# A crawl in a test ends 0.2 s after its last item instead of up to 5 s (see the function).
set_engine_heartbeat_interval(0.2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``long`` first (in their order), so that the workers end together."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_collection_finish() -> None:
    """Freeze what collection left (every test of the suite and the modules imported): it
    lives to the end of the run, and a full garbage collection walking it paused the
    process ~90 ms. Such a pause in a timing test shifts the arrival stamps of the fake
    servers running in the same process, by more than the margins those tests check."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def isolated_paths(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every path setting's default in a temp dir of this test's own, for crawls in this
    process (the project's settings) and in child processes (the environment)."""
    root = tmp_path_factory.mktemp("paths")
    project_settings = importlib.import_module("contentcrawl.settings")
    for name, path in path_settings(root).items():
        monkeypatch.setenv(name, path)
        monkeypatch.setattr(project_settings, name, path)
    return root


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB to test against: CONTENTCRAWL_TEST_MONGO_URI, a mongod on PATH, or nx-27017."""
    with running_mongo(tmp_path_factory.mktemp("mongo")) as uri:
        yield uri


@pytest.fixture(params=["sqlite", "mongo"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Scrapy settings naming a fresh, empty store of each kind."""
    if request.param == "sqlite":
        return {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "store.sqlite3")}
    uri = request.getfixturevalue("mongo_uri")
    return {"MONGO_URI": uri, "MONGO_DATABASE": f"test_{uuid.uuid4().hex[:12]}"}


def open_store_for(settings: dict[str, Any]) -> Store:
    """An opened store for settings made by ``store_settings``."""
    store: Store
    if settings.get("MONGO_URI"):
        store = MongoStore(settings["MONGO_URI"], settings["MONGO_DATABASE"])
    else:
        store = SqliteStore(settings["SQLITE_PATH"])
    store.open()
    return store


def read_store(settings: dict[str, Any], read: Callable[[Store], T]) -> T:
    """What ``read`` finds in the store of ``settings``, opened for it and closed after."""
    store = open_store_for(settings)
    try:
        return read(store)
    finally:
        store.close()


@pytest.fixture
def store(store_settings: dict[str, Any]) -> Iterator[Store]:
    """An opened empty store, once SQLite and once MongoDB."""
    opened = open_store_for(store_settings)
    yield opened
    opened.close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A started fake HTTP server with no routes; tests and fakes add their own."""
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def openlibrary() -> Iterator[FakeOpenLibraryDumps]:
    """A fake Open Library dump host on a server of its own, serving the authors sample dump."""
    server = FakeServer().start()
    yield FakeOpenLibraryDumps(server, {"authors": sample_dump("authors").read_bytes()})
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port, one per test session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client of the session's Redis, emptied for each test."""
    client = Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()
