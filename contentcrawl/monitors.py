"""Spidermon monitors of every crawl: at close, and every few minutes on long runs.

Enabled by the ``SPIDERMON_*`` settings in ``contentcrawl/settings.py``. What they check,
from the crawl's stats:

- the finish reason is ``finished`` (``SPIDERMON_EXPECTED_FINISH_REASONS``);
- at least ``SPIDERMON_MIN_ITEMS`` items (0 by default: a quiet day of changes is fine;
  a job that must bring records raises it with ``-s``);
- no more 429 / 503 answers than ``SPIDERMON_UNWANTED_HTTP_CODES`` allows;
- no more requests out of retries than ``SPIDERMON_MAX_RETRIES``, no more errors logged
  than ``SPIDERMON_MAX_ERRORS``;
- validation drops below ``MONITOR_MAX_DROPPED_SHARE`` of the records, no lost store batch.

Each suite ends with ``RecordMonitorResults``, which counts passed and failed monitors in
the stats (``monitors/<phase>/passed|failed``, ``monitors/<monitor>/failed``); the run
recorder (``contentcrawl.extensions.runs``) reads them and marks the run failed.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, ClassVar

from spidermon import Monitor, MonitorSuite, monitors
from spidermon.contrib.scrapy.monitors import (
    ErrorCountMonitor,
    FinishReasonMonitor,
    ItemCountMonitor,
    RetryCountMonitor,
    UnwantedHTTPCodesMonitor,
)
from spidermon.core.actions import Action

# spidermon 1.27 reports through Spider.log(), deprecated in Scrapy 2.19: one warning per
# run in every crawl's log, about code that is not ours.
warnings.filterwarnings("ignore", message=r"Spider\.log\(\) is deprecated", module="spidermon")


def stat_name(monitor_name: str) -> str:
    """A monitor's name as a stat key segment: ``Finish Reason Monitor`` -> ``finish_reason``."""
    slug = re.sub(r"[^a-z0-9]+", "_", monitor_name.lower()).strip("_")
    return slug.removesuffix("_monitor")


def _sum(stats: Any, prefix: str, suffix: str = "") -> int:
    return sum(
        value
        for key, value in stats.items()
        if key.startswith(prefix) and key.endswith(suffix) and isinstance(value, int | float)
    )


@monitors.name("Validation Drops Monitor")
class ValidationDropsMonitor(Monitor):
    """Records dropped by validation stay below ``MONITOR_MAX_DROPPED_SHARE`` of all records."""

    @monitors.name("Should drop few records")
    def test_dropped_share(self) -> None:
        stats = self.data.stats
        dropped = _sum(stats, "validation/dropped/")
        seen = dropped + stats.get("item_scraped_count", 0)
        limit = self.data.crawler.settings.getfloat("MONITOR_MAX_DROPPED_SHARE", 0.01)
        # Monitors are unittest cases: spidermon reports the assert methods' messages.
        self.assertLessEqual(  # noqa: PT009
            dropped,
            limit * seen,
            msg=f"{dropped} of {seen} records dropped by validation (limit {limit:.1%})",
        )


@monitors.name("Store Failures Monitor")
class StoreFailuresMonitor(Monitor):
    """No store batch failed for good (``store/<collection>/failed``)."""

    @monitors.name("Should lose no store batch")
    def test_no_store_failure(self) -> None:
        failed = _sum(self.data.stats, "store/", "/failed")
        self.assertEqual(  # noqa: PT009
            failed, 0, msg=f"{failed} records could not be written to the store"
        )


class RecordMonitorResults(Action):
    """Counts the suite's passed and failed monitors in the crawl's stats."""

    phase: ClassVar[str] = "close"

    def run_action(self) -> None:
        stats = self.data["crawler"].stats
        passed = self.result.monitors_passed_results
        failed = self.result.monitors_failed_results
        stats.inc_value(f"monitors/{self.phase}/passed", len(passed))
        stats.inc_value(f"monitors/{self.phase}/failed", len(failed))
        for outcome in failed:
            stats.inc_value(f"monitors/{stat_name(outcome.item.monitor_name)}/failed")


class RecordPeriodicResults(RecordMonitorResults):
    """``RecordMonitorResults`` for the periodic suite."""

    phase: ClassVar[str] = "periodic"


@monitors.name("Extracted Items Monitor")
class ExtractedItemsMonitor(ItemCountMonitor):
    """At least ``SPIDERMON_MIN_ITEMS`` items; a crawl that scraped none has 0, not no value.

    Scrapy sets ``item_scraped_count`` with the first item, and spidermon's monitor fails
    when the stat is missing, which would fail every quiet day of changes at a minimum of 0.
    """

    def test_stat_monitor(self) -> None:
        if self.stat_name not in self.stats:
            minimum = float(self._get_threshold_value())
            assert minimum <= 0, f"No items scraped; expected at least {minimum:g}"
            return
        super().test_stat_monitor()


class CloseMonitorSuite(MonitorSuite):
    """Run at spider close: the outcome of the whole crawl."""

    monitors: ClassVar[list[Any]] = [
        FinishReasonMonitor,
        ExtractedItemsMonitor,
        UnwantedHTTPCodesMonitor,
        RetryCountMonitor,
        ErrorCountMonitor,
        ValidationDropsMonitor,
        StoreFailuresMonitor,
    ]
    monitors_finished_actions: ClassVar[list[Any]] = [RecordMonitorResults]


class PeriodicMonitorSuite(MonitorSuite):
    """Run every few minutes of a long crawl: trouble shows before the end."""

    monitors: ClassVar[list[Any]] = [
        UnwantedHTTPCodesMonitor,
        ErrorCountMonitor,
        StoreFailuresMonitor,
    ]
    monitors_finished_actions: ClassVar[list[Any]] = [RecordPeriodicResults]
