"""TMDB start plans: what a spider's ``start()`` goes through by mode, kept in JOBDIR."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from contentcrawl.sources.tmdb.exports import FRESH_LOOKUP_BATCH, fetched_since
from contentcrawl.sources.tmdb.listings import change_windows, missing_ids, stale_ids

if TYPE_CHECKING:
    from scrapy import Request

    from contentcrawl.sources.tmdb.spider import TmdbSpider

    Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The key of the start's plan in a JOBDIR's spider state.
PLAN_STATE = "tmdb_plan"

Step = TypeVar("Step")


def not_handed_over(plan: dict[str, Any], steps: Sequence[Step]) -> Iterator[Step]:
    """The steps of a start plan past those handed over, each counted as it is taken."""
    for index in range(plan["handed_over"], len(steps)):
        plan["handed_over"] = index + 1
        yield steps[index]


# A plan is what a ``start()`` goes through (``ids`` for detail requests, whatever else its
# mode needs) and ``handed_over``, how much of it went to the engine. With JOBDIR it is kept
# in the job's state: a run resuming a stopped one goes on with that run's plan past what it
# handed over (waiting in the job's queue, or done), rather than make a new one from a
# store, a clock or a daily export that have moved on since, and fetch again what was
# fetched.
def new_plan(job_state: dict[str, Any] | None, kind: str, **parts: Any) -> dict[str, Any]:
    """A plan of ``kind`` (the mode, and what makes two plans of it the same), kept in
    ``job_state`` (JOBDIR) when there is one."""
    plan = {"kind": kind, "handed_over": 0, **parts}
    if job_state is not None:
        job_state[PLAN_STATE] = plan
    return plan


def resumed_plan(
    job_state: dict[str, Any] | None, kind: str, logger: Logger
) -> dict[str, Any] | None:
    """The plan of ``kind`` of the stopped run this one resumes (JOBDIR), if any."""
    plan = job_state.get(PLAN_STATE) if job_state is not None else None
    if plan is None or plan["kind"] != kind:
        return None
    logger.info(
        "Resuming the stopped run's %s (JOBDIR): %d handed over already",
        kind,
        plan["handed_over"],
    )
    return plan


class Backlog:
    """This run's detail requests handed to the engine and not answered yet, at most ``size``.

    An export holds about a million ids: queueing them all at once would put a million
    requests in the scheduler's memory.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.outstanding = 0
        # Marks this run's own requests: a resumed run's answers to the stopped run's
        # requests (JOBDIR) take no room they did not take.
        self.token = secrets.token_hex(8)
        self._room = asyncio.Event()

    async def wait_for_room(self) -> None:
        """Return once fewer than ``size`` requests are unanswered."""
        while self.outstanding >= self.size:
            self._room.clear()
            await self._room.wait()

    def take(self, request: Request) -> None:
        """Count ``request`` as handed over and unanswered."""
        request.meta["tmdb_backlog"] = self.token
        self.outstanding += 1

    def answered(self, request: Request | None) -> None:
        """Make room when ``request`` is one this backlog counted."""
        if request is not None and request.meta.pop("tmdb_backlog", None) == self.token:
            self.outstanding -= 1
            self._room.set()


class ProgressLine:
    """The INFO progress line of a run that knows how many records it will fetch."""

    def __init__(self, logger: Logger, collection: str, interval: float) -> None:
        self.logger = logger
        self.collection = collection
        self.interval = interval
        self.done = 0
        self.total: int | None = None
        self.started = time.monotonic()
        self.next_line = 0.0

    def expect(self, total: int) -> None:
        """The number of records this run will fetch."""
        self.total = total
        self.started = time.monotonic()

    def record_done(self) -> None:
        """Count a record; log the line when ``interval`` passed or the last one came."""
        self.done += 1
        if self.total is None:
            return
        now = time.monotonic()
        if now < self.next_line and self.done < self.total:
            return
        self.next_line = now + self.interval
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        remaining = max(self.total - self.done, 0)
        eta = timedelta(seconds=round(remaining / rate)) if rate else "?"
        self.logger.info(
            "Progress: %d/%d %s (%.1f%%), %.1f records/s, ETA %s",
            self.done,
            self.total,
            self.collection,
            100.0 * self.done / max(self.total, 1),
            rate,
            eta,
        )


