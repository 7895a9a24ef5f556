"""Chunks of dump lines worked in other processes and handed back in order.

``ChunkWorkers`` runs a ``LineWork`` (``contentcrawl.dumps.workers``) on chunks of lines in
``DUMP_WORKERS`` processes (0: one thread of the crawl's own process) and hands the results
back in the order the chunks were read, so one writer (the store pipeline) stores them in
order. The workers start from a fresh interpreter (``forkserver``): the crawl's process has
threads, which ``fork`` cannot copy. Nor do they import the crawl's main module (see
``keep_the_main_module_out_of_workers``): a worker process is ready in a fraction of the
time, with no Scrapy in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import sys
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import (
    Executor,
    Future,
    InvalidStateError,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

from contentcrawl.dumps import workers as worker_side
from contentcrawl.dumps.workers import LineWork, WorkedChunk, reset_worker_state, start_worker

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

logger = logging.getLogger(__name__)


class DumpWorkerError(Exception):
    """Worker processes died twice before one chunk was worked: the import cannot go on."""


# Chunks in flight at most without an ``ahead`` limit, however few their lines (those of a
# re-import may have none): each holds a note until its turn comes.
MAX_CHUNKS_AHEAD = 64


@dataclass
class Waiting:
    """A chunk submitted while the worker processes start, and the result it will have."""

    result: Future[WorkedChunk]
    work: LineWork
    lines: list[tuple[int, bytes]]
    context: Any

    def hand_over(self, done: Future[WorkedChunk]) -> None:
        """Give ``result`` the outcome of ``done``, the chunk's own run in a worker."""
        if done.cancelled():
            self.result.cancel()
        elif (error := done.exception()) is not None:
            self.failed(error)
        else:
            # A stopped import no longer waits for the result (it cancelled it).
            with contextlib.suppress(InvalidStateError):
                self.result.set_result(done.result())

    def failed(self, error: BaseException) -> None:
        with contextlib.suppress(InvalidStateError):
            self.result.set_exception(error)


@dataclass
class Submitted:
    """A chunk handed to the workers: what it needs to be sent again, and its result."""

    lines: list[tuple[int, bytes]]
    context: Any
    # The reader's own note on the chunk (counts, position), handed back with its result.
    note: Any
    result: Future[WorkedChunk]
    attempts: int = 1


