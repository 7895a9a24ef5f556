"""DistributedRun: seeding under a Redis lock, keep-alive, reconcile and the run's end."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import DontCloseSpider, NotConfigured

from contentcrawl.extensions.distributed.addon import KEY_PREFIX
from contentcrawl.extensions.distributed.contract import DistributedSpider
from contentcrawl.extensions.distributed.reconcile import unaccounted_keys
from contentcrawl.extensions.distributed.writes import PendingAdditions
from contentcrawl.redaction import redact_url
from contentcrawl.scrapy_internals import wake_engine
from contentcrawl.signals import distributed_run_opened

if TYPE_CHECKING:
    from typing import Self

    from redis.asyncio import Redis
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# Store outcomes of a record the store pipeline took (stats ``store/<collection>/<outcome>``).
STORED_OUTCOMES = frozenset({"inserted", "updated", "unchanged", "failed"})
# Renew the lock only if this worker still holds it (compare and expire, atomically).
RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def redis_client(url: str) -> Redis:
    """An asyncio Redis client for ``url`` answering ``str``, for the reactor's loop."""
    from redis.asyncio import Redis

    return Redis.from_url(url, decode_responses=True, socket_timeout=30)


class DistributedRun:
    """Seeding under a Redis lock, keep-alive on ``spider_idle``, reconcile, run end.

    Off (``NotConfigured``) without ``REDIS_URL``. Settings: ``DISTRIBUTED_SEED_BATCH``,
    ``DISTRIBUTED_QUEUE_HIGH_WATER``, ``DISTRIBUTED_TICK``, ``DISTRIBUTED_LOCK_TTL``,
    ``DISTRIBUTED_WORKER_TTL``, ``DISTRIBUTED_RECONCILE_ROUNDS``. Every Redis call is a
    ``redis.asyncio`` coroutine: none blocks the reactor. The spider gets the run through
    the ``distributed_run_opened`` signal.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        url = settings.get("REDIS_URL")
        if not url:
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled DistributedRun: REDIS_URL is not set, single-worker mode")
            raise NotConfigured
        if "scrapy_redis" not in str(settings.get("SCHEDULER")):
            raise NotConfigured("SCHEDULER is not scrapy-redis's: see distributed_settings()")
        self.crawler = crawler
        self.url = url
        self.redis = redis_client(url)
        self.seed_batch = max(1, settings.getint("DISTRIBUTED_SEED_BATCH"))
        self.high_water = max(self.seed_batch, settings.getint("DISTRIBUTED_QUEUE_HIGH_WATER"))
        self.tick = settings.getfloat("DISTRIBUTED_TICK")
        self.lock_ttl_ms = int(settings.getfloat("DISTRIBUTED_LOCK_TTL") * 1000)
        self.worker_ttl_ms = int(settings.getfloat("DISTRIBUTED_WORKER_TTL") * 1000)
        self.rounds = settings.getint("DISTRIBUTED_RECONCILE_ROUNDS")
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = crawler.stats
        # What callbacks record and settle: they cannot wait for Redis, so it is sent after.
        self.additions = PendingAdditions(self.redis, self._step_failed)
        self._renew = self.redis.register_script(RENEW_LOCK)
        self._ticking: asyncio.Future[None] | None = None
        self._seeding = False
        self._in_start = False
        self._reconciling = False
        self._finished = False
        self._left_downloader = 0
        self._last_look: tuple[Any, ...] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(self._request_left, signal=signals.request_left_downloader)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    # -- keys -------------------------------------------------------------------------------
    def key(self, name: str) -> str:
        """The Redis key ``name`` of this spider's run."""
        return f"{KEY_PREFIX % {'spider': self.spider.name}}:{name}"

    @property
    def spider(self) -> Any:
        return self.crawler.spider

    @property
    def _queue_key(self) -> str:
        return self.crawler.settings.get("SCHEDULER_QUEUE_KEY") % {"spider": self.spider.name}

    @property
    def _dupefilter_key(self) -> str:
        template = self.crawler.settings.get("SCHEDULER_DUPEFILTER_KEY")
        return template % {"spider": self.spider.name}

    async def _queue_length(self) -> int:
        # scrapy-redis's PriorityQueue is a sorted set.
        return int(await self.redis.zcard(self._queue_key))

    # -- lifecycle ----------------------------------------------------------------------
    async def spider_opened(self) -> None:
        logger.info(
            "Distributed mode: worker %s on %s, queue %s",
            self.worker,
            redact_url(self.url),
            self._queue_key,
        )
        self.crawler.signals.send_catch_log(distributed_run_opened, run=self)
        await self._report_state()
        self._ticking = asyncio.ensure_future(self._tick_loop())

    def spider_idle(self) -> None:
        """Keep the worker open while the run is not done: other workers may push more.

        The run's end is looked up by the tick (and ``start()``), which wakes the engine.
        """
        if not self._finished:
            raise DontCloseSpider

    async def spider_closed(self) -> None:
        if self._ticking is not None:
            self._ticking.cancel()
        for future in self._background:
            future.cancel()
        try:
            if not self._finished:
                # A done run's keys are deleted: a late addition must not bring them back.
                await self.additions.flush()
            await self.redis.delete(self.key(f"worker:{self.worker}"))
            if not self._finished and await self._holds_lock():
                # Another worker takes seeding or reconciling over without waiting out the TTL.
                await self.redis.delete(self.key("lock"))
        finally:
            await self.redis.aclose()

    def _request_left(self) -> None:
        self._left_downloader += 1

    # -- seeding --------------------------------------------------------------------------
    async def start(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Wrap a spider's id source: the lock holder seeds, the others wait for work."""
        self._in_start = True
        try:
            while not self._finished:
                if await self.redis.exists(self.key("done")):
                    self._finished = True
                    return
                if await self._take_lock():
                    if self._seeding or await self.redis.exists(self.key("seeded")):
                        return
                    async for request_or_item in self._seed(source):
                        yield request_or_item
                    return
                if await self._queue_length() or await self.redis.exists(self.key("seeded")):
                    # Returning from start() makes the engine ask the scheduler at once.
                    return
                await asyncio.sleep(self.tick)
        finally:
            self._in_start = False

    async def _seed(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        self._seeding = True
        self.stats.set_value("distributed/seed/worker", 1)
        # Another worker's name here: it began seeding and died (its lock ran out).
        previous = await self.redis.set(self.key("seeder"), self.worker, get=True)
        takeover = previous is not None and previous != self.worker
        if takeover:
            self.stats.inc_value("distributed/seed/takeover")
        logger.info("Worker %s seeds the run%s", self.worker, " (takeover)" if takeover else "")
        batch: list[str] = []
        try:
            async for request_or_item in source:
                key = self.spider.distributed_key(request_or_item)
                if key is not None:
                    batch.append(key)
                    self.stats.inc_value("distributed/seed/ids")
                if len(batch) >= self.seed_batch:
                    await self._record_ids(batch)
                    batch = []
                    await self._room()
                yield request_or_item
            await self._record_ids(batch)
            await self.redis.set(self.key("seeded"), self.worker)
            logger.info("Seeding done: %s ids", await self.redis.scard(self.key("ids")))
        finally:
            self._seeding = False

    async def _record_ids(self, keys: list[str]) -> None:
        if keys:
            await self.redis.sadd(self.key("ids"), *keys)

    def record_ids(self, keys: Iterable[str]) -> None:
        """Record keys a listing page found (records, next pages): the reconcile checks them.

        Call it before settling the page, so a worker killed in between loses nothing.
        """
        keys = list(keys)
        self.additions.add(self.key("ids"), keys)
        self.stats.inc_value("distributed/listing/ids", len(keys))

    async def _room(self) -> None:
        """Wait while the shared queue holds a high-water mark of requests (bounded memory)."""
        while await self._queue_length() >= self.high_water:
            await self._renew_lock()
            await asyncio.sleep(self.tick)

    async def _takeover(self) -> None:
        """Seed from a worker whose start() is over: requests go in through the engine."""
        engine = self.crawler.engine
        try:
            source = self.spider.distributed_source()
            async for request_or_item in self._seed(source):
                if isinstance(request_or_item, Request):
                    engine.crawl(request_or_item)
                else:
                    # Only start() hands items to the pipelines; the reconcile fetches these.
                    self.stats.inc_value("distributed/seed/items_deferred")
        finally:
            self._seeding = False

    def settle(self, key: str) -> None:
        """Record a key whose work is done without a record of its own: a listing page whose
        finds are recorded, a 404, a filtered record. The reconcile leaves it."""
        self.additions.add(self.key("settled"), [key])

    # -- lock and worker states ---------------------------------------------------------------
    async def _take_lock(self) -> bool:
        """Take the seed lock, or keep it; False while another worker holds it, or once the
        run has ended. The run's end marks it done, then deletes its keys, the lock and
        ``seeded`` among them: a lock found free may be an ended run's, which its new holder
        would seed again. Such a lock is let go at once, for the next run."""
        lock = self.key("lock")
        if not await self.redis.set(lock, self.worker, nx=True, px=self.lock_ttl_ms):
            return await self._holds_lock()
        if await self.redis.exists(self.key("done")):
            await self.redis.delete(lock)
            self._finished = True
            self._wake_engine()
            return False
        return True

    async def _holds_lock(self) -> bool:
        return await self.redis.get(self.key("lock")) == self.worker

    async def _renew_lock(self) -> None:
        await self._renew(keys=[self.key("lock")], args=[self.worker, self.lock_ttl_ms])

    def _busy(self) -> bool:
        # Keys recorded or settled but not in Redis yet: the reconcile must not look before.
        if self.additions.pending:
            return True
        engine = self.crawler.engine
        if engine is None or engine.spider is None or not engine.spider_is_idle():
            return True
        # Records the store pipeline took but still holds in a batch are not stored yet.
        stats = self.stats.get_stats()
        stored = received = 0
        for name, value in stats.items():
            if not name.startswith("store/"):
                continue
            outcome = name.rsplit("/", 1)[-1]
            if outcome in STORED_OUTCOMES:
                stored += value
            elif outcome == "received":
                received += value
        return stored < received

    async def _report_state(self) -> None:
        state = "busy" if self._busy() else f"idle:{self._left_downloader}"
        await self.redis.set(self.key(f"worker:{self.worker}"), state, px=self.worker_ttl_ms)

    async def _worker_states(self) -> list[str]:
        pattern = self.key("worker:*")
        keys = sorted([key async for key in self.redis.scan_iter(match=pattern, count=1000)])
        if not keys:
            return []
        # A state that expired between the scan and the read is None; the client answers str.
        return [state for state in await self.redis.mget(keys) if isinstance(state, str)]

    # -- the tick ----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self._tick()
            except Exception:
                # A lost Redis connection is logged and retried next tick, never a dead loop.
                logger.exception("Distributed tick failed")
                self.stats.inc_value("distributed/tick/error")

    async def _tick(self) -> None:
        if self._finished:
            return
        # Additions a failed send kept go again.
        self.additions.send()
        await self._report_state()
        if await self.redis.exists(self.key("done")):
            self._finished = True
            # An idle engine closes the spider at its next look, not 5 s later.
            self._wake_engine()
            return
        if await self._queue_length():
            self._wake_engine()
        if not await self._take_lock():
            return
        await self._renew_lock()
        if self._seeding or self._reconciling:
            return
        protocol = isinstance(self.spider, DistributedSpider)
        if protocol and not await self.redis.exists(self.key("seeded")):
            if not self._in_start:
                # A seeder died: this worker reads the source again (its start() is over).
                self._seeding = True
                self._run_in_background(self._takeover())
            return
        queued, states = await self._queue_length(), await self._worker_states()
        look = (queued, *states)
        quiet = queued == 0 and all(state.startswith("idle") for state in states)
        if not quiet or look != self._last_look:
            self._last_look = look if quiet else None
            return
        self._last_look = None
        if protocol:
            self._reconciling = True
            self._run_in_background(self._reconcile())
        else:
            await self._finish()

    def _wake_engine(self) -> None:
        """Have the engine look at the scheduler (the shared queue) and its idleness now.

        Scrapy looks again at an idle worker's scheduler only on its 5 s heartbeat; other
        workers push requests at any time (a listing's next page) and end the run at any
        time, and an idle worker would see either up to 5 s late.
        """
        wake_engine(self.crawler)

    def _run_in_background(self, coroutine: Any) -> None:
        future = asyncio.ensure_future(coroutine)
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled() and (error := future.exception()) is not None:
            self._step_failed(error)

    def _step_failed(self, error: BaseException) -> None:
        logger.error("Distributed step failed: %r", error)
        self.stats.inc_value("distributed/step/error")

    # -- reconcile and the end ----------------------------------------------------------
    async def _reconcile(self) -> None:
        """Push again what was recorded but neither stored nor settled; finish when none is."""
        try:
            done_rounds = int(await self.redis.get(self.key("rounds")) or 0)
            missing = await unaccounted_keys(
                self.redis,
                self.crawler,
                self.spider,
                self.key("ids"),
                self.key("settled"),
            )
            self.stats.inc_value("distributed/reconcile/checked")
            if not missing:
                await self._finish()
                return
            if done_rounds >= self.rounds:
                self.stats.inc_value("distributed/reconcile/unresolved", len(missing))
                logger.error(
                    "%d %s keys still missing after %d reconcile rounds (e.g. %s)",
                    len(missing),
                    self.spider.name,
                    done_rounds,
                    ", ".join(missing[:10]),
                )
                await self._finish()
                return
            await self.redis.incr(self.key("rounds"))
            self.stats.inc_value("distributed/reconcile/rounds")
            self.stats.inc_value("distributed/reconcile/requeued", len(missing))
            logger.warning(
                "Reconcile round %d: %d %s keys recorded but neither stored nor settled, "
                "queued again (e.g. %s)",
                done_rounds + 1,
                len(missing),
                self.spider.name,
                ", ".join(missing[:5]),
            )
            for key in missing:
                self.crawler.engine.crawl(self.spider.distributed_request(key))
        finally:
            self._reconciling = False

    async def _finish(self) -> None:
        """Mark the run done (every worker closes) and delete its keys."""
        await self.redis.set(self.key("done"), self.worker, px=self.worker_ttl_ms)
        await self.redis.delete(
            self._queue_key,
            self._dupefilter_key,
            self.key("ids"),
            self.key("settled"),
            self.key("seeded"),
            self.key("seeder"),
            self.key("rounds"),
            self.key("lock"),
        )
        self._finished = True
        self.stats.set_value("distributed/run/finished_by_me", 1)
        logger.info("Distributed run of %s is done", self.spider.name)
        self._wake_engine()
