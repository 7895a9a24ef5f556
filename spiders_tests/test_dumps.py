"""contentcrawl.dumps: resumable download, streaming line reader, progress, backpressure."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import lzma
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Self

import pytest
from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from contentcrawl.dumps import (
    IMPORT_GC_THRESHOLD,
    DownloadCancelledError,
    DownloadError,
    DownloadResult,
    DumpFile,
    DumpReadError,
    Progress,
    Validators,
    download_dump,
    dump_file_name,
    fewer_gc_passes,
)
from contentcrawl.dumps.crawl import ItemFlow
from contentcrawl.redaction import basic_auth
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.fakes.musicbrainz_samples import dump_lines, generated_docs
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer, serve_bytes

LINES = [b"line %d\t{}\n" % number for number in range(1, 2001)]
PAYLOAD = gzip.compress(b"".join(LINES), mtime=0)


class FileHost:
    """Serves ``data`` at /dumps/file.txt.gz; ``cut_next`` cuts the next body short."""

    def __init__(self, server: FakeServer, data: bytes) -> None:
        self.data = data
        self.cut_next: int | None = None
        server.route("GET", r"/dumps/file\.txt\.gz")(self._serve)
        self.url = f"{server.url}/dumps/file.txt.gz"

    def _serve(self, request: FakeRequest) -> FakeResponse:
        cut, self.cut_next = self.cut_next, None
        return serve_bytes(request, self.data, cut_after=cut)


def fetch(url: str, directory: Path, **kwargs: Any) -> DownloadResult:
    return download_dump(
        url, directory, user_agent="contentcrawl-test", timeout=5, progress_interval=30, **kwargs
    )


# --- download ---------------------------------------------------------------------------


def test_download_writes_file_and_validators(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    result = fetch(host.url, tmp_path)
    assert result.outcome == "downloaded"
    assert result.path == tmp_path / "file.txt.gz"
    assert result.path.read_bytes() == PAYLOAD
    assert result.bytes_received == len(PAYLOAD)
    assert not (tmp_path / "file.txt.gz.part").exists()
    saved = Validators.load(tmp_path / "file.txt.gz.download.json")
    assert saved.complete
    assert saved.etag == result.etag
    assert saved.etag.startswith('"')
    assert saved.size == len(PAYLOAD)
    assert fake_server.requests[0].header("user-agent") == "contentcrawl-test"


def test_credentials_in_the_url_are_sent_as_basic_auth_and_kept_out_of_sight(
    fake_server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A "/" as generated passwords have, escaped in the URL as RFC 3986 asks.
    expected = basic_auth("mirror", "s3cr/et")

    @fake_server.route("GET", r"/private/file\.txt\.gz")
    def private(request: FakeRequest) -> FakeResponse:
        if request.header("authorization") != expected:
            return FakeResponse.json({"error": "who are you"}, 401)
        return serve_bytes(request, PAYLOAD)

    url = fake_server.url.replace("://", "://mirror:s3cr%2Fet@") + "/private/file.txt.gz"
    with caplog.at_level(logging.DEBUG):
        result = fetch(url, tmp_path)

    assert result.path.read_bytes() == PAYLOAD
    sidecar = (tmp_path / "file.txt.gz.download.json").read_text()
    assert "s3cr" not in sidecar
    assert "s3cr" not in caplog.text


def test_basic_auth_is_not_forwarded_on_a_redirect(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)

    @fake_server.route("GET", r"/moved/file\.txt\.gz")
    def moved(request: FakeRequest) -> FakeResponse:
        return FakeResponse(302, b"", {"Location": host.url})

    url = fake_server.url.replace("://", "://mirror:pw@") + "/moved/file.txt.gz"
    fetch(url, tmp_path)

    first, followed = fake_server.requests
    assert first.header("authorization") == basic_auth("mirror", "pw")
    assert followed.header("authorization") is None


def test_cut_download_resumes_next_run_with_range(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    half = len(PAYLOAD) // 2
    host.cut_next = half
    with pytest.raises(DownloadError, match="kept in"):
        fetch(host.url, tmp_path, retries=0)
    part = tmp_path / "file.txt.gz.part"
    assert part.stat().st_size == half
    assert not (tmp_path / "file.txt.gz").exists()

    result = fetch(host.url, tmp_path, retries=0)

    second = fake_server.requests[1]
    assert second.header("range") == f"bytes={half}-"
    assert second.header("if-range") == Validators.load(tmp_path / "file.txt.gz.download.json").etag
    assert result.outcome == "resumed"
    assert result.bytes_received == len(PAYLOAD) - half
    assert result.path.read_bytes() == PAYLOAD


def test_cut_download_resumes_within_the_run(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    host.cut_next = 1000
    result = fetch(host.url, tmp_path, retries=2)
    assert result.outcome == "resumed"
    assert result.path.read_bytes() == PAYLOAD
    assert [request.header("range") for request in fake_server.requests] == [None, "bytes=1000-"]


def test_unchanged_file_is_not_downloaded_again(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    first = fetch(host.url, tmp_path)
    again = fetch(host.url, tmp_path)
    conditional = fake_server.requests[1]
    assert conditional.header("if-none-match") == first.etag
    assert conditional.header("if-modified-since") == first.last_modified
    assert again.outcome == "not_modified"
    assert again.bytes_received == 0
    assert again.path.read_bytes() == PAYLOAD


def test_changed_file_replaces_the_old_copy(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    fetch(host.url, tmp_path)
    host.data = gzip.compress(b"new month\n", mtime=0)
    result = fetch(host.url, tmp_path)
    assert result.outcome == "downloaded"
    assert result.path.read_bytes() == host.data


def test_partial_file_of_an_older_copy_restarts(fake_server: FakeServer, tmp_path: Path) -> None:
    host = FileHost(fake_server, PAYLOAD)
    host.cut_next = 500
    with pytest.raises(DownloadError):
        fetch(host.url, tmp_path, retries=0)
    host.data = gzip.compress(b"a different dump\n" * 100, mtime=0)
    result = fetch(host.url, tmp_path, retries=0)
    # If-Range no longer matches: the server sends the whole new file (200), not a range.
    assert fake_server.requests[1].header("range") == "bytes=500-"
    assert result.outcome == "downloaded"
    assert result.path.read_bytes() == host.data


def test_http_error_fails_at_once_without_leaking_secrets(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError) as raised:
        fetch(f"{fake_server.url}/missing.gz?token=s3cr3t-value", tmp_path, retries=3)
    assert "HTTP 404" in str(raised.value)
    assert "s3cr3t-value" not in str(raised.value)
    assert len(fake_server.requests) == 1


def test_cancel_stops_between_chunks_and_keeps_the_part(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    host = FileHost(fake_server, PAYLOAD)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadCancelledError):
        fetch(host.url, tmp_path, cancel=cancel)
    assert (tmp_path / "file.txt.gz.part").exists()
    assert not (tmp_path / "file.txt.gz").exists()


def test_dump_file_name_comes_from_the_url_path() -> None:
    assert dump_file_name("https://h/data/ol_dump_works_latest.txt.gz?x=1") == (
        "ol_dump_works_latest.txt.gz"
    )
    with pytest.raises(DownloadError):
        dump_file_name("https://h/")


# --- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("dump.txt", lambda data: data),
        ("dump.txt.gz", lambda data: gzip.compress(data, mtime=0)),
        ("dump.txt.xz", lzma.compress),
    ],
)
def test_lines_are_numbered_and_position_reaches_the_size(
    tmp_path: Path, name: str, compress: Callable[[bytes], bytes]
) -> None:
    path = tmp_path / name
    path.write_bytes(compress(b"".join(LINES)))
    with DumpFile(path) as dump:
        positions = []
        read = []
        for number, line in dump.lines():
            read.append((number, line))
            positions.append(dump.position)
        assert read[0] == (1, b"line 1\t{}")
        assert read[-1] == (2000, b"line 2000\t{}")
        assert positions == sorted(positions)
        assert dump.position == dump.size == path.stat().st_size


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(b"a\r\nb")
    with DumpFile(path) as dump:
        assert list(dump.lines()) == [(1, b"a"), (2, b"b")]


def test_truncated_gzip_raises_after_the_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt.gz"
    path.write_bytes(PAYLOAD[: len(PAYLOAD) - 40])
    read: list[int] = []
    with DumpFile(path) as dump, pytest.raises(DumpReadError) as raised:
        read.extend(number for number, _ in dump.lines())
    assert raised.value.reason == "truncated"
    assert read == list(range(1, len(read) + 1))
    assert 1900 < len(read) < 2000
    assert raised.value.line_number == len(read) + 1


def test_corrupt_gzip_raises_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt.gz"
    damaged = bytearray(PAYLOAD)
    damaged[len(damaged) // 2 : len(damaged) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(damaged))
    with DumpFile(path) as dump, pytest.raises(DumpReadError) as raised:
        list(dump.lines())
    assert raised.value.reason == "corrupt"


# --- progress ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_has_rate_bytes_percent_and_eta() -> None:
    clock = Clock()
    progress = Progress("openlibrary_books", 4 * 1024**3, 30, clock=clock)
    clock.now += 100
    line = progress.describe(1024**3, 250_000)
    assert line == (
        "openlibrary_books: 250,000 records (2,500/s), 1.0 GiB / 4.0 GiB (25.0%), "
        "10.2 MiB/s, ETA 0:05:00"
    )


def test_progress_logs_only_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = Progress("dump", 1000, 30, clock=clock)
    caplog.set_level(logging.INFO, logger="contentcrawl.dumps")
    for step in range(1, 10):
        clock.now += 10
        progress.update(step * 100, step)
    # 90 s with a 30 s interval: at 30, 60 and 90.
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("dump: 3 records")
    assert "(30.0%)" in lines[0]


def test_progress_without_size_says_eta_unknown() -> None:
    clock = Clock()
    progress = Progress("download", None, 30, clock=clock)
    clock.now += 2
    assert progress.describe(2048) == "download: 2.0 KiB, 1.0 KiB/s, ETA unknown"


# --- backpressure -----------------------------------------------------------------------


@deferred_f_from_coro_f
async def test_item_flow_waits_until_half_the_items_are_done() -> None:
    crawler = get_crawler()
    flow = ItemFlow(crawler, max_pending=4)
    for _ in range(3):
        await flow.sent()
    fourth = asyncio.ensure_future(flow.sent())
    await asyncio.sleep(0)
    assert not fourth.done()
    crawler.signals.send_catch_log(signals.item_scraped, item={}, response=None, spider=None)
    await asyncio.sleep(0)
    assert not fourth.done()
    crawler.signals.send_catch_log(signals.item_dropped, item={}, response=None, spider=None)
    await asyncio.wait_for(fourth, timeout=5)
    assert flow.pending == 2


@deferred_f_from_coro_f
async def test_item_flow_drained_waits_for_the_last_item() -> None:
    crawler = get_crawler()
    flow = ItemFlow(crawler, max_pending=16)
    await flow.sent()
    await flow.sent()
    drained = asyncio.ensure_future(flow.drained())
    crawler.signals.send_catch_log(signals.item_scraped, item={}, response=None, spider=None)
    await asyncio.sleep(0)
    assert not drained.done()
    crawler.signals.send_catch_log(signals.item_error, item={}, response=None, spider=None)
    await asyncio.wait_for(drained, timeout=5)
    assert flow.pending == 0
    await asyncio.wait_for(flow.drained(), timeout=5)


class WaitsAtAYield(Spider):
    """Yields one start item, then waits for a next one that never comes: a dump reader
    waiting on its next chunk."""

    name = "waits_at_a_yield"
    flow: ItemFlow

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.flow = ItemFlow(crawler, max_pending=16)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        yield {"number": 1}
        await self.flow.sent()
        await asyncio.Event().wait()


class StopsTheCrawlMidItem:
    """A pipeline that begins the crawl's close (as Ctrl-C does) while it holds the item."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.stopping: list[asyncio.Task[None]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def process_item(self, item: Any) -> Any:
        self.stopping.append(asyncio.ensure_future(self.crawler.stop_async()))
        await asyncio.sleep(0.3)
        return item


