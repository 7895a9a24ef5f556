"""Retries and their pauses (PoliteRetryMiddleware, PacingMiddleware): whole-slot pauses on
429/503/network errors, recovery, giving up."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import pairwise
from typing import Any

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings
from scrapy.utils.response import response_status_message

from contentcrawl.middlewares.pacing import DeadlinePassed, PacingMiddleware
from contentcrawl.pacing import DOWNLOAD_DEADLINE, parse_retry_after
from contentcrawl.signals import request_gave_up
from contentcrawl.sources.base import ContentSpider
from spiders_tests.crawling import crawl, make_crawler
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer


class PathsSpider(ContentSpider):
    """Fetches ``paths`` ([(path, slot), ...]) from ``base_url`` in order, one request each."""

    name = "polite_retry_test"
    slot = "api"

    def __init__(self, base_url: str, paths: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url
        self.paths = paths
        self.received: list[str] = []

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for path, slot in self.paths:
            yield self.request(f"{self.base_url}{path}", meta={"download_slot": slot})

    def parse(self, response: Response) -> None:
        self.received.append(response.url.removeprefix(self.base_url))


class ChainSpider(PathsSpider):
    """Fetches ``paths`` one after the other: the next request leaves once a response is in."""

    name = "polite_retry_chain_test"

    async def start(self) -> AsyncIterator[scrapy.Request]:
        path, slot = self.paths[0]
        yield self.request(f"{self.base_url}{path}", meta={"download_slot": slot})

    def parse(self, response: Response) -> Iterator[scrapy.Request]:
        super().parse(response)
        if len(self.received) < len(self.paths):
            path, slot = self.paths[len(self.received)]
            yield self.request(f"{self.base_url}{path}", meta={"download_slot": slot})


# A request the slot sent before the client read a 429 arrives within this of it.
IN_FLIGHT = 0.1


def settings(**overrides: Any) -> dict[str, Any]:
    """Project settings for a fast, item-less crawl: tiny backoff, no jitter."""
    return {
        "ITEM_PIPELINES": {},
        "RETRY_TIMES": 5,
        "RETRY_BACKOFF_BASE": 0.1,
        "RETRY_BACKOFF_JITTER": 0,
        "DOWNLOAD_SLOTS": {"api": {"concurrency": 2, "delay": 0.0, "rate": 5.0, "jitter": 0}},
        **overrides,
    }


def arrivals(server: FakeServer, pattern: str) -> list[float]:
    return sorted(r.arrived for r in server.hits(pattern))


def failing_first(times: int, failure: FakeResponse | Callable[[], FakeResponse]) -> Any:
    """A handler answering ``failure`` (or its result) to the first ``times`` requests, then 200."""
    calls = 0

    def handler(request: FakeRequest, **groups: str) -> FakeResponse:
        nonlocal calls
        calls += 1
        if calls > times:
            return FakeResponse.json({"ok": True})
        return failure if isinstance(failure, FakeResponse) else failure()

    return handler


def ok(request: FakeRequest, **groups: str) -> FakeResponse:
    return FakeResponse.json({"ok": True})


# -- Retry-After parsing -------------------------------------------------------------------
def test_parse_retry_after_delta_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(b"120") == 120
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 -0000", now=now) == 30  # naive: GMT
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    assert parse_retry_after("-5") == 0
    for unreadable in (None, b"", "soon", "inf", "nan"):
        assert parse_retry_after(unreadable) is None


# -- whole crawls --------------------------------------------------------------------------
@pytest.mark.timing
@deferred_f_from_coro_f
async def test_retry_after_pauses_the_whole_slot(fake_server: FakeServer) -> None:
    fake_server.route("GET", "/limited")(
        failing_first(1, FakeResponse.json({"status_code": 25}, 429, **{"Retry-After": "1"}))
    )
    fake_server.route("GET", r"/other/\d+")(ok)
    paths = [("/limited", "api")] + [(f"/other/{n}", "api") for n in range(3)]

    crawler = await crawl(PathsSpider, settings(), base_url=fake_server.url, paths=paths)

    first_429, retried = arrivals(fake_server, "/limited")
    assert retried - first_429 >= 0.95
    # Nothing of the slot started during the pause: the other requests were held too (one
    # the slot had sent before the 429 came back may arrive just after it).
    later = [t - first_429 for t in arrivals(fake_server, r"/other/\d+") if t > first_429]
    assert any(gap >= 0.95 for gap in later)
    assert not [gap for gap in later if IN_FLIGHT < gap < 0.95], later
    assert sorted(crawler.spider.received) == ["/limited", "/other/0", "/other/1", "/other/2"]
    stats = crawler.stats.get_stats()
    assert stats["retry/api/429"] == 1
    assert stats["retry/api/backoff_seconds"] == pytest.approx(1.0, abs=0.05)
    assert stats["retry/count"] == 1
    # Stock key, named by Scrapy's status message ("429 Unknown Status" in Scrapy 2.19).
    assert [k for k in stats if k.startswith("retry/reason_count/")] == [
        f"retry/reason_count/{response_status_message(429)}"
    ]
    assert "retry/api/gave_up" not in stats


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_responses_in_flight_during_a_pause_do_not_shorten_it(
    fake_server: FakeServer,
) -> None:
    def slow(request: FakeRequest, n: str) -> FakeResponse:
        time.sleep(0.5 + 0.2 * int(n))  # the fake's own thread: answers during the pause
        return FakeResponse.json({"ok": True})

    fake_server.route("GET", "/limited")(
        failing_first(1, FakeResponse(429, b"", {"Retry-After": "1"}))
    )
    fake_server.route("GET", r"/slow/(?P<n>\d+)")(slow)
    fake_server.route("GET", r"/after/\d+")(ok)
    slots = {"api": {"concurrency": 4, "delay": 0.0, "rate": 5.0, "jitter": 0}}
    paths = [("/slow/0", "api"), ("/slow/1", "api"), ("/limited", "api")]
    paths += [(f"/after/{n}", "api") for n in range(3)]

    crawler = await crawl(
        PathsSpider,
        settings(DOWNLOAD_SLOTS=slots, RETRY_BACKOFF_BASE=1.0),
        base_url=fake_server.url,
        paths=paths,
    )

    # The slow successes answer requests sent before the pause: neither AutoThrottle
    # (their latency is below the raised delay) nor the backoff's decay may act on them.
    first_429 = arrivals(fake_server, "/limited")[0]
    assert max(arrivals(fake_server, r"/slow/\d+")) < first_429
    later = [t - first_429 for t in arrivals(fake_server, ".*") if t > first_429]
    assert len(later) == 4  # the retry and the three /after requests
    assert arrivals(fake_server, "/limited")[1] - first_429 >= 0.95
    assert not [gap for gap in later if IN_FLIGHT < gap < 0.95], later
    assert len(crawler.spider.received) == 6


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_503_backs_off_exponentially_then_recovers(fake_server: FakeServer) -> None:
    fake_server.route("GET", "/flaky")(failing_first(4, FakeResponse(503, b"busy")))
    fake_server.route("GET", r"/after/\d+")(ok)
    paths = [("/flaky", "api")] + [(f"/after/{n}", "api") for n in range(10)]
    slots = {"api": {"concurrency": 1, "delay": 0.0, "rate": 20.0, "jitter": 0}}

    crawler = await crawl(
        ChainSpider, settings(DOWNLOAD_SLOTS=slots), base_url=fake_server.url, paths=paths
    )

    gaps = [b - a for a, b in pairwise(arrivals(fake_server, "/flaky"))]
    assert len(gaps) == 4
    for n, gap in enumerate(gaps, start=1):
        expected = 0.1 * 2 ** (n - 1)
        assert expected * 0.95 <= gap < expected + 0.3, (n, gaps)
    # Each 503 answered a request sent after the previous one lowered the slot's rate
    # (20/s configured): the slot goes on at the learnt rate, 0.8**4 of it plus what ten
    # successes added back, not at its configured 0.05 s.
    rate = crawler.get_downloader_middleware(PacingMiddleware).rates.get("api")
    assert 20 * 0.8**4 < rate.rate < 20 * 0.8**3
    after = arrivals(fake_server, r"/after/\d+")
    tail = [b - a for a, b in pairwise(after)][-2:]
    assert all(rate.delay * 0.95 <= gap < 0.25 for gap in tail), tail
    stats = crawler.stats.get_stats()
    assert stats["retry/api/503"] == 4
    assert stats["retry/api/backoff_seconds"] == pytest.approx(1.5, abs=0.05)


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_retry_after_http_date_is_honoured(fake_server: FakeServer) -> None:
    def dated() -> FakeResponse:
        # HTTP-dates have whole seconds: 2 s ahead is between 1 and 2 s away.
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return FakeResponse(503, b"", {"Retry-After": when})

    fake_server.route("GET", "/dated")(failing_first(1, dated))

    crawler = await crawl(
        PathsSpider, settings(), base_url=fake_server.url, paths=[("/dated", "api")]
    )

    first, retried = arrivals(fake_server, "/dated")
    assert 0.95 <= retried - first < 2.5
    assert crawler.spider.received == ["/dated"]


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_absurd_retry_after_is_capped(fake_server: FakeServer) -> None:
    fake_server.route("GET", "/absurd")(
        failing_first(1, FakeResponse(429, b"", {"Retry-After": "86400"}))
    )

    crawler = await crawl(
        PathsSpider,
        settings(RETRY_AFTER_MAX=0.5),
        base_url=fake_server.url,
        paths=[("/absurd", "api")],
    )

    first, retried = arrivals(fake_server, "/absurd")
    assert 0.45 <= retried - first < 1.5
    assert crawler.spider.received == ["/absurd"]
    assert crawler.stats.get_value("retry/api/backoff_seconds") == pytest.approx(0.5)


@deferred_f_from_coro_f
async def test_cut_connection_is_retried_with_backoff(fake_server: FakeServer) -> None:
    fake_server.route("GET", "/cut")(failing_first(2, FakeResponse(200, b"x" * 1000, cut_after=10)))

    crawler = await crawl(
        PathsSpider,
        settings(RETRY_BACKOFF_BASE=0.2),
        base_url=fake_server.url,
        paths=[("/cut", "api")],
    )

    gaps = [b - a for a, b in pairwise(arrivals(fake_server, "/cut"))]
    assert len(gaps) == 2
    assert gaps[0] >= 0.19
    assert gaps[1] >= 0.38
    assert crawler.spider.received == ["/cut"]
    assert crawler.stats.get_value("retry/api/ResponseDataLossError") == 2


@pytest.fixture
def plain_log_records() -> Iterator[dict[str, Any]]:
    """Log records as Python makes them, without the crawl-wide redaction of LogRedaction.

    That safety net would hide whether the middleware redacts its own lines: switch it off
    (returns the EXTENSIONS to crawl with) and restore the record factory afterwards.
    """
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    extensions = get_project_settings().getdict("EXTENSIONS")
    yield {**extensions, "contentcrawl.extensions.log_redaction.LogRedaction": None}
    logging.setLogRecordFactory(factory)


@deferred_f_from_coro_f
async def test_give_up_sends_signal_once_and_logs_redacted_url(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture, plain_log_records: dict[str, Any]
) -> None:
    fake_server.route("GET", "/down")(lambda request: FakeResponse(503, b"down"))
    gave_up: list[dict[str, Any]] = []

    def on_gave_up(**kwargs: Any) -> None:
        gave_up.append(kwargs)

    crawler = make_crawler(
        PathsSpider, settings(RETRY_TIMES=2, RETRY_BACKOFF_BASE=0.05, EXTENSIONS=plain_log_records)
    )
    crawler.signals.connect(on_gave_up, signal=request_gave_up)
    caplog.set_level(logging.DEBUG, logger="contentcrawl")
    caplog.set_level(logging.DEBUG, logger="scrapy.downloadermiddlewares.retry")

    await crawler.crawl_async(base_url=fake_server.url, paths=[("/down?api_key=SECRET", "api")])

    assert len(fake_server.hits("/down")) == 3
    assert len(gave_up) == 1
    assert gave_up[0]["reason"] == "503"
    assert gave_up[0]["attempts"] == 3
    assert gave_up[0]["spider"] is crawler.spider
    stats = crawler.stats.get_stats()
    assert stats["retry/api/gave_up"] == 1
    assert stats["retry/api/503"] == 3
    assert stats["retry/max_reached"] == 1
    gave_up_lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "contentcrawl.middlewares.polite_retry"
    ]
    assert len(gave_up_lines) == 1
    assert f"<GET {fake_server.url}/down?api_key=***> (failed 3 times)" in gave_up_lines[0]
    assert len([r for r in caplog.records if "Retrying" in r.getMessage()]) == 2
    assert "SECRET" not in caplog.text


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_another_slot_is_not_slowed(fake_server: FakeServer) -> None:
    fake_server.route("GET", "/a/limited")(
        failing_first(1, FakeResponse(429, b"", {"Retry-After": "1"}))
    )
    fake_server.route("GET", r"/b/\d+")(ok)
    slots = {
        "a": {"concurrency": 1, "delay": 0.0, "rate": 10.0, "jitter": 0},
        "b": {"concurrency": 1, "delay": 0.0, "rate": 10.0, "jitter": 0},
    }
    paths = [("/a/limited", "a")] + [(f"/b/{n}", "b") for n in range(6)]

    crawler = await crawl(
        PathsSpider, settings(DOWNLOAD_SLOTS=slots), base_url=fake_server.url, paths=paths
    )

    first_429, retried = arrivals(fake_server, "/a/limited")
    assert retried - first_429 >= 0.95
    b_times = arrivals(fake_server, r"/b/\d+")
    assert len(b_times) == 6
    assert max(b_times) < first_429 + 0.9  # slot b went on at its own pace during a's pause
    assert max(b - a for a, b in pairwise(b_times)) < 0.4
    assert "retry/b/429" not in crawler.stats.get_stats()


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_a_slot_backoff_max_caps_its_pauses_retry_after_included(
    fake_server: FakeServer,
) -> None:
    fake_server.route("GET", "/capped")(
        failing_first(1, FakeResponse(429, b"", {"Retry-After": "30"}))
    )
    slots = {"api": {"concurrency": 1, "delay": 0.0, "rate": 20.0, "jitter": 0, "backoff_max": 0.3}}

    crawler = await crawl(
        PathsSpider,
        settings(DOWNLOAD_SLOTS=slots),
        base_url=fake_server.url,
        paths=[("/capped", "api")],
    )

    first, retried = arrivals(fake_server, "/capped")
    assert 0.28 <= retried - first < 1.0
    assert crawler.spider.received == ["/capped"]
    assert crawler.stats.get_value("retry/api/backoff_seconds") == pytest.approx(0.3)


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_each_host_of_a_slot_pauses_alone(fake_server: FakeServer) -> None:
    other_host = FakeServer().start()
    try:
        fake_server.route("GET", "/dead")(lambda request: FakeResponse(503, b""))
        other_host.route("GET", r"/alive/\d+")(ok)
        slots = {"images": {"concurrency": 1, "delay": 0.0, "jitter": 0, "backoff_max": 5}}
        dead = f"images@127.0.0.1:{fake_server.port}"
        alive = f"images@127.0.0.1:{other_host.port}"
        paths = [(f"{fake_server.url}/dead", dead)]
        paths += [(f"{other_host.url}/alive/{n}", alive) for n in range(5)]

        crawler = await crawl(
            PathsSpider,
            settings(DOWNLOAD_SLOTS=slots, RETRY_TIMES=1, RETRY_BACKOFF_BASE=1.0),
            base_url="",
            paths=paths,
        )
    finally:
        other_host.stop()

    first_503, retried = arrivals(fake_server, "/dead")
    assert retried - first_503 >= 0.7  # paused: 1 s ± 25 % jitter
    alive_times = arrivals(other_host, r"/alive/\d+")
    assert len(alive_times) == 5
    # The dead host's pause (1 s) held none of the other host's requests.
    assert max(alive_times) < first_503 + 0.5
    assert crawler.stats.get_value(f"retry/{dead}/503") == 2
    assert crawler.stats.get_value(f"retry/{alive}/503") is None
    downloader = crawler.engine.downloader
    assert downloader.per_slot_settings[dead] == downloader.per_slot_settings["images"]


class DeadlineSpider(PathsSpider):
    """Fetches /limited, then /image with a download deadline; notes how /image ended."""

    name = "polite_retry_deadline_test"

    async def start(self) -> AsyncIterator[scrapy.Request]:
        meta = {"dont_retry": True, "handle_httpstatus_list": [429]}
        yield self.request(f"{self.base_url}/limited", meta=meta, callback=self.parse_limited)

    def parse_limited(self, response: Response) -> Iterator[scrapy.Request]:
        self.asked_at = time.monotonic()
        meta = {DOWNLOAD_DEADLINE: self.asked_at + 10}
        yield self.request(f"{self.base_url}/image", meta=meta, errback=self.image_failed)

    def image_failed(self, failure: Any) -> None:
        self.image_failure = (failure.value, time.monotonic() - self.asked_at)


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_a_request_with_a_deadline_fails_at_once_while_its_slot_is_paused(
    fake_server: FakeServer,
) -> None:
    fake_server.route("GET", "/limited")(
        lambda request: FakeResponse(429, b"", {"Retry-After": "5"})
    )
    fake_server.route("GET", "/image")(ok)

    crawler = await crawl(DeadlineSpider, settings(), base_url=fake_server.url, paths=[])

    error, after = crawler.spider.image_failure
    assert isinstance(error, DeadlinePassed)
    assert after < 1.0  # not held for the 5 s pause it would only fail after
    assert fake_server.hits("/image") == []
