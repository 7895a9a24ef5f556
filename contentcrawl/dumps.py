"""Dump files of any source: resumable streaming download, incremental line reading, progress.

Dumps are many gigabytes, so nothing here holds a whole file in memory, and nothing runs on
the reactor: ``download_dump`` and reads of a ``DumpFile`` are blocking calls meant for a
worker thread (``asyncio.to_thread``). A dump downloads to ``<directory>/<file name>``;
while it is incomplete the bytes sit in ``<file name>.part`` and the server's validators
(ETag, Last-Modified, size) in ``<file name>.download.json`` next to it, so an interrupted
download resumes with ``Range`` + ``If-Range`` and a finished one is fetched again only
when the server's copy changed (conditional GET, 304).
"""

from __future__ import annotations

import asyncio
import bz2
import gc
import gzip
import json
import logging
import lzma
import os
import re
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from scrapy import signals

from contentcrawl.redaction import basic_auth, redact_url, split_userinfo

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def is_url(location: str) -> bool:
    """True when ``location`` is an http(s) URL rather than a local path."""
    return urlsplit(location).scheme in {"http", "https"}


def local_path(location: str) -> Path:
    """The local file a path or ``file://`` URL names."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(location)


# --- progress ---------------------------------------------------------------------------


def format_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1:02:05"``."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """A log line every ``interval`` seconds: records/s, bytes done / total, percent, ETA.

    ``update(done_bytes, records)`` is cheap enough to call per batch; it logs only when
    the interval has passed. The ETA extrapolates the byte rate since the start.
    """

    def __init__(
        self,
        label: str,
        total_bytes: int | None,
        interval: float,
        *,
        log: logging.Logger = logger,
        clock: Callable[[], float] = time.monotonic,
        start_bytes: int = 0,
    ) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.interval = interval
        self.log = log
        self.clock = clock
        self.started = clock()
        self.start_bytes = start_bytes
        self._next = self.started + interval

    def update(self, done_bytes: int, records: int | None = None) -> None:
        """Log the progress line when the interval has passed since the last one."""
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        self.log.info("%s", self.describe(done_bytes, records, now))

    def describe(
        self, done_bytes: int, records: int | None = None, now: float | None = None
    ) -> str:
        """The progress line for ``done_bytes`` read and ``records`` produced so far."""
        elapsed = max((self.clock() if now is None else now) - self.started, 1e-9)
        parts = [self.label + ":"]
        if records is not None:
            parts.append(f"{records:,} records ({records / elapsed:,.0f}/s),")
        byte_rate = (done_bytes - self.start_bytes) / elapsed
        if self.total_bytes:
            percent = 100.0 * done_bytes / self.total_bytes
            parts.append(
                f"{format_bytes(done_bytes)} / {format_bytes(self.total_bytes)} ({percent:.1f}%),"
            )
        else:
            parts.append(f"{format_bytes(done_bytes)},")
        parts.append(f"{format_bytes(byte_rate)}/s,")
        if self.total_bytes and byte_rate > 0:
            eta = max(self.total_bytes - done_bytes, 0) / byte_rate
            parts.append(f"ETA {format_duration(eta)}")
        else:
            parts.append("ETA unknown")
        return " ".join(parts)


# --- download ---------------------------------------------------------------------------


class DownloadError(Exception):
    """A dump could not be downloaded (HTTP error, or the connection kept failing)."""


class DownloadCancelledError(DownloadError):
    """The download was stopped because the crawl is shutting down."""


@dataclass
class Validators:
    """What the server said about its copy, kept next to the file (``.download.json``)."""

    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    complete: bool = False

    @classmethod
    def load(cls, path: Path) -> Validators:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(temporary, path)


@dataclass
class DownloadResult:
    """Where a downloaded dump is and how this run got it."""

    path: Path
    # "downloaded" (whole file this run), "resumed" (a partial file completed with Range),
    # "not_modified" (the local copy is current: the server answered 304) or "local" (a
    # path given, read in place).
    outcome: str
    bytes_received: int
    size: int
    etag: str | None
    last_modified: str | None


def dump_file_name(url: str) -> str:
    """The local file name for a dump URL: the last segment of its path."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in {".", ".."}:
        raise DownloadError(f"no file name in dump URL {redact_url(url)}")
    return name