@deferred_f_from_coro_f
async def test_a_close_begun_with_a_start_item_in_the_pipelines_ends_once_it_is_done(
    tmp_path: Path,
) -> None:
    settings = {
        "ITEM_PIPELINES": {StopsTheCrawlMidItem: 100},
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "s.db"),
    }
    crawler = make_crawler(WaitsAtAYield, settings)

    running = asyncio.ensure_future(crawler.crawl_async())
    try:
        done, _ = await asyncio.wait([running], timeout=5)
    finally:
        running.cancel()

    # Scrapy tells a closing scraper it is idle after a response's items only: without
    # ItemFlow's watch, this close waited for ever once the item was done.
    assert done, "the crawl did not end"

    assert crawler.stats.get_value("item_scraped_count") == 1
    assert crawler.stats.get_value("finish_reason") == "shutdown"


def test_fewer_gc_passes_while_importing_then_as_before() -> None:
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    seen: list[tuple[int, int]] = []

    def failing_import() -> None:
        with fewer_gc_passes():
            seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))
            raise RuntimeError("an import that fails midway")

    with pytest.raises(RuntimeError):
        failing_import()
    # Start-up objects were out of the collector's way and passes rarer, then as before.
    assert seen[0][0] > frozen
    assert seen[0][1] > threshold[0]
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen


@deferred_f_from_coro_f
async def test_a_musicbrainz_dump_import_closed_mid_dump_ends_with_the_crawl(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "artist.jsonl"
    dump.write_bytes(b"".join(dump_lines(generated_docs("artist", 20_000))))
    settings = {
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "s.sqlite3"),
        "CLOSESPIDER_ITEMCOUNT": 1_500,
    }
    crawler = await crawl(MusicBrainzArtistsSpider, settings, mode="dump", dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "closespider_itemcount"
    # The reader stopped with the spider instead of reading the rest of the dump.
    assert stats["musicbrainz/dump/lines"] < 20_000
    # Scrapy never closes a closing spider's start(): the import was ended at the close, so
    # its dump is closed and the import's GC setting undone before the crawl returned.
    assert crawler.spider.import_ended.is_set()
    assert gc.get_threshold()[0] != IMPORT_GC_THRESHOLD
