"""The distributed run never blocks the reactor: its Redis calls are awaited, and what spider
callbacks record is sent after them, in order, and kept until Redis has it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import scrapy
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.extensions.distributed.writes import PendingAdditions
from spiders_tests.crawling import crawl
from spiders_tests.redis_server import free_port

# How long the slow Redis holds each worker-state report (the run's SET of its state key):
# long enough that a blocked loop stands out from the stalls of a loaded machine.
REDIS_DELAY = 1.0


class IdleSpider(scrapy.Spider):
    """A worker with nothing of its own to do: it lives on the run's ticks until the run ends."""

    name = "distributed_idle"

    async def start(self) -> AsyncIterator[Any]:
        return
        yield


def _pump(source: socket.socket, target: socket.socket, slow_markers: tuple[bytes, ...]) -> None:
    """Copy ``source`` to ``target`` until ``source`` ends, then end ``target``'s sending."""
    try:
        while chunk := source.recv(65536):
            if slow_markers and all(marker in chunk for marker in slow_markers):
                time.sleep(REDIS_DELAY)
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        return  # a side that resets the connection ends it as one that closes it does


def _relay(client: socket.socket, server: socket.socket, slow_markers: tuple[bytes, ...]) -> None:
    """Carry one connection both ways until both directions have ended, then close it: each
    direction's thread closing both sockets would pull them from under the other's recv."""
    answers = threading.Thread(target=_pump, args=(server, client, ()), daemon=True)
    answers.start()
    _pump(client, server, slow_markers)
    answers.join()
    client.close()
    server.close()


@contextmanager
def slow_redis(redis_url: str, *slow_markers: bytes) -> Iterator[str]:
    """A proxy to ``redis_url`` that holds every command holding all ``slow_markers`` for
    ``REDIS_DELAY`` s (scrapy-redis's scheduler, which blocks by design, goes at full speed)."""
    upstream = urlsplit(redis_url)
    listener = socket.create_server(("127.0.0.1", free_port()))

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection((upstream.hostname, upstream.port))
            threading.Thread(
                target=_relay, args=(client, server, slow_markers), daemon=True
            ).start()

    threading.Thread(target=accept, daemon=True).start()
    host, port = listener.getsockname()
    try:
        yield f"redis://{host}:{port}/0"
    finally:
        listener.close()


async def longest_stall(stop: asyncio.Event) -> float:
    """The longest the event loop went without running this task (10 ms naps) until ``stop``."""
    longest = 0.0
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        longest = max(longest, time.monotonic() - before - 0.01)
    return longest


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_a_slow_redis_does_not_stall_the_reactor(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    # Only the SET of the state: the run's reads of the states (SCAN, MGET) would add two
    # more seconds to each tick, and the run ends only when two ticks in a row agree.
    with slow_redis(redis_url, b"SET", b":worker:") as url:
        settings = {
            "REDIS_URL": url,
            "DISTRIBUTED_TICK": 0.1,
            "MONGO_URI": "",
            "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        }
        stop = asyncio.Event()
        watch = asyncio.ensure_future(longest_stall(stop))
        crawler = await crawl(IdleSpider, settings)
        stop.set()
        stall = await watch

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "finished"
    assert stats["distributed/run/finished_by_me"] == 1
    assert "distributed/tick/error" not in stats
    # Blocking, each 0.1 s tick would stall the loop REDIS_DELAY s.
    assert stall < REDIS_DELAY / 2


@deferred_f_from_coro_f
async def test_recorded_keys_reach_redis_once_flushed(redis: Redis, redis_url: str) -> None:
    errors: list[BaseException] = []
    client = AsyncRedis.from_url(redis_url, decode_responses=True)
    additions = PendingAdditions(client, errors.append)

    additions.add("run:ids", ["a", "b"])
    additions.add("run:settled", ["page:1"])
    additions.add("run:ids", [])
    assert additions.pending
    await additions.flush()
    await client.aclose()

    assert not additions.pending
    assert not errors
    assert redis.smembers("run:ids") == {"a", "b"}
    assert redis.smembers("run:settled") == {"page:1"}


@deferred_f_from_coro_f
async def test_recorded_keys_redis_did_not_take_are_kept_for_the_next_send() -> None:
    errors: list[BaseException] = []
    client = AsyncRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True)
    additions = PendingAdditions(client, errors.append)

    additions.add("run:settled", ["page:1"])
    while not errors:
        await asyncio.sleep(0.01)
    await client.aclose()

    assert additions.pending
    assert "Connection" in type(errors[0]).__name__
