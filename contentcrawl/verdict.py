"""Whether a crawl was clean: the one verdict every part of the project goes by.

The sync state advances only on a clean run (``extensions/sync_state.py``), the run record
says ``ok`` or ``failed`` (``extensions/runs.py``), ``scrapy crawl`` exits with the verdict's
code (``commands/crawl.py``), ``scrapy syncall`` reports it per job, and the close monitors
(``monitors.py``) show its checks to spidermon. ``run_verdict`` decides it once, from the
crawl's stats when the spider closes, so none of them can disagree.

A run is clean when every check passes:

- ``finish_reason``: it finished (``finished``); ``shutdown`` (a signal) means stopped;
- ``extracted_items``: at least ``SPIDERMON_MIN_ITEMS`` records;
- ``retry_count``: no more requests given up than ``SPIDERMON_MAX_RETRIES`` (a 429 or 503
  retried until answered is pushback, not a failure);
- ``error_count``: no more errors logged than ``SPIDERMON_MAX_ERRORS``;
- ``validation_drops``: at most ``MONITOR_MAX_DROPPED_SHARE`` of the records dropped;
- ``store_failures``: no record the store would not take;
- ``import_failed``: no source said its import failed (a stat ``<source>/import/failed``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

# scrapy crawl's exit codes (commands/crawl.py lists them in its help).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_CODES = {
    EXIT_OK: "the run was clean",
    EXIT_FAILED: "the run failed, or could not start (see the run record's problems)",
    EXIT_USAGE: "usage error: unknown spider, unknown or bad -a argument",
    EXIT_STOPPED: "stopped by a signal (Ctrl-C, SIGTERM, a scrapyd cancel) before its end",
}
# The finish reason Scrapy gives a crawl stopped by SIGINT or SIGTERM.
STOPPED_REASON = "shutdown"

Stats = Mapping[str, Any]
# (finish reason, or None while the crawl runs; stats; settings) -> a problem, or None.
Check = Callable[[str | None, Stats, "BaseSettings"], str | None]


def stat_total(stats: Stats, prefix: str, suffix: str = "") -> int:
    """The sum of the numeric stats whose key starts with ``prefix`` and ends with ``suffix``."""
    return sum(
        int(value)
        for key, value in stats.items()
        if key.startswith(prefix) and key.endswith(suffix) and isinstance(value, int | float)
    )


def requests_given_up(stats: Stats) -> int:
    """Requests out of retries: per slot (``retry/<slot>/gave_up``) or Scrapy's own count."""
    return max(stat_total(stats, "retry/", "/gave_up"), int(stats.get("retry/max_reached", 0)))


def _finish_reason(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    if reason is None or reason == "finished":
        return None
    if reason == STOPPED_REASON:
        return "stopped by a signal (finish reason 'shutdown')"
    return f"finish reason {reason!r}"


def _extracted_items(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    minimum = settings.getint("SPIDERMON_MIN_ITEMS")
    items = int(stats.get("item_scraped_count", 0))
    if reason is None or items >= minimum:
        return None
    return f"{items} records scraped, expected at least {minimum}"


def _retry_count(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    given_up = requests_given_up(stats)
    if given_up <= settings.getint("SPIDERMON_MAX_RETRIES"):
        return None
    return f"{given_up} requests given up after their retries"


def _error_count(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    errors = int(stats.get("log_count/ERROR", 0))
    if errors <= settings.getint("SPIDERMON_MAX_ERRORS"):
        return None
    return f"{errors} errors logged"


def _validation_drops(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    dropped = stat_total(stats, "validation/dropped/")
    seen = dropped + int(stats.get("item_scraped_count", 0))
    limit = settings.getfloat("MONITOR_MAX_DROPPED_SHARE")
    if dropped <= limit * seen:
        return None
    return f"{dropped} of {seen} records dropped by validation (limit {limit:.1%})"


def _store_failures(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    failed = stat_total(stats, "store/", "/failed")
    return f"{failed} records the store would not take" if failed else None


def _import_failed(reason: str | None, stats: Stats, settings: BaseSettings) -> str | None:
    # The hook of a source that decides its own import failed (say, too many bad dump
    # lines): it sets ``<source>/import/failed``.
    sources = sorted(
        key.split("/")[0]
        for key, value in stats.items()
        if key.count("/") == 2 and key.endswith("/import/failed") and value
    )
    return f"import failed: {', '.join(sources)}" if sources else None


# Name (a monitor's stat segment, ``monitors/<name>/failed``) -> check, in report order.
CHECKS: dict[str, Check] = {
    "finish_reason": _finish_reason,
    "extracted_items": _extracted_items,
    "retry_count": _retry_count,
    "error_count": _error_count,
    "validation_drops": _validation_drops,
    "store_failures": _store_failures,
    "import_failed": _import_failed,
}


@dataclass(frozen=True)
class Verdict:
    """How a crawl ended: its finish reason and each failed check's problem, by check name."""

    reason: str
    failed: Mapping[str, str]

    @property
    def ok(self) -> bool:
        """Whether the run was clean."""
        return not self.failed

    @property
    def problems(self) -> list[str]:
        """The failed checks' problems, in check order (the run record's ``problems``)."""
        return list(self.failed.values())

    @property
    def result(self) -> str:
        """The run record's ``result``: ``ok`` or ``failed``."""
        return "ok" if self.ok else "failed"

    @property
    def exit_code(self) -> int:
        """``scrapy crawl``'s exit code for this run (``EXIT_CODES``)."""
        if self.ok:
            return EXIT_OK
        return EXIT_STOPPED if self.reason == STOPPED_REASON else EXIT_FAILED


def failed_checks(reason: str | None, stats: Stats, settings: BaseSettings) -> dict[str, str]:
    """Each failing check's problem; ``reason`` None while the crawl runs (periodic checks)."""
    failed = {}
    for name, check in CHECKS.items():
        problem = check(reason, stats, settings)
        if problem is not None:
            failed[name] = problem
    return failed


def judge(reason: str, stats: Stats, settings: BaseSettings) -> Verdict:
    """The verdict on a finished crawl's stats (pure: ``run_verdict`` decides it once)."""
    return Verdict(reason, failed_checks(reason, stats, settings))


_verdicts: weakref.WeakKeyDictionary[Crawler, Verdict] = weakref.WeakKeyDictionary()


def run_verdict(crawler: Crawler, reason: str) -> Verdict:
    """The crawl's verdict, decided at the first call once the spider closed with ``reason``
    (the sync state's close handler is the first to ask) and the same for every later one."""
    verdict = _verdicts.get(crawler)
    if verdict is None:
        verdict = judge(reason, crawler.stats.get_stats(), crawler.settings)
        _verdicts[crawler] = verdict
        crawler.stats.set_value(f"runs/result/{verdict.result}", 1)
        crawler.stats.set_value(f"runs/exit_code/{verdict.exit_code}", 1)
    return verdict


def decided_verdict(crawler: Crawler) -> Verdict | None:
    """The verdict ``run_verdict`` decided; None when the spider never closed (a crawl that
    could not start)."""
    return _verdicts.get(crawler)
