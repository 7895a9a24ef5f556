"""Distributed runs: many workers share one Redis frontier (scrapy-redis), one seeds it.

With ``REDIS_URL`` set, requests go through scrapy-redis's ``Scheduler`` (a shared priority
queue) and ``RFPDupeFilter`` (shared fingerprints), so any number of ``scrapy crawl`` processes
or scrapyd jobs of the same spider consume one queue. scrapy-redis's ``RedisSpider`` relies on
``start_requests`` (gone since Scrapy 2.16); this extension does its two jobs instead:

* **Seeding.** A spider that implements ``DistributedSpider`` hands its id source to
  ``DistributedRun.start``: the worker that takes the Redis lock reads the source (export
  file, changes feed, dump) and pushes it in batches, never more than
  ``DISTRIBUTED_QUEUE_HIGH_WATER`` requests ahead of the consumers; the others consume at once.
  A seeder that dies loses its lock after ``DISTRIBUTED_LOCK_TTL``; another worker takes the
  source over and the shared dupefilter drops what was already pushed.
* **Listing pages.** A source that finds its ids by paging (IGDB id ranges, MusicBrainz
  searches and browses) gives each page a key of its own (``range:0-500``: a ``:`` marks a
  key with no record behind it). Parsing a page, the spider records the keys it found
  (``record_ids``) and only then settles the page's key (``settle``), so a worker killed at
  any point leaves either the page or what it found unaccounted for.
* **Staying alive and finishing.** ``spider_idle`` keeps a worker open while the run is not
  done, and every ``DISTRIBUTED_TICK`` an idle worker looks at the shared queue and the
  run's end again (Scrapy's engine would look every 5 s). When the queue is empty and
  every live worker has been idle, with its records flushed to the store, for two looks in
  a row, the lock holder reconciles: keys recorded (``<prefix>:ids``) minus records stored
  minus keys settled (pages done, 404s, filtered records) are pushed again
  (``DISTRIBUTED_RECONCILE_ROUNDS`` times at most). Then it marks the run done, every
  worker closes, and the run's keys are deleted.

Keys live under ``contentcrawl:<spider>:``; one run of a spider at a time per Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from scrapy import Request, signals
from scrapy.exceptions import DontCloseSpider, NotConfigured
from twisted.internet import task

from contentcrawl.redaction import redact_url
from contentcrawl.store import build_store

if TYPE_CHECKING:
    from typing import Self

    from redis import Redis
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

    from contentcrawl.store import Store

logger = logging.getLogger(__name__)

KEY_PREFIX = "contentcrawl:%(spider)s"
# Slots whose limits belong to an account, not an IP: contentcrawl.middlewares.redis_limits
# spaces their requests across workers, so the per-worker slot delay is taken off.
ACCOUNT_SLOTS = ("igdb",)
# Store lookups and Redis set reads per reconcile step.
RECONCILE_CHUNK = 1000
# Store outcomes of a record the store pipeline took (stats ``store/<collection>/<outcome>``).
STORED_OUTCOMES = frozenset({"inserted", "updated", "unchanged", "failed"})
# Renew the lock only if this worker still holds it (compare and expire, atomically).
RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def distributed_settings(
    redis_url: str, download_slots: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Settings that switch a project to distributed mode on ``redis_url`` (empty: none).

    ``download_slots`` (the project's ``DOWNLOAD_SLOTS``) comes back with the account-limited
    slots' per-worker delay at 0: their spacing is done across workers in Redis.
    """
    if not redis_url:
        return {}
    settings: dict[str, Any] = {
        "REDIS_URL": redis_url,
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
        "SCHEDULER_QUEUE_KEY": f"{KEY_PREFIX}:requests",
        "SCHEDULER_DUPEFILTER_KEY": f"{KEY_PREFIX}:dupefilter",
        # One worker closing must not flush the queue the others still consume; the run's
        # keys are deleted by DistributedRun once the whole run is done.
        "SCHEDULER_PERSIST": True,
        "SCHEDULER_FLUSH_ON_START": False,
        # 0: a non-blocking pop. A blocking one would stall the reactor thread.
        "SCHEDULER_IDLE_BEFORE_CLOSE": 0,
    }
    if download_slots is not None:
        slots = {name: dict(conf) for name, conf in download_slots.items()}
        for name in ACCOUNT_SLOTS:
            if name in slots:
                slots[name]["delay"] = 0.0
        settings["DOWNLOAD_SLOTS"] = slots
    return settings


