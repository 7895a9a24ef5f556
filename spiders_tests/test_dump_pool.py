"""The dump worker pool on its own: order, a killed worker, chunks ahead, the start of its
processes, and what they import."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.dumps.pool import ChunkWorkers, DumpWorkerError
from contentcrawl.dumps.workers import WorkedChunk
from spiders_tests.crawling import PROJECT


@dataclass(frozen=True)
class SlowFirst:
    """Echoes each chunk's first line number; the earlier the chunk, the slower."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        time.sleep(max(0.0, 0.3 - 0.1 * context))
        return WorkedChunk(skipped={str(lines[0][0]): len(lines)})


@dataclass(frozen=True)
class KillOnChunk:
    """Kills its own worker process on chunk ``victim``: once (a marker file remembers),
    or every time."""

    victim: int
    marker: str
    every_time: bool = False

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        if context == self.victim and (self.every_time or not os.path.exists(self.marker)):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return WorkedChunk(skipped={str(context): len(lines)})


async def numbered_chunks(count: int) -> AsyncIterator[tuple[list[tuple[int, bytes]], int, int]]:
    for number in range(count):
        yield [(number * 10 + 1, b"line")], number, number


async def work_all(workers: ChunkWorkers, work: Any, count: int) -> list[tuple[int, WorkedChunk]]:
    try:
        return [
            result async for result in workers.worked(work, numbered_chunks(count), asyncio.Event())
        ]
    finally:
        workers.close()


@deferred_f_from_coro_f
async def test_results_come_back_in_chunk_order_though_later_chunks_finish_first() -> None:
    results = await work_all(ChunkWorkers(2, 20), SlowFirst(), 4)
    assert [note for note, _ in results] == [0, 1, 2, 3]
    assert [next(iter(chunk.skipped)) for _, chunk in results] == ["1", "11", "21", "31"]


@deferred_f_from_coro_f
async def test_a_worker_killed_mid_chunk_is_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    workers = ChunkWorkers(2, 20)
    results = await work_all(workers, KillOnChunk(2, str(tmp_path / "killed")), 6)
    assert (tmp_path / "killed").exists()
    assert [note for note, _ in results] == [0, 1, 2, 3, 4, 5]
    assert workers.restarts == 1


@dataclass(frozen=True)
class WhereWorked:
    """Names the process that worked each chunk."""

    def __call__(self, lines: list[tuple[int, bytes]], context: Any) -> WorkedChunk:
        return WorkedChunk(skipped={str(os.getpid()): len(lines)})


@deferred_f_from_coro_f
async def test_one_chunk_is_worked_in_this_process_and_two_in_the_workers() -> None:
    one = ChunkWorkers(2, 20)
    [(_, chunk)] = await work_all(one, WhereWorked(), 1)
    assert set(chunk.skipped) == {str(os.getpid())}
    assert one.workers == 0

    two = ChunkWorkers(2, 20)
    results = await work_all(two, WhereWorked(), 2)
    assert str(os.getpid()) not in {pid for _, chunk in results for pid in chunk.skipped}
    assert two.workers == 2


@deferred_f_from_coro_f
async def test_a_chunk_that_kills_its_worker_twice_fails_cleanly(tmp_path: Path) -> None:
    workers = ChunkWorkers(1, 20)
    results: list[int] = []

    async def work() -> None:
        work = KillOnChunk(1, str(tmp_path / "killed"), every_time=True)
        try:
            async for note, _ in workers.worked(work, numbered_chunks(4), asyncio.Event()):
                results.append(note)
        finally:
            workers.close()

    # Any chunk in flight may have killed its worker: the error names the lines of them all.
    with pytest.raises(
        DumpWorkerError,
        match=r"before the chunk from line 11 was worked \(lines 11 to 31 in flight\)",
    ):
        await work()
    assert results == [0]