def download_dump(
    url: str,
    directory: str | Path,
    *,
    user_agent: str,
    timeout: float = 60.0,
    retries: int = 3,
    progress_interval: float = 30.0,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> DownloadResult:
    """Download ``url`` into ``directory``, resuming a partial file; blocking (run it in a thread).

    A complete earlier download is revalidated with ``If-None-Match`` / ``If-Modified-Since``
    and kept on 304. A partial one is resumed with ``Range`` + ``If-Range``: the server sends
    the rest (206) or, when its copy changed, the whole new file (200). A connection that
    drops mid-body is resumed up to ``retries`` times; HTTP errors fail at once. A
    ``user:password@`` in the URL is sent as basic auth, to that host only.
    """
    if not is_url(url):
        raise DownloadError(f"not an http(s) URL: {redact_url(url)}")
    # urllib would take the userinfo for part of the host name.
    url, user, password = split_userinfo(url)
    authorization = basic_auth(unquote(user), unquote(password)) if password is not None else None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = dump_file_name(url)
    final = directory / name
    part = directory / f"{name}.part"
    sidecar = directory / f"{name}.download.json"
    shown = redact_url(url)
    received = 0
    resumed = False
    attempt = 0
    while True:
        validators = Validators.load(sidecar)
        headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
        offset = part.stat().st_size if part.exists() else 0
        conditional = False
        if final.exists() and validators.complete:
            conditional = _add_conditions(headers, validators)
        elif offset and (validators.etag or validators.last_modified):
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validators.etag or validators.last_modified or ""
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) only
            if authorization is not None:
                # Unredirected: a redirect to another host must not carry the password.
                request.add_unredirected_header("Authorization", authorization)
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status = response.status
                if status == 206:
                    start, total = _content_range(response.headers.get("Content-Range"))
                    if start != offset:
                        raise DownloadError(
                            f"{shown}: server resumed at byte {start}, expected {offset}"
                        )
                    resumed = True
                    mode = "ab"
                    logger.info("Resuming %s at %s", shown, format_bytes(offset))
                else:
                    offset = 0
                    total = _int_or_none(response.headers.get("Content-Length"))
                    mode = "wb"
                    logger.info(
                        "Downloading %s (%s) to %s",
                        shown,
                        format_bytes(total) if total is not None else "size unknown",
                        final,
                    )
                validators = Validators(
                    url=shown,
                    etag=response.headers.get("ETag"),
                    last_modified=response.headers.get("Last-Modified"),
                    size=total,
                )
                validators.save(sidecar)
                received += _copy_body(
                    response,
                    part,
                    mode,
                    offset,
                    total,
                    shown,
                    progress_interval,
                    cancel,
                    chunk_size,
                )
        except urllib.error.HTTPError as error:
            error.close()  # it holds the response, and so its socket, open until closed
            if error.code == 304 and conditional:
                logger.info("%s is unchanged (304): keeping %s", shown, final)
                return DownloadResult(
                    final,
                    "not_modified",
                    0,
                    final.stat().st_size,
                    validators.etag,
                    validators.last_modified,
                )
            if error.code == 416 and offset:
                # The partial file is not a prefix the server can continue: start over.
                part.unlink()
                continue
            raise DownloadError(f"{shown}: HTTP {error.code} {error.reason}") from None
        except (OSError, HTTPException, _ShortBodyError) as error:
            if isinstance(error, urllib.error.URLError) and not _is_connection_error(error):
                raise DownloadError(f"{shown}: {error.reason}") from None
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"{shown}: download failed {attempt} times, last: {error!r}; "
                    f"{format_bytes(part.stat().st_size if part.exists() else 0)} kept in "
                    f"{part} for the next run to resume"
                ) from None
            logger.warning(
                "Download of %s interrupted (%r), resuming (retry %d/%d)",
                shown,
                error,
                attempt,
                retries,
            )
            continue
        os.replace(part, final)
        validators.complete = True
        validators.save(sidecar)
        size = final.stat().st_size
        logger.info("Downloaded %s: %s", shown, format_bytes(size))
        return DownloadResult(
            final,
            "resumed" if resumed else "downloaded",
            received,
            size,
            validators.etag,
            validators.last_modified,
        )


class _ShortBodyError(Exception):
    """The connection closed before the announced length arrived (http.client is silent)."""


def _add_conditions(headers: dict[str, str], validators: Validators) -> bool:
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return bool(validators.etag or validators.last_modified)


