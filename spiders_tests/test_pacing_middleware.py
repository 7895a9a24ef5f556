"""PacingMiddleware: a slot's rate held in front of Scrapy's stock downloader and AutoThrottle."""

from __future__ import annotations

import statistics
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from scrapy.core.downloader import Downloader
from scrapy.extensions.throttle import AutoThrottle
from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.pacing import AimdRate, SlotClock
from contentcrawl.sources.base import ContentSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeResponse, FakeServer

REQUESTS = 101
RATE = 50.0  # requests/s: 20 ms apart


class PacedSpider(ContentSpider):
    name = "test_paced"
    slot = "paced"

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    async def start(self):  # type: ignore[override]
        for n in range(REQUESTS):
            yield self.request(f"{self.base_url}/n/{n}", callback=self.parse)

    def parse(self, response: Any) -> None:
        return None


async def crawl_arrivals(
    server: FakeServer, tmp_path: Path, *, pace: bool, **settings: Any
) -> list[float]:
    @server.route("GET", r"/n/\d+")
    def answer(request: Any) -> FakeResponse:
        return FakeResponse.json({})

    slot = {"concurrency": 4, "delay": 0.0, "jitter": 0, "rate": RATE, "pace": pace}
    await crawl(
        PacedSpider,
        {
            "DOWNLOAD_SLOTS": {"paced": slot},
            "AUTOTHROTTLE_ENABLED": False,
            "MONGO_URI": "",
            "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
            "RUNS_ENABLED": False,
            **settings,
        },
        base_url=server.url,
    )
    times = sorted(r.arrived for r in server.hits(r"/n/\d+"))
    assert len(times) == REQUESTS
    return times


# -- the clock ---------------------------------------------------------------------------
def test_a_paced_clock_counts_from_due_times_and_restarts_after_an_idle_spell() -> None:
    clock = SlotClock(AimdRate(10.0), paced=True)
    assert clock.next_start() == float("-inf")  # nothing started yet: at once
    clock.started(100.0)
    assert clock.next_start() == pytest.approx(100.1)
    clock.started(100.13)  # 30 ms late: the next one is still due at 100.2
    assert clock.next_start() == pytest.approx(100.2)
    clock.started(105.0)  # idle: counted from now
    assert clock.next_start() == pytest.approx(105.1)


def test_an_unpaced_clock_keeps_a_minimum_gap() -> None:
    clock = SlotClock(AimdRate(10.0), paced=False)
    clock.started(100.0)
    clock.started(100.13)
    assert clock.next_start() == pytest.approx(100.23)


def test_a_pause_holds_the_clock_and_says_what_it_added() -> None:
    clock = SlotClock(None, paced=False)
    assert clock.interval == 0
    assert clock.pause(12.0, now=10.0) == pytest.approx(2.0)
    assert clock.pause(11.0, now=10.5) == 0  # within the pause already
    assert clock.pause(13.0, now=10.5) == pytest.approx(1.0)
    assert clock.next_start() == 13.0


# -- whole crawls --------------------------------------------------------------------------
@pytest.mark.timing
@deferred_f_from_coro_f
async def test_paced_slot_keeps_its_rate(fake_server: FakeServer, tmp_path: Path) -> None:
    times = await crawl_arrivals(fake_server, tmp_path, pace=True)
    ideal = (REQUESTS - 1) / RATE
    # Never faster than the pace, and lateness does not add up over 100 starts: the last
    # starts are as close to their due times as the first ones. (The median, so one stall
    # of a loaded machine, which the pace then catches up on, does not decide.)
    assert times[-1] - times[0] >= ideal * 0.98
    lateness = [arrived - (times[0] + n / RATE) for n, arrived in enumerate(times)]
    assert statistics.median(lateness[-25:]) <= 0.01, lateness[-25:]
    # Starts are due 1/RATE apart: a second holds RATE + 1 due times at most, and the
    # arrival jitter of a late start followed by a punctual one can add one more.
    assert fake_server.max_requests_in_window(1.0) <= RATE + 2


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_unpaced_slot_keeps_a_minimum_gap(fake_server: FakeServer, tmp_path: Path) -> None:
    times = await crawl_arrivals(fake_server, tmp_path, pace=False)
    # Every start waits 1/RATE after the previous one actually started: lateness adds up.
    assert times[-1] - times[0] > (REQUESTS - 1) / RATE
    assert fake_server.max_requests_in_window(1.0) <= RATE + 1


@pytest.mark.timing
@deferred_f_from_coro_f
async def test_autothrottle_never_takes_a_slot_above_its_rate(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    # Stock AutoThrottle on a fast server brings the slot's delay down to DOWNLOAD_DELAY (0)
    # and would start AUTOTHROTTLE_TARGET_CONCURRENCY requests per latency: the rate holds.
    times = await crawl_arrivals(
        fake_server,
        tmp_path,
        pace=True,
        AUTOTHROTTLE_ENABLED=True,
        AUTOTHROTTLE_TARGET_CONCURRENCY=16.0,
    )
    gaps = [b - a for a, b in pairwise(times)]
    assert sum(gaps) / len(gaps) >= 0.98 / RATE, gaps
    assert fake_server.max_requests_in_window(1.0) <= RATE + 2


def test_the_project_uses_the_stock_downloader_and_autothrottle() -> None:
    settings = get_project_settings()
    assert settings["DOWNLOADER"] == f"{Downloader.__module__}.{Downloader.__name__}"
    extensions = settings.getwithbase("EXTENSIONS")
    assert extensions[f"{AutoThrottle.__module__}.{AutoThrottle.__name__}"] is not None
    assert settings.getbool("AUTOTHROTTLE_ENABLED")