class ChunkWorkers:
    """``workers`` processes (0: a thread of this process) working chunks of dump lines.

    ``worked(chunks)`` submits up to ``2 * workers`` chunks' worth of lines ahead (bounded
    memory: the chunks of a re-import are short, their unchanged lines skipped) and yields
    each result in submission order. The first worker processes start on a thread of their
    own, while the chunks behind are read and looked up. A worker that dies (killed, out of
    memory) breaks the pool: it is started again and the chunks in flight sent again; a
    chunk still unanswered when it breaks a second time raises ``DumpWorkerError``.
    ``close()`` tells the workers to drop their chunks and returns at once. Chunks that turn
    out to be one (a dump of up to ``DUMP_CHUNK_LINES`` lines, read with no ``ahead`` limit)
    are worked in a thread of this process, and ``workers`` becomes 0.
    """

    def __init__(
        self,
        workers: int,
        log_level: int,
        preload: tuple[str, ...] = (),
        chunk_lines: int = 1000,
    ) -> None:
        self.workers = max(0, workers)
        self.log_level = log_level
        self.chunk_lines = max(1, chunk_lines)
        self.restarts = 0
        if sys.platform.startswith("linux"):
            self._context = multiprocessing.get_context("forkserver")
            # Imported once by the fork server (at its start, the first pool of the
            # process), not by every worker it forks.
            self._context.set_forkserver_preload([worker_side.__name__, *preload])
        else:
            self._context = multiprocessing.get_context("spawn")
        # Made with the first pool of processes: a multiprocessing Event starts Python's
        # resource tracker process.
        self._stop: Event | None = None
        # Made at the first chunk, once it is known whether the import has more than one.
        self._executor: Executor | None = None
        # While the first worker processes start: the chunks submitted meanwhile.
        self._waiting: list[Waiting] | None = None
        self._waiting_lock = threading.Lock()
        if not self.workers:
            self._work_here()

    @property
    def in_flight(self) -> int:
        """Chunks (or, without an ``ahead`` limit, chunks' worth of lines) submitted ahead
        of the one being read."""
        return max(2, 2 * self.workers)

    def _work_here(self) -> None:
        """Work the chunks in a thread of this process, not in worker processes."""
        self.workers = 0
        # The thread shares this process's state: a new import starts afresh.
        reset_worker_state()

    def _new_executor(self) -> Executor:
        if not self.workers:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="dump-work")
        if self._stop is None:
            self._stop = self._context.Event()
        keep_the_main_module_out_of_workers()
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=start_worker,
            initargs=(self.log_level, self._stop),
        )

    def _submit(self, work: LineWork, lines: list[tuple[int, bytes]], context: Any) -> Future:
        if not lines:
            # Nothing to work (a re-import skipped every line): no trip to a worker.
            done: Future[WorkedChunk] = Future()
            done.set_result(WorkedChunk())
            return done
        if self._executor is None:
            self._executor = self._new_executor()
            if self.workers:
                self._start_in_background()
        with self._waiting_lock:
            if self._waiting is not None:
                waiting: Future[WorkedChunk] = Future()
                self._waiting.append(Waiting(waiting, work, lines, context))
                return waiting
        try:
            return self._executor.submit(work, lines, context)
        except BrokenProcessPool as broken:
            # A worker died since the last result: the chunk fails with the pool, and is
            # sent again with the others in flight when ``worked`` reaches it and restarts.
            failed: Future[WorkedChunk] = Future()
            failed.set_exception(broken)
            return failed

    def _start_in_background(self) -> None:
        """Start the worker processes on a thread of their own. The first start of a fork
        server (a new interpreter importing the workers' modules: ~0.3 s) would otherwise
        hold the event loop, and with it the reading and store look-ups of the chunks
        behind; those submitted meanwhile wait in ``_waiting``."""
        self._waiting = []
        threading.Thread(target=self._start_pool, name="dump-workers-start", daemon=True).start()

    def _start_pool(self) -> None:
        executor = self._executor
        assert executor is not None
        with contextlib.suppress(BrokenProcessPool, RuntimeError):
            # Each submit starts one more process until there are ``workers`` (a pool
            # broken or shut down meanwhile: its waiting chunks find out below).
            for _ in range(self.workers):
                executor.submit(int)
        with self._waiting_lock:
            waiting, self._waiting = self._waiting or [], None
        for chunk in waiting:
            # To the pool now in use: a restart may have replaced the one started here.
            current = self._executor
            try:
                assert current is not None
                result = current.submit(chunk.work, chunk.lines, chunk.context)
            except (BrokenProcessPool, RuntimeError) as error:
                chunk.failed(error)
                continue
            result.add_done_callback(chunk.hand_over)

    async def worked(
        self,
        work: LineWork,
        chunks: AsyncIterator[tuple[list[tuple[int, bytes]], Any, Any]],
        stop: asyncio.Event,
        *,
        ahead: int | None = None,
    ) -> AsyncGenerator[tuple[Any, WorkedChunk]]:
        """``(note, work(lines, context))`` for each ``(lines, context, note)`` of ``chunks``,
        in order, with up to ``ahead`` chunks in flight (default ``in_flight``); ends early
        (without waiting for the workers) once ``stop`` is set."""
        pending: deque[Submitted] = deque()
        source = aiter(chunks)
        if self.workers and ahead is None:
            source = self._one_chunk_here(source)
        exhausted = False
        while True:
            while not exhausted and not stop.is_set() and self._room_ahead(pending, ahead):
                try:
                    lines, context, note = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                submitted = self._submit(work, lines, context)
                pending.append(Submitted(lines, context, note, submitted))
            if not pending or stop.is_set():
                return
            oldest = pending[0]
            try:
                result = await self._result(oldest.result, stop)
            except BrokenProcessPool:
                self._restart(work, pending)
                continue
            if result is None:
                return
            pending.popleft()
            yield oldest.note, result

    def _room_ahead(self, pending: deque[Submitted], ahead: int | None) -> bool:
        """Whether one more chunk may go ahead: ``ahead`` chunks at most when given, else
        ``in_flight`` chunks' worth of lines (and ``MAX_CHUNKS_AHEAD`` chunks)."""
        if ahead:
            return len(pending) < ahead
        if len(pending) >= MAX_CHUNKS_AHEAD:
            return False
        return sum(len(chunk.lines) for chunk in pending) < self.in_flight * self.chunk_lines

    async def _one_chunk_here(
        self, source: AsyncIterator[tuple[list[tuple[int, bytes]], Any, Any]]
    ) -> AsyncIterator[tuple[list[tuple[int, bytes]], Any, Any]]:
        """``source``'s chunks, the first held until the second is read. A dump of one chunk
        is worked in this process: starting the worker processes (a fork server and
        ``workers`` processes, about 0.4 s of CPU for two) would cost more than its lines."""
        first = await anext(source, None)
        if first is None:
            return
        second = await anext(source, None)
        if second is None and self._executor is None:
            self._work_here()
        yield first
        if second is None:
            return
        yield second
        async for chunk in source:
            yield chunk

    async def _result(self, future: Future[WorkedChunk], stop: asyncio.Event) -> WorkedChunk | None:
        """The chunk's result, or None once ``stop`` is set first."""
        waiting = asyncio.wrap_future(future)
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not waiting.done():
            waiting.cancel()
            return None
        return waiting.result()

    def _restart(self, work: LineWork, pending: deque[Submitted]) -> None:
        oldest = pending[0]
        # Which chunk killed its worker is not known: every chunk in flight fails with the
        # pool. The oldest, still unanswered after a second start, fails the import.
        first = oldest.lines[0][0]
        last = max((chunk.lines[-1][0] for chunk in pending if chunk.lines), default=first)
        if oldest.attempts >= 2:
            raise DumpWorkerError(
                f"dump worker processes died twice before the chunk from line {first} was "
                f"worked (lines {first} to {last} in flight)"
            )
        self.restarts += 1
        logger.warning(
            "A dump worker process died with lines %d to %d in flight: starting the workers "
            "again and sending those %d chunks again",
            first,
            last,
            len(pending),
        )
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()
        # The oldest chunk is the one seen failing; the others were caught in its fall.
        oldest.attempts += 1
        for submitted in pending:
            submitted.result = self._submit(work, submitted.lines, submitted.context)

    def close(self) -> None:
        """Stop the workers: a chunk being worked is dropped within ``STOP_CHECK_LINES``."""
        if self._stop is not None:
            self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def keep_the_main_module_out_of_workers() -> None:
    """Spare each new worker process the import of the crawl's main module.

    multiprocessing runs the main module of the parent again in each process it starts (as
    ``__mp_main__``), so that what it defines can be unpickled there. The main module of a
    crawl is the ``scrapy`` console script or scrapyd's runner: each worker would import
    Scrapy and Twisted, ~0.3 s of CPU, taken from the crawl on a machine of few cores. The
    workers need none of it: their work, its arguments and results are objects of importable
    modules (a ``LineWork`` defined in a script would not unpickle in a worker).

    multiprocessing leaves alone a main module whose spec is named ``__main__`` or
    ``<package>.__main__`` (that is why ``python -m scrapy`` had no such cost): this gives
    the main module a spec of that name (``multiprocessing.spawn.get_preparation_data`` and
    ``_fixup_main_from_name``; ``test_a_worker_does_not_import_the_crawls_main_module``
    fails on a Python that no longer does so).
    """
    main = sys.modules["__main__"]
    name = getattr(main.__spec__, "name", None) or ""
    if name != "__main__" and not name.endswith(".__main__"):
        main.__spec__ = ModuleSpec("__main__", None)


def log_worked(chunk: WorkedChunk) -> None:
    """Log, in the crawl, the lines a worker logged for ``chunk``."""
    for name, level, message in chunk.logs:
        logging.getLogger(name).log(level, "%s", message)
