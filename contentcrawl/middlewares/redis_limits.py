"""Account limits shared by every worker: a Redis-held rate and open-request cap per slot.

Some limits belong to an account, not to an IP: IGDB allows 4 requests/s and 8 open requests
per Client-ID, however many machines use it. Per-worker download slots cannot hold such a
limit once several workers run, so this middleware makes each request of a limited slot
first take one of ``concurrency`` Redis-held leases (released when the request leaves the
downloader) and then a start time spaced ``1 / rate`` after the previous one in Redis (a
reservation, so no worker polls for it). Waits are asyncio timers, never a blocked reactor.
Per-IP limits (TMDB, MusicBrainz) stay in each worker's download slots.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured

from contentcrawl.redaction import redact_url

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# Take a lease if fewer than ARGV[1] unexpired ones exist (scores are expiry times, ms).
TAKE_LEASE = """
local now = redis.call('time')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', ms)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('zadd', KEYS[1], ms + tonumber(ARGV[2]), ARGV[3])
    redis.call('pexpire', KEYS[1], tonumber(ARGV[2]))
    return 1
end
return 0
"""
# Reserve the next start time ARGV[1] ms after the previous reservation; return the wait (ms).
RESERVE_START = """
local now = redis.call('time')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
local start = math.max(tonumber(redis.call('get', KEYS[1]) or ms), ms)
redis.call('set', KEYS[1], start + tonumber(ARGV[1]), 'px', tonumber(ARGV[1]) + 60000)
return start - ms
"""
LEASE_META = "redis_limit_lease"


def default_limits(crawler: Crawler) -> dict[str, dict[str, float]]:
    """IGDB's limits as the project configures them for one worker, now shared."""
    settings = crawler.settings
    return {
        "igdb": {
            "rate": settings.getfloat("IGDB_REQUESTS_PER_SECOND"),
            "concurrency": settings.getint("IGDB_CONCURRENCY"),
        }
    }


class RedisAccountLimits:
    """Holds ``REDIS_ACCOUNT_LIMITS`` (slot -> ``{rate, concurrency}``) across all workers.

    Off (``NotConfigured``) without ``REDIS_URL``. Place it last before the downloader
    (a high order number), so a request holds its lease only while it is really going out.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        url = settings.get("REDIS_URL")
        if not url:
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug(
                "Disabled RedisAccountLimits: REDIS_URL is not set, limits stay per worker"
            )
            raise NotConfigured
        from redis.asyncio import Redis

        self.crawler = crawler
        self.stats = crawler.stats
        self.limits = settings.getdict("REDIS_ACCOUNT_LIMITS") or default_limits(crawler)
        for slot, limit in self.limits.items():
            if float(limit.get("rate", 0)) <= 0 or int(limit.get("concurrency", 0)) < 1:
                raise ValueError(f"REDIS_ACCOUNT_LIMITS[{slot!r}] needs rate > 0, concurrency >= 1")
        # A lease outlives the longest download, so a dead worker's leases expire by themselves.
        self.lease_ms = int((settings.getfloat("DOWNLOAD_TIMEOUT") + 10.0) * 1000)
        self.poll = settings.getfloat("REDIS_LIMITS_POLL")
        self.redis = Redis.from_url(url, decode_responses=True)
        self._take_lease = self.redis.register_script(TAKE_LEASE)
        self._reserve = self.redis.register_script(RESERVE_START)
        self._releases: set[asyncio.Future[Any]] = set()
        logger.info(
            "Account limits in Redis %s: %s",
            redact_url(url),
            ", ".join(f"{slot} {conf}" for slot, conf in self.limits.items()),
        )
        crawler.signals.connect(self._request_left, signal=signals.request_left_downloader)
        crawler.signals.connect(self._spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def process_request(self, request: Request) -> None:
        slot = request.meta.get("download_slot")
        limit = None if slot is None else self.limits.get(slot)
        if limit is None:
            return
        leases = f"contentcrawl:limits:{slot}:open"
        lease = uuid.uuid4().hex
        waited = False
        while not await self._take_lease(
            keys=[leases], args=[int(limit["concurrency"]), self.lease_ms, lease]
        ):
            waited = True
            await asyncio.sleep(self.poll)
        request.meta[LEASE_META] = (leases, lease)
        interval_ms = max(1, round(1000.0 / float(limit["rate"])))
        wait_ms = int(
            await self._reserve(keys=[f"contentcrawl:limits:{slot}:next"], args=[interval_ms])
        )
        if wait_ms > 0:
            waited = True
            await asyncio.sleep(wait_ms / 1000.0)
        # The spacing is global now: the worker's AutoThrottle must not add its own.
        request.meta["autothrottle_dont_adjust_delay"] = True
        self.stats.inc_value(f"redis_limits/{slot}/granted")
        if waited:
            self.stats.inc_value(f"redis_limits/{slot}/waited")

    def _request_left(self, request: Request) -> None:
        held = request.meta.pop(LEASE_META, None)
        if held is None:
            return
        future = asyncio.ensure_future(self.redis.zrem(*held))
        self._releases.add(future)
        future.add_done_callback(self._releases.discard)

    async def _spider_closed(self) -> None:
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self.redis.aclose()
