"""The reconcile's question: which keys a run recorded are neither stored nor settled."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from contentcrawl.extensions.distributed.contract import record_of
from contentcrawl.store import build_store

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from scrapy.settings import BaseSettings

    from contentcrawl.store import Store

# Store lookups and Redis set reads per reconcile step.
RECONCILE_CHUNK = 1000


async def unaccounted_keys(
    redis: Redis, settings: BaseSettings, spider: Any, ids_key: str, settled_key: str
) -> list[str]:
    """Keys in the set ``ids_key`` neither stored nor in the set ``settled_key``.

    Redis is read on the reactor's loop, chunk by chunk; the store (blocking) on a worker thread.
    """
    store = build_store(settings)
    await asyncio.to_thread(store.open)
    try:
        missing: list[str] = []
        chunk: list[str] = []
        async for key in redis.sscan_iter(ids_key, count=RECONCILE_CHUNK):
            chunk.append(key)
            if len(chunk) >= RECONCILE_CHUNK:
                missing.extend(await _unaccounted(redis, store, spider, settled_key, chunk))
                chunk = []
        missing.extend(await _unaccounted(redis, store, spider, settled_key, chunk))
        return missing
    finally:
        await asyncio.to_thread(store.close)


async def _unaccounted(
    redis: Redis, store: Store, spider: Any, settled_key: str, keys: list[str]
) -> list[str]:
    if not keys:
        return []
    settled = await redis.smismember(settled_key, keys)
    missing: list[str] = []
    # collection -> store key -> run key, for one batched read per collection.
    wanted: dict[str, dict[Any, str]] = defaultdict(dict)
    for key, is_settled in zip(keys, settled, strict=True):
        if is_settled:
            continue
        record = record_of(spider, key)
        if record is None:
            # A listing page: nothing in the store says it was done, only settle().
            missing.append(key)
        else:
            collection, store_key = record
            wanted[collection][store_key] = key
    for collection, by_store_key in wanted.items():
        stored = await asyncio.to_thread(stored_keys, store, collection, list(by_store_key))
        missing.extend(key for store_key, key in by_store_key.items() if store_key not in stored)
    return missing


def stored_keys(store: Store, collection: str, keys: list[Any]) -> set[Any]:
    """Which of ``keys`` the store holds, in one batched read (blocking)."""
    # _read_existing is the batched key lookup every backend implements for upserts.
    return set(store._read_existing(collection, keys))