def _copy_body(
    response: Any,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    shown: str,
    progress_interval: float,
    cancel: threading.Event | None,
    chunk_size: int,
) -> int:
    """Stream the body into ``part``; the number of bytes written this call."""
    progress = Progress(f"download {shown}", total, progress_interval, start_bytes=offset)
    written = 0
    with part.open(mode) as out:
        while True:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelledError(f"{shown}: cancelled, partial file kept in {part}")
            chunk = response.read(chunk_size)
            if not chunk:
                break
            out.write(chunk)
            written += len(chunk)
            progress.update(offset + written)
    if total is not None and offset + written < total:
        raise _ShortBodyError(f"got {offset + written} of {total} bytes")
    return written


def _content_range(value: str | None) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        raise DownloadError(f"206 with an unusable Content-Range: {value!r}")
    total = match[3]
    return int(match[1]), None if total == "*" else int(total)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_connection_error(error: urllib.error.URLError) -> bool:
    """A URLError worth resuming after: the connection failed, not the URL."""
    return isinstance(error.reason, OSError)


# --- reading ----------------------------------------------------------------------------


class DumpReadError(Exception):
    """The compressed stream is truncated or corrupt: nothing after ``line_number`` is readable."""

    def __init__(self, line_number: int, reason: str, detail: str) -> None:
        super().__init__(f"line {line_number}: {reason}: {detail}")
        self.line_number = line_number
        self.reason = reason
        self.detail = detail


_DECOMPRESSORS: dict[str, Callable[..., IO[bytes]]] = {
    ".gz": gzip.open,
    ".bz2": bz2.open,
    ".xz": lzma.open,
}


class DumpFile:
    """A local dump opened for streaming: decompressed by its suffix, position in bytes of the file.

    ``stream`` is the decompressed byte stream (hand it to ``tarfile.open(fileobj=..., mode="r|")``
    for a tar dump); ``lines()`` yields ``(line_number, line)`` for line-based dumps.
    ``position`` counts the file's own (compressed) bytes consumed, so ``position / size``
    is the true fraction done whatever the compression.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.raw: IO[bytes] = self.path.open("rb")
        self.size = os.fstat(self.raw.fileno()).st_size
        decompressor = _DECOMPRESSORS.get(self.path.suffix.lower())
        self.stream: IO[bytes] = decompressor(self.raw, mode="rb") if decompressor else self.raw
        self.line_number = 0

    @property
    def position(self) -> int:
        return self.raw.tell()

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line_number, line without newline)`` from 1; ``DumpReadError`` on a bad stream end."""
        try:
            for line in self.stream:
                self.line_number += 1
                yield self.line_number, line.rstrip(b"\r\n")
        except EOFError as error:
            raise DumpReadError(self.line_number + 1, "truncated", str(error)) from None
        except (OSError, zlib.error, lzma.LZMAError) as error:
            raise DumpReadError(self.line_number + 1, "corrupt", str(error)) from None

    def close(self) -> None:
        self.stream.close()
        self.raw.close()

    def __enter__(self) -> DumpFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- in a crawl ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BadLineLimit:
    """When a dump's bad lines make its import a failure rather than a few skips.

    A dump whose lines are all bad, or (from ``min_lines`` lines read) more than
    ``max_share`` of them, is not the file it claims to be (a garbage or mislabelled
    download): its few good lines are kept, but the import must not count as done.
    Below ``min_lines`` only a dump with no good line at all fails, so one bad line in
    a three-line file stays a skip.
    """

    max_share: float
    min_lines: int

    @classmethod
    def from_settings(cls, settings: Any) -> BadLineLimit:
        """``DUMP_MAX_BAD_LINE_SHARE`` and ``DUMP_BAD_LINE_MIN_LINES``."""
        return cls(
            settings.getfloat("DUMP_MAX_BAD_LINE_SHARE"),
            settings.getint("DUMP_BAD_LINE_MIN_LINES"),
        )

    def exceeded(self, lines: int, bad_lines: int) -> bool:
        """Whether ``bad_lines`` of ``lines`` read fail the import.

        A stream break is a bad line that was never a whole line, hence the ``max``.
        """
        read = max(lines, bad_lines)
        if not bad_lines:
            return False
        if bad_lines >= read:
            return True
        return read >= self.min_lines and bad_lines / read > self.max_share