def cap_worker_requests(settings: BaseSettings, *slots: str) -> None:
    """With ``REDIS_URL`` set, let a worker hold no more requests than its ``slots`` send at
    once, plus one waiting (``CONCURRENT_REQUESTS`` at spider priority: ``-s`` still wins).

    A worker takes from the shared queue every request its downloader may hold (32): for a
    slot that sends one request a second, or a listing whose next page its own callback
    pushes, that one worker keeps the whole queue and the others stay idle. For a spider's
    ``update_settings``; ``slots`` are those of its requests and of its image downloads.
    """
    if not settings.get("REDIS_URL"):
        return
    configured = settings.getdict("DOWNLOAD_SLOTS")
    held = sum(int(configured.get(slot, {}).get("concurrency", 1)) for slot in slots)
    settings.set("CONCURRENT_REQUESTS", held + 1, priority="spider")


class DistributedAddon:
    """Scrapy add-on: with ``REDIS_URL`` set (``.env``, environment or ``-s``), the crawl
    gets the shared scheduler and duplicate filter and the account slots' shared spacing."""

    def update_settings(self, settings: BaseSettings) -> None:
        wanted = distributed_settings(settings.get("REDIS_URL"), settings.getdict("DOWNLOAD_SLOTS"))
        for name, value in wanted.items():
            # "project": DOWNLOAD_SLOTS is a project setting, and equal priority replaces it.
            settings.set(name, value, priority="project")


def redis_client(url: str) -> Redis:
    """A blocking Redis client for ``url`` answering ``str`` (short, local round trips)."""
    from redis import Redis

    return Redis.from_url(url, decode_responses=True, socket_timeout=30)


@runtime_checkable
class DistributedSpider(Protocol):
    """What a spider gives a distributed run: its id source and how to rebuild a request.

    Optional: ``distributed_record(key)`` (the ``(collection, store key)`` a key's record is
    stored under, None for a key without a record), for spiders that store several
    collections; by default a key without ``:`` is a record of ``distributed_collection``.
    """

    distributed_collection: str

    def distributed_source(self) -> AsyncIterator[Any]:
        """The requests (and items) of the run's id source, as ``start()`` would yield them."""

    def distributed_key(self, request_or_item: Any) -> str | None:
        """The key of the work a request or item stands for: a record id, or a listing
        page's own key (with a ``:``); None for anything else."""

    def distributed_request(self, key: str) -> Request:
        """A fresh request for ``key`` that bypasses the dupefilter (reconcile)."""


def record_of(spider: Any, key: str) -> tuple[str, Any] | None:
    """The collection and store key of the record ``key`` stands for; None: a key only
    ``settle()`` accounts for (a listing page)."""
    own = getattr(spider, "distributed_record", None)
    if own is not None:
        return own(key)
    if ":" in key:
        return None
    # Numeric ids (TMDB, IGDB) are stored as integers.
    return spider.distributed_collection, int(key) if key.isdigit() else key