@deferred_f_from_coro_f
async def test_short_chunks_go_ahead_by_their_lines_not_their_number() -> None:
    """A re-import's chunks hold only their changed lines: ``in_flight`` chunks' worth of
    lines go ahead of a slow one, not ``in_flight`` chunks."""
    workers = ChunkWorkers(2, 20, chunk_lines=10)
    asked: list[int] = []

    async def one_line_chunks() -> AsyncIterator[tuple[list[tuple[int, bytes]], int, int]]:
        for number in range(100):
            asked.append(number)
            yield [(number + 1, b"line")], number, number

    asked_by_first_result = None
    try:
        async for _ in workers.worked(SlowFirst(), one_line_chunks(), asyncio.Event()):
            if asked_by_first_result is None:
                asked_by_first_result = len(asked)
    finally:
        workers.close()
    # 4 chunks in flight (2 workers) of up to 10 lines: 40 one-line chunks before the first
    # result (SlowFirst holds chunk 0 for 0.3 s); then each result lets one more go.
    assert asked_by_first_result == 4 * 10
    assert len(asked) == 100


# A fresh process (a fork server of its own) whose workers import Scrapy: a slow start.
EVENT_LOOP_DURING_THE_START = """
import asyncio, logging, time
from contentcrawl.dumps.pool import ChunkWorkers
from contentcrawl.dumps.workers import WorkedChunk
from spiders_tests.test_dump_pool import WhereWorked

async def main():
    ticks = [time.monotonic()]

    async def tick():
        while True:
            await asyncio.sleep(0.005)
            ticks.append(time.monotonic())

    ticker = asyncio.ensure_future(tick())
    workers = ChunkWorkers(2, logging.INFO, preload=("scrapy.crawler",))
    started = time.monotonic()

    async def chunks():
        for number in range(2):
            yield [(number + 1, b"line")], number, number

    async for _ in workers.worked(WhereWorked(), chunks(), asyncio.Event()):
        break
    first_result = time.monotonic() - started
    workers.close()
    ticker.cancel()
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    print(first_result, max(gaps))

asyncio.run(main())
"""


@pytest.mark.timing
def test_the_event_loop_runs_on_while_the_worker_processes_start() -> None:
    """The first start of the workers (a fork server, here importing Scrapy) does not hold
    the event loop: the crawl reads and looks chunks up meanwhile."""
    run = subprocess.run(
        [sys.executable, "-c", EVENT_LOOP_DURING_THE_START],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first_result, longest_gap = map(float, run.stdout.split())
    assert first_result > 0.2
    assert longest_gap < 0.1


def test_the_workers_import_no_scrapy() -> None:
    """A worker process imports its modules at its start: without Scrapy (and Twisted) it
    starts in a fraction of the time."""
    modules = (
        "contentcrawl.dumps.workers",
        "contentcrawl.dumps.pool",
        "contentcrawl.sources.musicbrainz.lines",
        "contentcrawl.sources.openlibrary.lines",
    )
    check = (
        f"import sys, {', '.join(modules)}; "
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'scrapy', 'twisted'}))"
    )
    run = subprocess.run(
        [sys.executable, "-c", check], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"


# A crawl's main module as the ``scrapy`` console script is one: a script that imports
# Scrapy, its work guarded by ``__name__``.
CONSOLE_SCRIPT_LIKE = """
from scrapy.cmdline import execute
import asyncio, logging
from contentcrawl.dumps.pool import ChunkWorkers
from spiders_tests.worker_probe import LoadedFrameworks

async def main():
    workers = ChunkWorkers(1, logging.INFO)

    async def chunks():
        for number in range(2):
            yield [(number + 1, b"line")], number, number

    try:
        async for _, chunk in workers.worked(LoadedFrameworks(), chunks(), asyncio.Event()):
            print(sorted(chunk.skipped))
            break
    finally:
        workers.close()

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_worker_does_not_import_the_crawls_main_module(tmp_path: Path) -> None:
    """multiprocessing would import the ``scrapy`` console script in each worker, and
    Scrapy with it; the workers need none of it."""
    script = tmp_path / "scrapy_like"
    script.write_text(CONSOLE_SCRIPT_LIKE)
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