def import_failed(crawler: Crawler, source: str, dump: str, lines: int, bad_lines: int) -> bool:
    """Judge an import by its bad lines; past ``BadLineLimit`` log one ERROR, set the stat
    ``<source>/import/failed`` and return True (the caller then marks the dump not complete)."""
    limit = BadLineLimit.from_settings(crawler.settings)
    if not limit.exceeded(lines, bad_lines):
        return False
    crawler.stats.set_value(f"{source}/import/failed", 1)
    logger.error(
        "Import of %s failed: %d of %d lines are bad (DUMP_MAX_BAD_LINE_SHARE %s): "
        "not a usable dump, its sync state is not advanced",
        dump,
        bad_lines,
        max(lines, bad_lines),
        limit.max_share,
    )
    return True


# Lines a worker thread reads and maps in one trip: big enough to amortise the hand-over,
# small enough that two batches in memory stay a few MB.
BATCH_LINES = 1000


class DumpBatch(Protocol):
    """What ``read_ahead`` needs of a batch: its items and whether the file ended."""

    items: list[Any]
    end: bool


BatchT = TypeVar("BatchT", bound=DumpBatch)


# Young objects allocated between two cyclic-GC passes while a dump is read (default: 700).
IMPORT_GC_THRESHOLD = 50_000


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector less often while a dump is imported.

    A batch of parsed records is tens of thousands of young dicts and lists: at the default
    threshold the collector walks them forty times a batch, and each full pass walks every
    object Scrapy and Twisted made at start-up too. Records hold no cycles (reference
    counting frees them), so passes are made rarer and the start-up objects frozen out of
    them: about a fifth of an import's time.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(IMPORT_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def read_ahead(
    read_batch: Callable[[int], BatchT], limit: int | None
) -> AsyncIterator[BatchT]:
    """Batches of ``read_batch(max_items)`` run in a worker thread, the next one read while
    the caller yields this one's items; stops at the end of the file or at ``limit`` items.

    Closing the iterator (a spider closed mid-dump) or cancelling its reader (a crawl
    stopped) waits for the batch in flight, so the caller may close the file right after.
    """
    produced = 0

    def next_batch() -> asyncio.Future[BatchT]:
        budget = BATCH_LINES if limit is None else min(BATCH_LINES, limit - produced)
        return asyncio.ensure_future(asyncio.to_thread(read_batch, budget))

    pending = next_batch()
    try:
        while True:
            # Shielded: a cancelled await would leave the thread reading a file the caller
            # closes next ("I/O operation on closed file"); finally waits for it instead.
            batch = await asyncio.shield(pending)
            produced += len(batch.items)
            done = batch.end or (limit is not None and produced >= limit)
            if not done:
                pending = next_batch()
            yield batch
            if done:
                return
    finally:
        if not pending.done():
            await asyncio.wait([pending])
        if not pending.cancelled():
            # The batch is not wanted any more, nor its read error: retrieved, not logged
            # as "Task exception was never retrieved".
            pending.exception()


def reading_ahead(
    read_batch: Callable[[int], BatchT], limit: int | None
) -> aclosing[AsyncIterator[BatchT]]:
    """``read_ahead`` as an ``async with`` block that closes it, whoever stops first."""
    return aclosing(read_ahead(read_batch, limit))


async def fetch_dump(crawler: Crawler, location: str) -> DownloadResult:
    """The local file for ``location``: a path is used in place (outcome ``local``), a URL
    downloaded (resumably).

    The download runs in a worker thread; settings: ``DUMPS_DIR``, ``USER_AGENT``,
    ``DOWNLOAD_TIMEOUT``, ``DUMP_DOWNLOAD_RETRIES``, ``PROGRESS_INTERVAL``. Stats:
    ``dumps/download/<outcome>`` (downloaded, resumed, not_modified, failed) and
    ``dumps/download/bytes``. Raises ``DownloadError`` or ``FileNotFoundError``.
    """
    if not is_url(location):
        path = local_path(location)
        if not path.is_file():
            raise FileNotFoundError(f"no dump file at {path}")
        return DownloadResult(path, "local", 0, path.stat().st_size, None, None)
    settings = crawler.settings
    stats = crawler.stats
    cancel = threading.Event()
    try:
        result = await asyncio.to_thread(
            download_dump,
            location,
            settings.get("DUMPS_DIR") or "data/dumps",
            user_agent=settings.get("USER_AGENT") or "contentcrawl",
            timeout=settings.getfloat("DOWNLOAD_TIMEOUT", 60.0),
            retries=settings.getint("DUMP_DOWNLOAD_RETRIES", 3),
            progress_interval=settings.getfloat("PROGRESS_INTERVAL", 30.0),
            cancel=cancel,
        )
    except asyncio.CancelledError:
        # The crawl is stopping: let the worker thread stop between two chunks.
        cancel.set()
        raise
    except DownloadError:
        stats.inc_value("dumps/download/failed")
        raise
    stats.inc_value(f"dumps/download/{result.outcome}")
    stats.inc_value("dumps/download/bytes", result.bytes_received)
    return result


