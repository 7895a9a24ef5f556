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

Every Redis call of the run is a ``redis.asyncio`` coroutine on the reactor's loop: none
blocks it. The parts: ``addon`` (settings), ``contract`` (what a spider gives), ``run``
(``DistributedRun``), ``reconcile`` (what is missing) and ``writes`` (what callbacks record).
A spider gets its run through the ``contentcrawl.signals.distributed_run_opened`` signal.
"""

from contentcrawl.extensions.distributed.addon import (
    KEY_PREFIX,
    DistributedAddon,
    cap_worker_requests,
    distributed_settings,
)
from contentcrawl.extensions.distributed.contract import DistributedSpider, record_of
from contentcrawl.extensions.distributed.run import DistributedRun

__all__ = [
    "KEY_PREFIX",
    "DistributedAddon",
    "DistributedRun",
    "DistributedSpider",
    "cap_worker_requests",
    "distributed_settings",
    "record_of",
]
