"""Distributed settings: the add-on that puts a crawl on scrapy-redis, and per-worker caps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

KEY_PREFIX = "contentcrawl:%(spider)s"
# Slots whose limits belong to an account, not an IP: contentcrawl.middlewares.redis_limits
# spaces their requests across workers, so the per-worker slot rate is taken off.
ACCOUNT_SLOTS = ("igdb",)


def distributed_settings(
    redis_url: str, download_slots: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Settings that switch a project to distributed mode on ``redis_url`` (empty: none).

    ``download_slots`` (the project's ``DOWNLOAD_SLOTS``) comes back without the account-limited
    slots' per-worker ``rate``: their spacing is done across workers in Redis.
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
                slots[name].pop("rate", None)
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
