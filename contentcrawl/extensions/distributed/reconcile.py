"""The reconcile's question: which keys a run recorded are neither stored nor settled."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from contentcrawl.extensions.crawl_store import CrawlStore, crawl_store
from contentcrawl.extensions.distributed.contract import record_of

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from scrapy.crawler import Crawler

    from contentcrawl.store import Store

# Store lookups and Redis set reads per reconcile step.
RECONCILE_CHUNK = 1000


async def unaccounted_keys(
    redis: Redis, crawler: Crawler, spider: Any, ids_key: str, settled_key: str
) -> list[str]:
    """Keys in the set ``ids_key`` neither stored nor in the set ``settled_key``.

    Redis is read on the reactor's loop, chunk by chunk; the store (blocking) on the crawl's
    store thread (``CrawlStore``).
    """
    service = crawl_store(crawler)
    missing: list[str] = []
    chunk: list[str] = []
    async for key in redis.sscan_iter(ids_key, count=RECONCILE_CHUNK):
        chunk.append(key)
        if len(chunk) >= RECONCILE_CHUNK:
            missing.extend(await _unaccounted(redis, service, spider, settled_key, chunk))
            chunk = []
    missing.extend(await _unaccounted(redis, service, spider, settled_key, chunk))
    return missing


async def _unaccounted(
    redis: Redis, service: CrawlStore, spider: Any, settled_key: str, keys: list[str]
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
        stored = await service.run(stored_keys, collection, list(by_store_key))
        missing.extend(key for store_key, key in by_store_key.items() if store_key not in stored)
    return missing


def stored_keys(store: Store, collection: str, keys: list[Any]) -> set[Any]:
    """Which of ``keys`` the store holds, in one batched read (blocking)."""
    return store.existing_keys(collection, keys)