class StartPlanner:
    """What a TMDB spider's ``start()`` goes through, by mode: its plan (kept in JOBDIR for
    a resumed run), gone through as changes or list requests, or handed over as detail
    requests through the spider's backlog.

    Modes (``-a mode=``): ``export`` (every id of TMDB's daily ID export), ``changes`` (ids
    changed since the last clean sync, falling back to ``export``), ``lists`` (popular, new,
    trending), ``ids`` (``-a ids=550,551`` or ``-a ids_file=…``), ``refresh`` (stored records
    older than ``-a older_than_days=N``), ``missing`` (ids other stored records reference)
    and ``failed`` (replays the dead letters of earlier runs).
    """

    def __init__(self, spider: TmdbSpider) -> None:
        self.spider = spider
        # The ids asked for: each once (a resumed run's too, restored from JOBDIR).
        self.queued: set[int] = set()

    def source(self) -> AsyncIterator[Any]:
        """The requests (and items) the spider's mode finds its ids with."""
        modes = {
            "export": self.start_export,
            "changes": self.start_changes,
            "lists": self.start_lists,
            "ids": self.start_ids,
            "refresh": self.start_refresh,
            "missing": self.start_missing,
            "failed": self.spider.replay_failures,
        }
        return modes[self.spider.mode]()

    def _plan(self, kind: str, **parts: Any) -> dict[str, Any]:
        """The resumed run's plan of ``kind``, else a new one of ``parts``."""
        spider = self.spider
        return resumed_plan(spider.job_state, kind, spider.logger) or new_plan(
            spider.job_state, kind, **parts
        )

    async def start_ids(self) -> AsyncIterator[Any]:
        """``mode=ids``: the ids given."""
        # Other ids with the same JOBDIR are another job: they do not resume this one.
        given = ",".join(map(str, self.spider.ids)).encode()
        kind = f"ids:{hashlib.sha1(given).hexdigest()[:16]}"  # noqa: S324 - no secret
        async for request in self.detail_requests(self._plan(kind, ids=self.spider.ids)):
            yield request

    async def start_export(self) -> AsyncIterator[Any]:
        """``mode=export``: the latest export's records, or detail requests for its ids."""
        spider = self.spider
        if spider.export_has_records:
            # Read again from its start when resumed, as a dump is: a record already stored
            # costs a read, not a write.
            paths, day = await spider.export.fetch()
            async for item in spider.export.records(paths, spider.to_item, spider.count_misshapen):
                yield item
            if spider.export.failed:
                return
        else:
            plan = resumed_plan(spider.job_state, "export", spider.logger) or new_plan(
                spider.job_state, "export", **await spider.export.plan_parts()
            )
            day = date.fromisoformat(plan["day"])
            # A record fetched on or after the export's day is as new as the export: a run
            # after one that was killed (no JOBDIR) fetches only what that one did not store.
            fresh_since = f"{day.isoformat()}T00:00:00Z"
            async for request in self.detail_requests(plan, fresh_since=fresh_since):
                yield request
            skipped = spider.crawler.stats.get_value(f"{spider.stat_prefix}/export/skipped_fresh")
            if skipped:
                spider.logger.info(
                    "Export of %s: %d ids skipped, their records fetched since %s",
                    day,
                    skipped,
                    day,
                )
        if spider.limit is None:
            spider.sync.stage(f"{spider.name}/export", {"date": day.isoformat()})
            if spider.has_changes:
                spider.sync.stage(f"{spider.name}/changes", {"synced_through": day.isoformat()})

    async def start_changes(self) -> AsyncIterator[Any]:
        """``mode=changes``: the changes since the last clean sync, else an export."""
        spider = self.spider
        store_name = f"{spider.name}/changes"
        state = await spider.sync.load(store_name)
        today = datetime.now(UTC).date()
        since = date.fromisoformat(state["synced_through"]) if state else None
        if since is None:
            spider.logger.info("%s: no previous sync, running an export instead", spider.name)
        elif (today - since).days > spider.changes_max_age:
            spider.logger.warning(
                "%s: last sync %s is older than TMDB keeps changes for (%d days): "
                "running an export instead",
                spider.name,
                since,
                spider.changes_max_age,
            )
            since = None
        if since is None:
            spider.crawler.stats.set_value(f"{spider.stat_prefix}/changes/fallback_to_export", 1)
            async for request_or_item in self.start_export():
                yield request_or_item
            return
        # Resumed (JOBDIR) on a later day, the windows stay those of the stopped run: their
        # later pages and ids wait in its queue.
        plan = self._plan(f"changes:{since.isoformat()}", until=today.isoformat())
        until = date.fromisoformat(plan["until"])
        windows = change_windows(since, until)
        spider.logger.info("Changes since %s: %d window(s)", since, len(windows))
        for start, end in not_handed_over(plan, windows):
            yield spider.changes_request(start, end, 1)
        if spider.limit is None:
            spider.sync.stage(store_name, {"synced_through": until.isoformat()})

    async def start_lists(self) -> AsyncIterator[Any]:
        """``mode=lists``: the first page of each of the kind's lists."""
        for path in not_handed_over(self._plan("lists"), self.spider.list_paths):
            yield self.spider.list_request(path, 1)

    async def start_refresh(self) -> AsyncIterator[Any]:
        """``mode=refresh``: the stored records not fetched for ``older_than_days``."""
        spider = self.spider
        assert spider.older_than_days is not None  # from_crawler settles it
        plan = resumed_plan(spider.job_state, "refresh", spider.logger) or new_plan(
            spider.job_state,
            "refresh",
            ids=await stale_ids(
                spider.crawler, spider.item_class, spider.older_than_days, spider.logger
            ),
        )
        async for request in self.detail_requests(plan):
            yield request

    async def start_missing(self) -> AsyncIterator[Any]:
        """``mode=missing``: the ids stored records reference that the store lacks."""
        spider = self.spider
        plan = resumed_plan(spider.job_state, "missing", spider.logger) or new_plan(
            spider.job_state,
            "missing",
            ids=await missing_ids(
                spider.crawler, spider.item_class, spider.references, spider.logger
            ),
        )
        async for request in self.detail_requests(plan):
            yield request

    async def detail_requests(
        self, plan: dict[str, Any], *, fresh_since: str | None = None
    ) -> AsyncIterator[Request]:
        """Detail requests for ``plan["ids"]`` past those handed over, from ``start()``, never
        more than ``TMDB_START_BACKLOG`` unanswered; with ``fresh_since``, none for an id
        the store holds a record of fetched since then (counted ``export/skipped_fresh``).
        """
        spider = self.spider
        ids = plan["ids"]
        spider.progress.expect(len(ids) - plan["handed_over"])
        fresh: set[int] = set()
        looked_up_to = plan["handed_over"]
        for index in range(plan["handed_over"], len(ids)):
            if self.limit_reached():
                return
            if fresh_since is not None and index >= looked_up_to:
                looked_up_to = min(index + FRESH_LOOKUP_BATCH, len(ids))
                fresh = await fetched_since(
                    spider.crawler,
                    spider.item_class.collection,
                    ids[index:looked_up_to],
                    fresh_since,
                )
            if ids[index] in fresh:
                plan["handed_over"] = index + 1
                spider.crawler.stats.inc_value(f"{spider.stat_prefix}/export/skipped_fresh")
                if spider.progress.total is not None:
                    spider.progress.total -= 1
                continue
            if spider.distributed is None:
                # Distributed, answers come back to other workers: the shared queue's length
                # bounds it.
                await spider.backlog.wait_for_room()
            request = self.detail_request(ids[index])
            # Counted as the engine takes it: a run stopped while waiting for room resumes
            # with this id.
            plan["handed_over"] = index + 1
            if request is None:
                continue
            if spider.distributed is None:
                spider.backlog.take(request)
            yield request

    def detail_requests_now(self, ids: Iterable[int]) -> Iterator[Request]:
        """Detail requests for ``ids`` not asked for yet, up to ``-a limit`` (from callbacks)."""
        for tmdb_id in ids:
            if self.limit_reached():
                return
            request = self.detail_request(tmdb_id)
            if request is not None:
                yield request

    def limit_reached(self) -> bool:
        """Whether ``-a limit`` ids were asked for already."""
        return self.spider.limit is not None and len(self.queued) >= self.spider.limit

    def detail_request(self, tmdb_id: int) -> Request | None:
        """The detail request of ``tmdb_id``, counted; None when it was asked for already."""
        if tmdb_id in self.queued:
            return None
        self.queued.add(tmdb_id)
        self.spider.crawler.stats.inc_value(f"{self.spider.stat_prefix}/requested")
        return self.spider.record_request(tmdb_id)
