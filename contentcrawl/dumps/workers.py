"""Dump lines worked in a worker process: parse, map, validate, store record.

A dump import is CPU-bound: per line, parsing its JSON costs a fifth of the work and mapping,
validating and building the store record (canonical JSON, hash) the rest. That work runs on
chunks of lines in the processes of ``contentcrawl.dumps.pool``; this module is what such a
process runs around it.

A worker sees dump lines, not Scrapy: it counts into a ``Tally`` and collects its log lines
in ``WorkedChunk.logs``; the crawl adds both to its own stats and log. Its modules import no
Scrapy, so a worker process starts in a fraction of the time.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from contentcrawl.dumps.read import IMPORT_GC_THRESHOLD
from contentcrawl.records import UnstorableRecordError, to_record
from contentcrawl.validation import RecordValidator

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from contentcrawl.items import ContentItem

# Lines a worker checks the stop flag after: a stopped crawl waits for no chunk.
STOP_CHECK_LINES = 100


class Tally(Counter[str]):
    """Stat increments made in a worker, added to the crawl's stats with the chunk."""

    def inc_value(self, key: str, count: int = 1, start: int = 0) -> None:
        self[key] += count


# One store record as it travels back: key, canonical JSON body, its hash, revision,
# fetched_at.
WorkedRecord = tuple[Any, str, str, int | None, str | None]


@dataclass
class WorkedChunk:
    """What a worker made of one chunk of lines."""

    records: list[WorkedRecord] = field(default_factory=list)
    # Items left for the crawl's own validation (``prepare`` off: the images pipeline runs).
    items: list[ContentItem] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # line, reason, detail
    skipped: Counter[str] = field(default_factory=Counter)
    stats: Tally = field(default_factory=Tally)
    logs: list[tuple[str, int, str]] = field(default_factory=list)
    # The worker saw the stop flag and left the chunk unfinished.
    stopped: bool = False


class LineWork(Protocol):
    """The per-chunk work of one dump kind; picklable (it travels with each chunk)."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk: ...


# --- in the worker ------------------------------------------------------------------------

_logged: list[tuple[str, int, str]] = []
_stop: Event | None = None
_validator: RecordValidator | None = None


class _CollectLogs(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _logged.append((record.name, record.levelno, record.getMessage()))


def reset_worker_state() -> None:
    """Forget the validator (its once-per-reason WARNINGs) of an earlier import."""
    global _validator
    _validator = None


def start_worker(log_level: int, stop: Event) -> None:
    """Set a worker process up: its log lines collected, the stop flag, fewer GC passes, and
    its end with the crawl's process."""
    global _stop
    _stop = stop
    # A crawl killed with SIGKILL (kill -9, the OOM killer) shuts no pool down: its workers
    # would wait for a chunk forever, each holding its memory, and the fork server with them.
    threading.Thread(target=exit_with_the_crawl, name="exit-with-the-crawl", daemon=True).start()
    root = logging.getLogger()
    root.handlers[:] = [_CollectLogs()]
    root.setLevel(log_level)
    # Records hold no cycles: see contentcrawl.dumps.read.fewer_gc_passes.
    gc.set_threshold(IMPORT_GC_THRESHOLD, *gc.get_threshold()[1:])


def exit_with_the_crawl() -> None:
    """End this worker process as soon as the crawl's process has ended, however it ended."""
    crawl = multiprocessing.parent_process()
    if crawl is None:
        return
    # Returns once the crawl's end of the pipe the worker was started through is closed.
    crawl.join()
    os._exit(1)  # nobody is left to read the code, nor anything to clean up


def stopping() -> bool:
    """Whether the crawl asked its workers to drop what they are doing."""
    return _stop is not None and _stop.is_set()


def finish_chunk(chunk: WorkedChunk, items: list[ContentItem], prepare: bool) -> WorkedChunk:
    """Validate ``items`` and make their store records (``prepare``), or keep the items for
    the crawl's pipelines; attach the log lines the work produced."""
    if prepare:
        chunk.records = prepared_records(items, chunk.stats)
    else:
        chunk.items = items
    chunk.logs = _logged[:]
    _logged.clear()
    return chunk


def prepared_records(items: list[ContentItem], stats: Tally) -> list[WorkedRecord]:
    """The store records of ``items`` that pass validation, as the pipelines would make
    them: drops counted and logged as the validation and store pipelines count a record
    dropped from a batch."""
    global _validator
    if _validator is None:
        # One per process: its once-per-reason WARNINGs hold across chunks.
        _validator = RecordValidator(stats)
    _validator.stats = stats
    records: list[WorkedRecord] = []
    for item in items:
        if not _validator.accepted(item):
            continue
        try:
            record = to_record(item)
        except UnstorableRecordError as error:
            stats.inc_value("item_dropped_count")
            stats.inc_value("item_dropped_reasons_count/UnstorableItem")
            logging.getLogger("contentcrawl.pipelines.store").warning(
                "Dropped from a batch: %s", error
            )
            continue
        key = getattr(item, item.key_field)
        records.append((key, record.body, record.hash, record.revision, record.fetched_at))
    return records
