"""Shared fixtures: fake API servers, the two stores (SQLite file, MongoDB wire server)."""

from __future__ import annotations

import os

# Tests never read a developer's .env: settings come from the fixtures alone.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from scrapy.core.engine import ExecutionEngine

from contentcrawl.store import Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.fakes.server import FakeServer

DATA = Path(__file__).parent / "data"

# When the last item leaves the pipelines with no download in flight, nothing wakes the
# engine until its 5 s heartbeat checks for idleness; a crawl ends the same way, sooner.
ExecutionEngine._SLOT_HEARTBEAT_INTERVAL = 0.2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_mongo(uri: str, process: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"MongoDB test server exited with {process.returncode}")
        try:
            with pymongo.MongoClient(uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB to test against: CONTENTCRAWL_TEST_MONGO_URI, a mongod on PATH, or nx-27017."""
    given = os.environ.get("CONTENTCRAWL_TEST_MONGO_URI")
    if given:
        yield given
        return
    workdir = tmp_path_factory.mktemp("mongo")
    port = free_port()
    if shutil.which("mongod"):
        command = [
            "mongod",
            "--dbpath",
            str(workdir),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
        ]
    else:
        command = [
            "nx-27017",
            "--data-dir",
            "memory",
            "-p",
            str(port),
            "--log-file",
            str(workdir / "nx.log"),
            "--pid-file",
            str(workdir / "nx.pid"),
        ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}"
    try:
        wait_for_mongo(uri, process)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


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
