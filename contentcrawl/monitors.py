"""Spidermon monitors of every crawl: at close, and every few minutes on long runs.

Enabled by the ``SPIDERMON_*`` settings in ``contentcrawl/settings.py``. The monitors are
spidermon's view of the run's verdict (``contentcrawl.verdict``): one monitor per check, so
a monitor fails exactly when the run record, the exit code and the sync state say the run
failed for that reason. At close each monitor reads the verdict decided when the spider
closed; the periodic suite runs the checks that make sense mid-run on the live stats.

The report is quiet: spidermon's per-monitor lines go to DEBUG, and the suite logs one
line of its own: INFO when every monitor passed, ERROR naming the failed ones (WARNING
mid-run: a periodic failure is a warning, not an error of the run). Each suite counts its
results in the stats (``monitors/<phase>/passed|failed``, ``monitors/<monitor>/failed``).
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any, ClassVar

from spidermon import Monitor, MonitorSuite, monitors
from spidermon.core.actions import Action

from contentcrawl.verdict import CHECKS, run_verdict

logger = logging.getLogger(__name__)

# spidermon 1.27 reports through Spider.log(), deprecated in Scrapy 2.19: one warning per
# run in every crawl's log, about code that is not ours.
warnings.filterwarnings("ignore", message=r"Spider\.log\(\) is deprecated", module="spidermon")

# spidermon's report lines start so (spidermon.contrib.scrapy.runners.LOG_MESSAGE_HEADER).
SPIDERMON_PREFIX = "[Spidermon]"


def stat_name(monitor_name: str) -> str:
    """A monitor's name as a stat key segment: ``Finish Reason Monitor`` -> ``finish_reason``."""
    slug = re.sub(r"[^a-z0-9]+", "_", monitor_name.lower()).strip("_")
    return slug.removesuffix("_monitor")


def failure_message(error: str | None) -> str:
    """The message of a failed monitor, from the traceback spidermon keeps."""
    last = (error or "").strip().splitlines()[-1:] or ["no message"]
    return last[0].removeprefix("AssertionError: ")


class SpidermonReportToDebug(logging.Filter):
    """Logs spidermon's report (a line per monitor and step, failures with their tracebacks)
    at DEBUG: 25 lines a run at INFO, and ERROR lines that would count as the run's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(SPIDERMON_PREFIX):
            record.levelno = logging.DEBUG
            record.levelname = "DEBUG"
        return True


class VerdictMonitor(Monitor):
    """Fails when the verdict's check ``check`` (a key of ``contentcrawl.verdict.CHECKS``)
    failed: at close the decided verdict's, mid-run (``live``) the check on the live stats."""

    check: ClassVar[str]
    live: ClassVar[bool] = False

    @monitors.name("Should pass the run's check")
    def test_check(self) -> None:
        crawler = self.data.crawler
        if self.live:
            problem = CHECKS[self.check](None, self.data.stats, crawler.settings)
        else:
            reason = str(self.data.stats.get("finish_reason", "unknown"))
            problem = run_verdict(crawler, reason).failed.get(self.check)
        if problem is not None:
            # Monitors are unittest cases: spidermon reports the failure's message.
            self.fail(problem)


@monitors.name("Finish Reason Monitor")
class FinishReasonMonitor(VerdictMonitor):
    """The crawl finished (``finished``): not stopped, closed early or crashed."""

    check = "finish_reason"


@monitors.name("Extracted Items Monitor")
class ExtractedItemsMonitor(VerdictMonitor):
    """At least ``SPIDERMON_MIN_ITEMS`` records (0 by default: a quiet day is fine)."""

    check = "extracted_items"


@monitors.name("Retry Count Monitor")
class RetryCountMonitor(VerdictMonitor):
    """No more requests given up than ``SPIDERMON_MAX_RETRIES``; retried pushback is fine."""

    check = "retry_count"


@monitors.name("Error Count Monitor")
class ErrorCountMonitor(VerdictMonitor):
    """No more errors logged than ``SPIDERMON_MAX_ERRORS``."""

    check = "error_count"


@monitors.name("Validation Drops Monitor")
class ValidationDropsMonitor(VerdictMonitor):
    """Records dropped by validation stay below ``MONITOR_MAX_DROPPED_SHARE`` of all records."""

    check = "validation_drops"


@monitors.name("Store Failures Monitor")
class StoreFailuresMonitor(VerdictMonitor):
    """No record the store would not take (``store/<collection>/failed``)."""

    check = "store_failures"


@monitors.name("Import Failed Monitor")
class ImportFailedMonitor(VerdictMonitor):
    """No source said its import failed (``<source>/import/failed``)."""

    check = "import_failed"


class RecordMonitorResults(Action):
    """Counts the suite's passed and failed monitors in the stats and logs its one line."""

    phase: ClassVar[str] = "close"
    failure_level: ClassVar[int] = logging.ERROR

    def run_action(self) -> None:
        stats = self.data["crawler"].stats
        passed = self.result.monitors_passed_results
        failed = self.result.monitors_failed_results
        stats.inc_value(f"monitors/{self.phase}/passed", len(passed))
        stats.inc_value(f"monitors/{self.phase}/failed", len(failed))
        failures = []
        for outcome in failed:
            name = stat_name(outcome.item.monitor_name)
            stats.inc_value(f"monitors/{name}/failed")
            failures.append(f"{name} ({failure_message(outcome.error)})")
        if failures:
            logger.log(
                self.failure_level, "Monitors failed at %s: %s", self.phase, "; ".join(failures)
            )
        elif self.phase == "close":
            logger.info("Monitors: all %d passed", len(passed))


class RecordPeriodicResults(RecordMonitorResults):
    """``RecordMonitorResults`` for the periodic suite: silent when all pass."""

    phase: ClassVar[str] = "periodic"
    failure_level: ClassVar[int] = logging.WARNING


class QuietMonitorSuite(MonitorSuite):
    """A suite whose spidermon report goes to DEBUG (``SpidermonReportToDebug``)."""

    def init_data(self, data: Any) -> None:
        super().init_data(data)
        spider_logger = logging.getLogger(data["spider"].name)
        if not any(isinstance(each, SpidermonReportToDebug) for each in spider_logger.filters):
            spider_logger.addFilter(SpidermonReportToDebug())


def _live(monitor: type[VerdictMonitor]) -> type[VerdictMonitor]:
    """The mid-run twin of a close monitor: the same check on the live stats."""
    return type(monitor.__name__, (monitor,), {"live": True, "__doc__": monitor.__doc__})


class CloseMonitorSuite(QuietMonitorSuite):
    """Run at spider close: the checks of the run's verdict."""

    monitors: ClassVar[list[Any]] = [
        FinishReasonMonitor,
        ExtractedItemsMonitor,
        RetryCountMonitor,
        ErrorCountMonitor,
        ValidationDropsMonitor,
        StoreFailuresMonitor,
        ImportFailedMonitor,
    ]
    monitors_finished_actions: ClassVar[list[Any]] = [RecordMonitorResults]


class PeriodicMonitorSuite(QuietMonitorSuite):
    """Run every few minutes of a long crawl: trouble shows before the end."""

    monitors: ClassVar[list[Any]] = [
        _live(RetryCountMonitor),
        _live(ErrorCountMonitor),
        _live(StoreFailuresMonitor),
        _live(ImportFailedMonitor),
    ]
    monitors_finished_actions: ClassVar[list[Any]] = [RecordPeriodicResults]
