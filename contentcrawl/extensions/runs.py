"""Run history and dead letters: a record per crawl in ``runs``, failed requests in ``failures``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured

from contentcrawl.extensions.crawl_store import crawl_store
from contentcrawl.failures import REPLAY_META, dead_letter_for
from contentcrawl.redaction import MASK, redact_text
from contentcrawl.signals import request_gave_up
from contentcrawl.verdict import run_verdict

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from contentcrawl.store import Store

logger = logging.getLogger(__name__)

# Spider arguments whose name says they carry a credential: their value is never kept.
SECRET_ARGUMENT = re.compile(r"key|token|secret|password|passwd|auth|credential", re.IGNORECASE)
# Arguments scrapyd adds to every job; the job id is kept as the run's ``job``.
SCRAPYD_ARGUMENTS = ("_job", "_version")
# A replayed request answered with one of these is done with: the record came back, or
# the source says it is gone (a deleted record is no failure).
ANSWERED_GONE = (404, 410)


def run_time(moment: datetime | None = None) -> str:
    """UTC time (now by default), ISO-8601 to the millisecond: runs started in one second stay
    ordered."""
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A running record is given up for dead after this many heartbeat intervals without one.
HEARTBEAT_MISSES = 3
# Newest run records looked at for dead ones: a killed run is found by the next runs.
KILLED_SCAN = 500


def process_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def why_dead(
    run: dict[str, Any], host: str, heartbeat_interval: float, now: datetime
) -> str | None:
    """Why a ``running`` record's process is gone (None while it may be alive).

    On this host its pid tells at once; elsewhere (and for a reused pid) a heartbeat older
    than ``HEARTBEAT_MISSES`` intervals does. A record without heartbeat (written before
    heartbeats were kept) is judged by its start.
    """
    pid = run.get("pid")
    if run.get("host") == host and isinstance(pid, int) and not process_alive(pid):
        return f"process {pid} on {host} is gone"
    if heartbeat_interval <= 0:
        return None
    last = run.get("heartbeat_at") or run.get("started_at")
    if not isinstance(last, str):
        return None
    silent = (now - datetime.fromisoformat(last.replace("Z", "+00:00"))).total_seconds()
    if silent > HEARTBEAT_MISSES * heartbeat_interval:
        return f"no heartbeat for {silent:.0f} s"
    return None


def mark_killed(store: Store, host: str, heartbeat_interval: float) -> list[dict[str, Any]]:
    """Mark the ``running`` records whose process is gone (``kill -9``, a crash, a lost host)
    as ``killed``; returns them. Blocking: run it off the reactor thread."""
    now = datetime.now(UTC)
    killed = []
    for run in store.recent_runs(limit=KILLED_SCAN):
        if run.get("result") != "running":
            continue
        why = why_dead(run, host, heartbeat_interval, now)
        if why is None:
            continue
        run.update(
            result="killed",
            finish_reason="killed",
            finished_at=run.get("heartbeat_at") or run.get("started_at"),
            problems=[why],
        )
        store.add_run(run)
        killed.append(run)
    return killed


def spider_arguments(spider: Spider) -> dict[str, str] | None:
    """The spider's ``-a`` arguments, credentials masked; None when the spider keeps none.

    Read from ``spider.arguments`` (``ContentSpider`` keeps its keyword arguments there).
    """
    arguments = getattr(spider, "arguments", None)
    if arguments is None:
        return None
    return {
        name: MASK if SECRET_ARGUMENT.search(name) else redact_text(str(value))
        for name, value in arguments.items()
        if name not in SCRAPYD_ARGUMENTS
    }


def run_counts(stats: dict[str, Any]) -> dict[str, int]:
    """The run record's counters, summed from a crawl's stats."""

    def total(prefix: str, suffix: str = "") -> int:
        return sum(
            int(value)
            for key, value in stats.items()
            if key.startswith(prefix) and key.endswith(suffix) and isinstance(value, int | float)
        )

    return {
        "items": int(stats.get("item_scraped_count", 0)),
        "inserted": total("store/", "/inserted"),
        "updated": total("store/", "/updated"),
        "unchanged": total("store/", "/unchanged"),
        "store_failed": total("store/", "/failed"),
        "dropped": total("validation/dropped/"),
        "requests": int(stats.get("downloader/request_count", 0)),
        "retries": int(stats.get("retry/count", 0)),
        "gave_up": int(stats.get("retry/max_reached", 0)),
        "429s": int(stats.get("downloader/response_status_count/429", 0)),
        "503s": int(stats.get("downloader/response_status_count/503", 0)),
        "errors": int(stats.get("log_count/ERROR", 0)),
    }


class RunRecorder:
    """Writes a run record per crawl and keeps the requests it gave up on as dead letters.

    At spider open a ``running`` record is saved (a crash leaves it so, which ``status``
    shows); at close it is completed from the stats. Every ``request_gave_up`` of one of
    the spider's own requests becomes a failure record (``contentcrawl.failures``);
    a replayed request (``meta["dead_letter"]``) that gets an answer clears its failure.
    Switch off with ``RUNS_ENABLED = False``.
    """

    def __init__(self, crawler: Crawler) -> None:
        if not crawler.settings.getbool("RUNS_ENABLED"):
            # Switched off is no news: Scrapy logs a NotConfigured reason as a WARNING.
            logger.debug("Disabled RunRecorder: RUNS_ENABLED is off")
            raise NotConfigured
        self.crawler = crawler
        self.retry_codes = {int(code) for code in crawler.settings.getlist("RETRY_HTTP_CODES")}
        self.run: dict[str, Any] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self.answered: set[str] = set()
        self._started = time.monotonic()
        self.heartbeat_interval = crawler.settings.getfloat("RUNS_HEARTBEAT_INTERVAL")
        self._stop_heartbeat = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(self.request_gave_up, signal=request_gave_up)
        crawler.signals.connect(self.response_received, signal=signals.response_received)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def _new_run(self, spider: Spider) -> dict[str, Any]:
        arguments = getattr(spider, "arguments", None) or {}
        # scrapyd's job id; Scrapy also sets every spider argument as an attribute.
        job = arguments.get("_job") or getattr(spider, "_job", None)
        self._started = time.monotonic()
        started_at = run_time()
        return {
            "id": str(job or uuid.uuid4().hex),
            "spider": spider.name,
            "job": job,
            "arguments": spider_arguments(spider),
            "started_at": started_at,
            "finished_at": None,
            "result": "running",
            # Who runs it and when it last showed life: a record left ``running`` by a
            # process that is gone is marked ``killed`` (``mark_killed``).
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat_at": started_at,
        }

    def _store_unavailable(self) -> bool:
        """Whether the store pipeline found the store unreachable: no write would succeed,
        and each would wait out its own connection timeout."""
        return bool(self.crawler.stats.get_value("store/connection/unavailable"))

    async def spider_opened(self, spider: Spider) -> None:
        self.run = self._new_run(spider)
        if self._store_unavailable():
            return

        def open_run(store: Store) -> None:
            for run in mark_killed(store, self.run["host"], self.heartbeat_interval):
                self.crawler.stats.inc_value("runs/killed/marked")
                logger.warning(
                    "Run %s of %s was left running (%s): marked killed",
                    run["id"],
                    run["spider"],
                    run["problems"][0],
                )
            store.add_run(dict(self.run))

        await self._write(open_run)
        if self.heartbeat_interval > 0:
            self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        """Refresh the record's ``heartbeat_at`` every ``RUNS_HEARTBEAT_INTERVAL`` seconds."""
        while True:
            try:
                await asyncio.wait_for(self._stop_heartbeat.wait(), self.heartbeat_interval)
                return
            except TimeoutError:
                pass
            self.run["heartbeat_at"] = run_time()
            await self._write(lambda store: store.add_run(dict(self.run)))

    def request_gave_up(self, request: Request, reason: str, attempts: int, spider: Spider) -> None:
        failure = dead_letter_for(request, reason=reason, attempts=attempts, spider=spider)
        if failure["id"] is None and failure["request"] is None:
            # Neither a record nor a request to replay (a listing page whose cursor was not
            # advanced): the next run covers it; the spider has logged it.
            self.crawler.stats.inc_value("failures/not_kept")
            return
        self.failures[failure["key"]] = failure
        self.answered.discard(failure["key"])
        self.crawler.stats.inc_value("failures/recorded")

    def response_received(self, response: Response, request: Request) -> None:
        key = request.meta.get(REPLAY_META)
        if key is None:
            return
        if response.status in ANSWERED_GONE or (
            response.status < 400 and response.status not in self.retry_codes
        ):
            self.answered.add(key)

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        if self._heartbeat is not None:
            # Let a heartbeat being written land before the final record, not after it.
            self._stop_heartbeat.set()
            await self._heartbeat
        stats = self.crawler.stats.get_stats()
        counts = run_counts(stats)
        verdict = run_verdict(self.crawler, reason)
        problems = verdict.problems
        cleared = sorted(self.answered - set(self.failures))
        if not self.run:
            # The crawl failed before its spider opened.
            self.run = self._new_run(spider)
        self.run.update(
            finished_at=run_time(),
            duration_s=round(time.monotonic() - self._started, 3),
            finish_reason=reason,
            result=verdict.result,
            problems=problems,
            exit_code=verdict.exit_code,
            failures_recorded=len(self.failures),
            failures_cleared=len(cleared),
            **counts,
        )
        if cleared:
            self.crawler.stats.set_value("failures/cleared", len(cleared))

        def save(store: Store) -> None:
            for failure in self.failures.values():
                store.put_failure(failure)
            store.clear_failures(cleared)
            store.add_run(dict(self.run))

        if self._store_unavailable():
            self.crawler.stats.set_value("runs/store/failed", 1)
        else:
            await self._write(save)
        log = logger.warning if problems else logger.info
        log(
            "Run %s of %s: %s (%s); %d items, %d inserted, %d updated, %d unchanged, "
            "%d dropped, %d requests, %d retries, %d failures kept, %d cleared",
            self.run["id"],
            spider.name,
            self.run["result"],
            "; ".join(problems) or reason,
            counts["items"],
            counts["inserted"],
            counts["updated"],
            counts["unchanged"],
            counts["dropped"],
            counts["requests"],
            counts["retries"],
            len(self.failures),
            len(cleared),
        )

    async def _write(self, action: Callable[[Store], None]) -> None:
        """Run ``action(store)`` on the crawl's store; a store error is logged, never raised."""
        try:
            await crawl_store(self.crawler).run(action)
        except Exception as error:
            self.crawler.stats.inc_value("runs/store/failed")
            logger.error("Could not save the run record: %s", redact_text(str(error)))
