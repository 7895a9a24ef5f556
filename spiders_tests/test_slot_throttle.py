"""SlotAutoThrottle: a slot's configured delay is its floor; per-slot target concurrency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from itertools import pairwise
from typing import Any

import pytest
import scrapy
from scrapy.http import Response
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.test import get_crawler

from contentcrawl.extensions.slot_throttle import SlotAutoThrottle
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer


class SlotsSpider(scrapy.Spider):
    """Fetches ``count`` paths per slot of ``slots`` and notes each slot's delay as it goes."""

    name = "slot_throttle_test"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delays: dict[str, list[float]] = defaultdict(list)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for n in range(self.count):
            for slot in self.slots:
                yield scrapy.Request(f"{self.base_url}/{slot}/{n}", meta={"download_slot": slot})

    def parse(self, response: Response) -> None:
        slot = response.meta["download_slot"]
        # AutoThrottle has adjusted the delay on response_downloaded, before this callback.
        self.delays[slot].append(self.crawler.engine.downloader.slots[slot].delay)


@pytest.fixture
def slow_server() -> Iterator[FakeServer]:
    """A fake that takes 0.1 s over every answer."""
    server = FakeServer(latency=0.1).start()

    @server.route("GET", r"/\w+/\d+")
    def ok(request: FakeRequest) -> FakeResponse:
        return FakeResponse.json({"ok": True})

    yield server
    server.stop()


def arrivals(server: FakeServer, pattern: str) -> list[float]:
    return sorted(r.arrived for r in server.hits(pattern))


@deferred_f_from_coro_f
async def test_slot_delay_is_a_floor(fake_server: FakeServer) -> None:
    fake_server.route("GET", r"/api/\d+")(lambda request: FakeResponse.json({"ok": True}))
    slots = {"api": {"concurrency": 4, "delay": 0.2, "jitter": 0}}

    crawler = await crawl(
        SlotsSpider,
        {"ITEM_PIPELINES": {}, "DOWNLOAD_SLOTS": slots, "AUTOTHROTTLE_ENABLED": True},
        base_url=fake_server.url,
        slots=["api"],
        count=8,
    )

    # Stock AutoThrottle would take this fast server's latency down to DOWNLOAD_DELAY (0).
    delays = crawler.spider.delays["api"]
    assert len(delays) == 8
    assert min(delays) == pytest.approx(0.2)
    # Arrival gaps carry the transit's jitter (the first request also opens a connection).
    gaps = [b - a for a, b in pairwise(arrivals(fake_server, r"/api/\d+"))]
    assert min(gaps) >= 0.15, gaps
    assert sum(gaps) / len(gaps) >= 0.195, gaps


@deferred_f_from_coro_f
async def test_target_concurrency_is_per_slot(slow_server: FakeServer) -> None:
    slots = {
        "wide": {"concurrency": 8, "delay": 0, "jitter": 0, "target_concurrency": 8},
        "narrow": {"concurrency": 8, "delay": 0, "jitter": 0},
    }

    crawler = await crawl(
        SlotsSpider,
        {
            "ITEM_PIPELINES": {},
            "DOWNLOAD_SLOTS": slots,
            "AUTOTHROTTLE_ENABLED": True,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        },
        base_url=slow_server.url,
        slots=["wide", "narrow"],
        count=16,
    )

    # Delay converges on latency / target concurrency: ~0.1 s / 8 and ~0.1 s / 1.
    wide, narrow = crawler.spider.delays["wide"][-1], crawler.spider.delays["narrow"][-1]
    assert wide < 0.04
    assert narrow >= 0.09
    # After the first burst, "wide" keeps several requests in flight, "narrow" about one.
    wide_late = arrivals(slow_server, r"/wide/\d+")[8:]
    narrow_late = arrivals(slow_server, r"/narrow/\d+")[8:]
    assert wide_late[-1] - wide_late[0] < 0.5
    assert narrow_late[-1] - narrow_late[0] >= 0.6


def test_target_concurrency_must_be_positive() -> None:
    crawler = get_crawler(
        settings_dict={
            "AUTOTHROTTLE_ENABLED": True,
            "DOWNLOAD_SLOTS": {"api": {"delay": 1.0, "target_concurrency": 0}},
        }
    )
    with pytest.raises(ValueError, match=r"DOWNLOAD_SLOTS\['api'\]\['target_concurrency'\]"):
        SlotAutoThrottle(crawler)