class ItemFlow:
    """Backpressure and closing for items yielded from ``start()``.

    Scrapy hands each start item to the pipelines and asks for the next one at once, so a
    fast reader would pile items (and store batches) up in memory. ``await flow.sent()``
    after each yield returns at once until ``max_pending`` items are in the pipelines, then
    waits until half of them have been scraped, dropped or failed. ``await flow.drained()``
    before ``start()`` ends lets the engine see the crawl idle, and close, at once (it
    otherwise notices only at its next 5 s heartbeat).

    A spider closed before its ``start()`` ends (``CLOSESPIDER_*``, a monitor, Ctrl-C) needs
    two things Scrapy 2.19 does not do for start items: ``sent()`` answers False, so the
    reader stops instead of reading the rest of its file into a closing crawl; and once the
    last item in the pipelines is done, the closing scraper is told it is idle (Scrapy
    checks that after a response's items only, so the close would wait for ever).
    """

    # Seconds between two looks at a closing scraper whose last start items are finishing.
    CLOSE_CHECK_INTERVAL = 0.05

    def __init__(self, crawler: Crawler, max_pending: int) -> None:
        self.crawler = crawler
        self.max_pending = max(1, max_pending)
        self.pending = 0
        self._level = 0
        self._reached: asyncio.Event | None = None
        self._close_check: asyncio.TimerHandle | None = None
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(self._finished, signal=signal)

    def _finished(self, **_: Any) -> None:
        self.pending -= 1
        if self._reached is not None and self.pending <= self._level:
            self._reached.set()
        if self._close_check is None and spider_closing(self.crawler):
            self._close_when_idle()

    async def sent(self) -> bool:
        """Count one item handed to the engine and wait while the pipelines are full; False
        once the spider is closing: the caller reads no further."""
        self.pending += 1
        if self.pending >= self.max_pending:
            await self._wait_for(self.max_pending // 2)
        return self.open()

    def open(self) -> bool:
        """Whether the spider still takes items. Once it is closing the caller sends none
        (Scrapy would still take them, into pipelines that may have closed), and the
        closing scraper is seen through as after an item: its last item may have finished
        before the close began, leaving no later item to tell it."""
        if not spider_closing(self.crawler):
            return True
        if self._close_check is None:
            self._close_when_idle()
        return False

    async def drained(self) -> None:
        """Wait until every item sent has left the pipelines."""
        await self._wait_for(0)

    async def _wait_for(self, level: int) -> None:
        if self.pending <= level:
            return
        self._level = level
        self._reached = asyncio.Event()
        try:
            await self._reached.wait()
        finally:
            self._reached = None

    def _close_when_idle(self) -> None:
        """Let a closing scraper finish once its start items are done.

        Looked at again until then: an item's signal handlers run before the scraper
        counts the item done.
        """
        self._close_check = None
        engine = self.crawler.engine
        if engine.spider is None or engine.scraper.slot is None:
            return
        closing = engine.scraper.slot.closing
        if closing is not None and closing.called:
            return
        if closing is not None and engine.scraper.slot.is_idle():
            engine.scraper._check_if_closing()
            return
        # Not closing yet (the engine closes the downloader first), or items still finishing.
        self._close_check = asyncio.get_running_loop().call_later(
            self.CLOSE_CHECK_INTERVAL, self._close_when_idle
        )


def spider_closing(crawler: Crawler) -> bool:
    """Whether the crawl's spider is closing or closed (or the engine stopping)."""
    try:
        engine = crawler.engine
    except RuntimeError:  # the crawl has not started
        return False
    if not engine.running:
        return True
    # Scrapy has no public flag for it: close_spider_async() starts by giving the engine's
    # slot a ``closing`` Deferred, and drops the slot when done.
    slot = engine._slot
    return slot is None or slot.closing is not None
