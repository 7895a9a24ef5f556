"""The distributed run never blocks the reactor: its Redis calls are awaited, and what spider
callbacks record is sent after them, in order, and kept until Redis has it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import scrapy
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.extensions.distributed.writes import PendingAdditions
from spiders_tests.crawling import crawl
from spiders_tests.redis_proxy import redis_proxy
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


def slow_redis(redis_url: str, *slow_markers: bytes) -> AbstractContextManager[str]:
    """A proxy to ``redis_url`` that holds every command holding all ``slow_markers`` for
    ``REDIS_DELAY`` s (scrapy-redis's scheduler, which blocks by design, goes at full speed)."""

    def hold(chunk: bytes) -> None:
        if all(marker in chunk for marker in slow_markers):
            time.sleep(REDIS_DELAY)

    return redis_proxy(redis_url, hold)


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
