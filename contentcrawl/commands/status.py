"""``scrapy status [--json]``: the mirror at a glance, from the store alone.

Per collection the record count and last update; per spider its last run (when, how long,
result, counts, why it failed) and its pending failures; the oldest pending failures. A
run left ``running`` by a process that is gone is marked ``killed`` first.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand
from scrapy.spiderloader import get_spider_loader

from contentcrawl.extensions.runs import mark_killed
from contentcrawl.store import COLLECTION_KEYS, Store, StoreError, build_store

if TYPE_CHECKING:
    import argparse

    from scrapy.settings import BaseSettings

# Pending failures listed one by one (the rest are counted per spider).
SHOWN_FAILURES = 10
# Widest text columns: a longer value is cut with an ellipsis (``--json`` has it whole).
SPIDER_WIDTH = 32
FAILURE_KEY_WIDTH = 60
FAILURE_ERROR_WIDTH = 32


def collect_status(store: Store, spiders: list[str], shown_failures: int = SHOWN_FAILURES) -> dict:
    """The status report as JSON-able data."""
    collections = {
        name: {"count": store.count(name), "last_updated": store.last_updated(name)}
        for name in COLLECTION_KEYS
    }
    failures = store.pending_failures()
    pending: dict[str, int] = {}
    for failure in failures:
        pending[failure["spider"]] = pending.get(failure["spider"], 0) + 1
    runs = {}
    for spider in sorted(set(spiders) | set(pending)):
        last = store.recent_runs(spider, limit=1)
        runs[spider] = {
            "last_run": last[0] if last else None,
            "pending_failures": pending.get(spider, 0),
        }
    return {
        "store": store.description,
        "collections": collections,
        "spiders": runs,
        "failures": {
            "pending": len(failures),
            "oldest": [
                {
                    name: failure.get(name)
                    for name in (
                        "key",
                        "error",
                        "attempts",
                        "runs",
                        "first_failed",
                        "last_try",
                        "url",
                    )
                }
                for failure in failures[:shown_failures]
            ],
        },
    }


def fit(text: str, width: int) -> str:
    """``text`` padded to ``width``, or cut to it with an ellipsis: one row stays one line."""
    if len(text) > width:
        return text[: width - 1] + "…"
    return f"{text:<{width}}"


def column_width(values: list[str], header: str, widest: int) -> int:
    """Wide enough for the header and every value, but no wider than ``widest``."""
    return min(max([len(header), *map(len, values)]), widest)


def format_status(status: dict) -> str:
    """The status report as aligned text for a terminal."""
    lines = [f"Store: {status['store']}", "", f"{'COLLECTION':<14}{'RECORDS':>12}  LAST UPDATE"]
    for name, collection in status["collections"].items():
        lines.append(f"{name:<14}{collection['count']:>12,}  {collection['last_updated'] or '-'}")
    spider_width = column_width(list(status["spiders"]), "SPIDER", SPIDER_WIDTH) + 2
    lines += [
        "",
        f"{'SPIDER':<{spider_width}}{'RESULT':<9}{'STARTED':<26}{'ITEMS':>8}{'WRITTEN':>9}"
        f"{'FAILED':>8}  WHY",
    ]
    for spider, entry in status["spiders"].items():
        name = fit(spider, spider_width - 2) + "  "
        run = entry["last_run"]
        if run is None:
            lines.append(
                f"{name}{'never':<9}{'-':<26}{'-':>8}{'-':>9}{entry['pending_failures']:>8}"
            )
            continue
        written = (run.get("inserted") or 0) + (run.get("updated") or 0)
        why = "; ".join(run.get("problems") or []) if run.get("result") == "failed" else ""
        row = (
            f"{name}{run.get('result', '?'):<9}{run.get('started_at', '-'):<26}"
            f"{run.get('items', 0) or 0:>8}{written:>9}{entry['pending_failures']:>8}  {why}"
        )
        lines.append(row.rstrip())
    failures = status["failures"]
    lines += ["", f"Pending failures: {failures['pending']}"]
    oldest = failures["oldest"]
    key_width = column_width([f["key"] for f in oldest], "", FAILURE_KEY_WIDTH)
    errors = [f.get("error") or "-" for f in oldest]
    error_width = column_width(errors, "", FAILURE_ERROR_WIDTH)
    for failure, error in zip(oldest, errors, strict=True):
        lines.append(
            f"  {fit(failure['key'], key_width)} {fit(error, error_width)} "
            f"since {failure.get('first_failed')}, {failure.get('runs') or 1} run(s)"
        )
    if failures["pending"] > len(oldest):
        lines.append(f"  … and {failures['pending'] - len(oldest)} more")
    return "\n".join(lines)


def spider_names(settings: BaseSettings) -> list[str]:
    """Every spider of the project."""
    return sorted(get_spider_loader(settings).list())


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}  # noqa: RUF012 - Scrapy's own attribute shape

    def syntax(self) -> str:
        return "[--json]"

    def short_desc(self) -> str:
        return "Show record counts, the last run of each spider and pending failures"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument(
            "--failures",
            type=int,
            default=SHOWN_FAILURES,
            metavar="N",
            help=f"list the N oldest pending failures (default {SHOWN_FAILURES})",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        try:
            with build_store(self.settings) as store:
                # A run left ``running`` by a process that is gone is shown as what it is.
                mark_killed(
                    store, socket.gethostname(), self.settings.getfloat("RUNS_HEARTBEAT_INTERVAL")
                )
                status = collect_status(store, spider_names(self.settings), opts.failures)
        except StoreError as error:
            print(f"Cannot read the store: {error}", file=sys.stderr)
            self.exitcode = 1
            return
        text = (
            json.dumps(status, indent=2, ensure_ascii=False) if opts.json else format_status(status)
        )
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # The reader stopped early (``scrapy status | head``): nothing is wrong. Point
            # stdout at /dev/null so the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
