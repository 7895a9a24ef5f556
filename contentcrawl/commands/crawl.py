"""``scrapy crawl <spider>`` with an honest exit code: Scrapy's own exits 0 whatever the run.

The spider's ``-a`` arguments are checked before the crawl starts (one line and exit code
2 for an unknown or bad one); after the crawl, the exit code is the run's verdict
(``contentcrawl.verdict``), the one its run record and sync state go by.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from typing import TYPE_CHECKING, Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader
from scrapy.utils.log import configure_logging
from twisted.internet.defer import Deferred

from contentcrawl.extensions.log_redaction import register_configured_secrets
from contentcrawl.redaction import install_log_redaction, redact_known
from contentcrawl.sources.base import ContentSpider, SpiderArgumentError
from contentcrawl.verdict import EXIT_CODES, EXIT_FAILED, EXIT_USAGE, decided_verdict

if TYPE_CHECKING:
    import argparse

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def exit_codes_help() -> str:
    """The exit code table, as the command's help prints it."""
    return "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items())


class Command(ScrapyCrawlCommand):
    def long_desc(self) -> str:
        return (
            "Run a spider of the project. Unknown or bad -a arguments are refused before "
            f"the crawl starts. Exit status: {exit_codes_help()}. The run record in the "
            "store (runs) holds the same result, problems and exit code."
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        # A spider or argument refused here is said before the crawler process exists, so
        # before Scrapy's start-up banner: the operator sees one line.
        self.refusal = self._refusal(args, opts) if len(args) == 1 else None
        if self.refusal is not None:
            self.requires_crawler_process = False

    def _refusal(self, args: list[str], opts: argparse.Namespace) -> str | None:
        """Why the spider named in ``args`` cannot run with ``opts.spargs``, or None."""
        assert self.settings is not None
        spider_loader = get_spider_loader(self.settings)
        try:
            spidercls = spider_loader.load(args[0])
        except KeyError:
            names = spider_loader.list()
            close = difflib.get_close_matches(args[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"Unknown spider {args[0]!r}{hint}; spiders: {', '.join(names)}"
        if issubclass(spidercls, ContentSpider):
            try:
                spidercls.parse_arguments(opts.spargs)
            except SpiderArgumentError as error:
                return str(error)
        return None

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args:
            raise UsageError
        if len(args) > 1:
            raise UsageError("running 'scrapy crawl' with more than one spider is not supported")
        assert self.settings is not None
        # Before any crawler exists: a bad argument's line may quote a URL with a password.
        register_configured_secrets(self.settings)
        install_log_redaction()
        if self.refusal is not None:
            configure_logging(self.settings)
            logger.error("%s", self.refusal)
            self.exitcode = EXIT_USAGE
            return
        assert self.crawler_process is not None
        spidercls = self.crawler_process.spider_loader.load(args[0])
        crawler = self._create_crawler(spidercls)
        handle = self.crawler_process.crawl(crawler, **opts.spargs)
        _log_a_start_failure(handle)
        self.crawler_process.start()
        self.exitcode = exit_code(crawler, failed_to_start=self.crawler_process.bootstrap_failed)


def exit_code(crawler: Crawler, *, failed_to_start: bool) -> int:
    """The exit code of a finished crawl: its verdict's, or 1 when it did not run."""
    verdict = decided_verdict(crawler)
    if failed_to_start or verdict is None:
        return EXIT_FAILED
    return verdict.exit_code


def _log_a_start_failure(handle: Any) -> None:
    """Log a crawl that could not start (its store, an extension or the spider failed to
    open) as one ERROR line, the traceback at DEBUG; the exit code says it failed."""

    def report(error: BaseException) -> None:
        logger.error(
            "The crawl could not start: %s: %s", type(error).__name__, redact_known(str(error))
        )
        logger.debug("Why the crawl could not start", exc_info=error)

    if isinstance(handle, Deferred):

        def errback(failure: Any) -> None:
            report(failure.value)

        handle.addErrback(errback)
        return

    def done(task: asyncio.Task[None]) -> None:
        # Retrieved here, so asyncio does not print "Task exception was never retrieved".
        error = None if task.cancelled() else task.exception()
        if error is not None:
            report(error)

    handle.add_done_callback(done)