class DistributedRun:
    """Seeding under a Redis lock, keep-alive on ``spider_idle``, reconcile, run end.

    Off (``NotConfigured``) without ``REDIS_URL``. Settings: ``DISTRIBUTED_SEED_BATCH``,
    ``DISTRIBUTED_QUEUE_HIGH_WATER``, ``DISTRIBUTED_TICK``, ``DISTRIBUTED_LOCK_TTL``,
    ``DISTRIBUTED_WORKER_TTL``, ``DISTRIBUTED_RECONCILE_ROUNDS``.
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
        self.seed_batch = max(1, settings.getint("DISTRIBUTED_SEED_BATCH", 500))
        self.high_water = max(
            self.seed_batch, settings.getint("DISTRIBUTED_QUEUE_HIGH_WATER", 2000)
        )
        self.tick = settings.getfloat("DISTRIBUTED_TICK", 0.5)
        self.lock_ttl_ms = int(settings.getfloat("DISTRIBUTED_LOCK_TTL", 30.0) * 1000)
        self.worker_ttl_ms = int(settings.getfloat("DISTRIBUTED_WORKER_TTL", 30.0) * 1000)
        self.rounds = settings.getint("DISTRIBUTED_RECONCILE_ROUNDS", 2)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = crawler.stats
        self._renew = self.redis.register_script(RENEW_LOCK)
        self._looping: task.LoopingCall | None = None
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

    def _queue_length(self) -> int:
        # scrapy-redis's PriorityQueue is a sorted set.
        return int(self.redis.zcard(self._queue_key))

    # -- lifecycle ----------------------------------------------------------------------
    def spider_opened(self) -> None:
        logger.info(
            "Distributed mode: worker %s on %s, queue %s",
            self.worker,
            redact_url(self.url),
            self._queue_key,
        )
        self._report_state()
        self._looping = task.LoopingCall(self._on_tick)
        self._looping.start(self.tick, now=False)

    def spider_idle(self) -> None:
        """Keep the worker open while the run is not done: other workers may push more."""
        if self._finished or self.redis.exists(self.key("done")):
            self._finished = True
            return
        raise DontCloseSpider

    def spider_closed(self, reason: str) -> None:
        if self._looping is not None and self._looping.running:
            self._looping.stop()
        for future in self._background:
            future.cancel()
        self.redis.delete(self.key(f"worker:{self.worker}"))
        if self._holds_lock() and not self._finished:
            # Another worker takes seeding or reconciling over without waiting out the TTL.
            self.redis.delete(self.key("lock"))
        self.redis.close()

    def _request_left(self) -> None:
        self._left_downloader += 1

    # -- seeding --------------------------------------------------------------------------
    async def start(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Wrap a spider's id source: the lock holder seeds, the others wait for work."""
        self._in_start = True
        try:
            while not self._finished:
                if self.redis.exists(self.key("done")):
                    self._finished = True
                    return
                if self._take_lock():
                    if self._seeding or self.redis.exists(self.key("seeded")):
                        return
                    async for request_or_item in self._seed(source):
                        yield request_or_item
                    return
                if self._queue_length() or self.redis.exists(self.key("seeded")):
                    # Returning from start() makes the engine ask the scheduler at once.
                    return
                await asyncio.sleep(self.tick)
        finally:
            self._in_start = False

    async def _seed(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        self._seeding = True
        self.stats.set_value("distributed/seed/worker", 1)
        # Another worker's name here: it began seeding and died (its lock ran out).
        previous = self.redis.set(self.key("seeder"), self.worker, get=True)
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
                    self._record_ids(batch)
                    batch = []
                    await self._room()
                yield request_or_item
            self._record_ids(batch)
            self.redis.set(self.key("seeded"), self.worker)
            logger.info("Seeding done: %s ids", self.redis.scard(self.key("ids")))
        finally:
            self._seeding = False

    def _record_ids(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.redis.sadd(self.key("ids"), *keys)

    def record_ids(self, keys: Iterable[str]) -> None:
        """Record keys a listing page found (records, next pages): the reconcile checks them.

        Call it before settling the page, so a worker killed in between loses nothing.
        """
        keys = list(keys)
        self._record_ids(keys)
        self.stats.inc_value("distributed/listing/ids", len(keys))

    async def _room(self) -> None:
        """Wait while the shared queue holds a high-water mark of requests (bounded memory)."""
        while self._queue_length() >= self.high_water:
            self._renew_lock()
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
        self.redis.sadd(self.key("settled"), key)

    # -- lock and worker states ---------------------------------------------------------------
    def _take_lock(self) -> bool:
        lock = self.key("lock")
        if self.redis.set(lock, self.worker, nx=True, px=self.lock_ttl_ms):
            return True
        return self._holds_lock()

    def _holds_lock(self) -> bool:
        return self.redis.get(self.key("lock")) == self.worker

    def _renew_lock(self) -> None:
        self._renew(keys=[self.key("lock")], args=[self.worker, self.lock_ttl_ms])

    def _busy(self) -> bool:
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

    def _report_state(self) -> None:
        state = "busy" if self._busy() else f"idle:{self._left_downloader}"
        self.redis.set(self.key(f"worker:{self.worker}"), state, px=self.worker_ttl_ms)

    def _worker_states(self) -> list[str]:
        pattern = self.key("worker:*")
        keys = sorted(self.redis.scan_iter(match=pattern, count=1000))
        return [state for state in self.redis.mget(keys) if state is not None] if keys else []

    # -- the tick ----------------------------------------------------------------------------
    def _on_tick(self) -> None:
        try:
            self._tick()
        except Exception:
            # A lost Redis connection is logged and retried next tick, never a dead loop.
            logger.exception("Distributed tick failed")
            self.stats.inc_value("distributed/tick/error")

    def _tick(self) -> None:
        if self._finished:
            return
        self._report_state()
        if self.redis.exists(self.key("done")):
            self._finished = True
            # An idle engine closes the spider at its next look, not 5 s later.
            self._wake_engine()
            return
        if self._queue_length():
            self._wake_engine()
        if not self._take_lock():
            return
        self._renew_lock()
        if self._seeding or self._reconciling:
            return
        protocol = isinstance(self.spider, DistributedSpider)
        if protocol and not self.redis.exists(self.key("seeded")):
            if not self._in_start:
                # A seeder died: this worker reads the source again (its start() is over).
                self._seeding = True
                self._run_in_background(self._takeover())
            return
        look = (self._queue_length(), *self._worker_states())
        quiet = look[0] == 0 and all(state.startswith("idle") for state in look[1:])
        if not quiet or look != self._last_look:
            self._last_look = look if quiet else None
            return
        self._last_look = None
        if protocol:
            self._reconciling = True
            self._run_in_background(self._reconcile())
        else:
            self._finish()

    def _wake_engine(self) -> None:
        """Have the engine look at the scheduler (the shared queue) and its idleness now.

        Scrapy looks again at an idle worker's scheduler only on its 5 s heartbeat; other
        workers push requests at any time (a listing's next page) and end the run at any
        time, and an idle worker would see either up to 5 s late.
        """
        slot = getattr(self.crawler.engine, "_slot", None)
        if slot is not None and slot.closing is None:
            # The engine's own "send what the scheduler has" call, as engine.crawl() makes it.
            slot.nextcall.schedule()

    def _run_in_background(self, coroutine: Any) -> None:
        future = asyncio.ensure_future(coroutine)
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future[Any]) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("Distributed step failed: %r", future.exception())
            self.stats.inc_value("distributed/step/error")

    # -- reconcile and the end ----------------------------------------------------------
    async def _reconcile(self) -> None:
        """Push again what was recorded but neither stored nor settled; finish when none is."""
        try:
            done_rounds = int(self.redis.get(self.key("rounds")) or 0)
            missing = await asyncio.to_thread(self._missing_ids)
            self.stats.inc_value("distributed/reconcile/checked")
            if not missing:
                self._finish()
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
                self._finish()
                return
            self.redis.incr(self.key("rounds"))
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

    def _missing_ids(self) -> list[str]:
        """Keys in ``<prefix>:ids`` neither stored nor settled (blocking: a worker thread)."""
        missing: list[str] = []
        with build_store(self.crawler.settings) as store:
            chunk: list[str] = []
            for key in self.redis.sscan_iter(self.key("ids"), count=RECONCILE_CHUNK):
                chunk.append(key)
                if len(chunk) >= RECONCILE_CHUNK:
                    missing.extend(self._unaccounted(store, chunk))
                    chunk = []
            missing.extend(self._unaccounted(store, chunk))
        return missing

    def _unaccounted(self, store: Store, keys: list[str]) -> list[str]:
        if not keys:
            return []
        settled = self.redis.smismember(self.key("settled"), keys)
        missing: list[str] = []
        # collection -> store key -> run key, for one batched read per collection.
        wanted: dict[str, dict[Any, str]] = defaultdict(dict)
        for key, is_settled in zip(keys, settled, strict=True):
            if is_settled:
                continue
            record = record_of(self.spider, key)
            if record is None:
                # A listing page: nothing in the store says it was done, only settle().
                missing.append(key)
            else:
                collection, store_key = record
                wanted[collection][store_key] = key
        for collection, by_store_key in wanted.items():
            stored = stored_keys(store, collection, list(by_store_key))
            missing.extend(
                key for store_key, key in by_store_key.items() if store_key not in stored
            )
        return missing

    def _finish(self) -> None:
        """Mark the run done (every worker closes) and delete its keys."""
        self.redis.set(self.key("done"), self.worker, px=self.worker_ttl_ms)
        self.redis.delete(
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


def stored_keys(store: Store, collection: str, keys: list[Any]) -> set[Any]:
    """Which of ``keys`` the store holds, in one batched read."""
    # _read_existing is the batched key lookup every backend implements for upserts.
    return set(store._read_existing(collection, keys))
