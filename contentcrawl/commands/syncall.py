"""``scrapy syncall [daily|weekly|monthly]``: every source's scheduled jobs, in parallel, here.

One crawler per job in this process. Each source's jobs run one after another, since
they share the source's rate limit; the sources run side by side, each in its own download
slots. A failing job (an exception, a bad finish reason, a failed monitor) does not stop
the others; the exit status is 1 when any job failed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from twisted.internet.defer import Deferred

from contentcrawl.extensions.log_counts import counted_for, counted_for_no_crawl
from contentcrawl.extensions.log_redaction import register_configured_secrets
from contentcrawl.extensions.runs import run_counts
from contentcrawl.jobs import SCHEDULES, Job, by_source, jobs_for, jobs_named
from contentcrawl.redaction import install_log_redaction, redact_known
from contentcrawl.verdict import decided_verdict

if TYPE_CHECKING:
    import argparse

    from scrapy.crawler import Crawler, CrawlerProcessBase

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How one job ended."""

    job: Job
    problems: list[str]
    items: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class SyncAll:
    """Starts each source's job chain on a crawler process and collects the outcomes."""

    def __init__(self, process: CrawlerProcessBase, jobs: list[Job]) -> None:
        self.process = process
        self.jobs = jobs
        self.outcomes: list[Outcome] = []

    def start(self) -> None:
        """Start the first job of every source; each next job starts when its previous ends."""
        for chain in by_source(self.jobs).values():
            self._run(chain, 0)

    def _run(self, chain: list[Job], index: int) -> None:
        if index >= len(chain):
            return
        job = chain[index]
        try:
            crawler = self.process.create_crawler(job.spider)
            crawler.settings.setdict(job.settings, priority="spider")
            with counted_for(crawler):
                handle = self.process.crawl(crawler, **job.args)
        except Exception as error:
            self._finished(job, None, error)
            self._run(chain, index + 1)
            return

        # Registered after the process's own bookkeeping callback and before the one of
        # join(): the next crawl is tracked before join() looks again, so the process
        # does not stop between two jobs of a chain.
        def done(result: Any) -> Any:
            error = _error_of(result)
            self._finished(job, crawler, error)
            self._run(chain, index + 1)
            return None

        if isinstance(handle, Deferred):
            handle.addBoth(done)
        else:
            # AsyncCrawlerProcess's crawl() returns a Task, which ensure_future returns as is.
            asyncio.ensure_future(handle).add_done_callback(done)

    def _finished(self, job: Job, crawler: Crawler | None, error: BaseException | None) -> None:
        if error is not None or crawler is None or crawler.stats is None:
            # Printed as well as logged: a driver's error can quote a password it could not
            # parse (redis-py takes the first piece of one holding a "/" for the port).
            outcome = Outcome(job, [f"crashed: {type(error).__name__}: {redact_known(str(error))}"])
        else:
            verdict = decided_verdict(crawler)
            # No verdict: the spider never closed, so it never ran.
            problems = verdict.problems if verdict is not None else ["the spider did not open"]
            outcome = Outcome(job, problems, run_counts(crawler.stats.get_stats())["items"])
        self.outcomes.append(outcome)
        log = logger.info if outcome.ok else logger.error
        with counted_for_no_crawl():
            log(
                "Job %s: %s (%d items)",
                job.name,
                "ok" if outcome.ok else "; ".join(outcome.problems),
                outcome.items,
            )


def _error_of(result: Any) -> BaseException | None:
    """The exception a finished crawl ended with (a Failure, or a failed asyncio task)."""
    if isinstance(result, asyncio.Task):
        if result.cancelled():
            return asyncio.CancelledError()
        return result.exception()
    value = getattr(result, "value", None)
    return value if isinstance(value, BaseException) else None


class Command(ScrapyCommand):
    requires_project = True

    def syntax(self) -> str:
        return "[options] [daily|weekly|monthly]"

    def short_desc(self) -> str:
        return "Run every source's scheduled jobs in parallel in this process"

    def long_desc(self) -> str:
        return (
            "Run a schedule's jobs (contentcrawl/jobs.py; daily by default): the jobs of one "
            "source one after another, the sources in parallel. Exit status 1 if any failed."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--job",
            dest="job_names",
            action="append",
            default=[],
            metavar="NAME",
            help="run only this job, whatever its schedule (repeatable)",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) > 1 or (args and args[0] not in SCHEDULES):
            raise UsageError(f"give one schedule among {', '.join(SCHEDULES)}")
        if args and opts.job_names:
            raise UsageError("give a schedule or --job, not both")
        try:
            jobs = (
                jobs_named(opts.job_names)
                if opts.job_names
                else jobs_for(args[0] if args else "daily")
            )
        except KeyError as error:
            raise UsageError(str(error.args[0])) from None
        assert self.crawler_process is not None
        assert self.settings is not None
        # Before any crawler exists: a job can crash before its LogRedaction extension does.
        register_configured_secrets(self.settings)
        install_log_redaction()
        sync = SyncAll(self.crawler_process, jobs)
        sync.start()
        self.crawler_process.start()
        failed = [outcome for outcome in sync.outcomes if not outcome.ok]
        for outcome in sync.outcomes:
            status = "ok" if outcome.ok else "FAILED: " + "; ".join(outcome.problems)
            print(f"{outcome.job.name:<32} {outcome.items:>8} items  {status}")
        if failed or len(sync.outcomes) < len(jobs):
            self.exitcode = 1
