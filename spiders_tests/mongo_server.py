"""A MongoDB to test and benchmark against, started on a free port when none is given."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_mongo(uri: str, process: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    """Block until ``uri`` answers a ping; fail early if ``process`` died."""
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


@contextmanager
def running_mongo(workdir: Path) -> Iterator[str]:
    """CONTENTCRAWL_TEST_MONGO_URI, else a ``mongod`` on PATH, else ``nx-27017`` (in memory)."""
    given = os.environ.get("CONTENTCRAWL_TEST_MONGO_URI")
    if given:
        yield given
        return
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
