"""TMDB start plans: what a ``start()`` goes through, kept in JOBDIR for a resumed run."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from scrapy import Request

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
