"""Shared fixtures: fake API servers, the two stores (SQLite file, MongoDB wire server)."""

from __future__ import annotations

import os

# Tests never read a developer's .env: settings come from the fixtures alone.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis import Redis
from scrapy.core.engine import ExecutionEngine

from contentcrawl.store import Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.fakes.server import FakeServer
from spiders_tests.mongo_server import running_mongo
from spiders_tests.redis_server import redis_server

T = TypeVar("T")

DATA = Path(__file__).parent / "data"

# When the last item leaves the pipelines with no download in flight, nothing wakes the
# engine until its 5 s heartbeat checks for idleness; a crawl ends the same way, sooner.
ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = 0.2


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
