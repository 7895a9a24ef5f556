"""A paced slot keeps its rate: timer lateness does not slow it down as it does stock slots."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from scrapy.utils.defer import deferred_f_from_coro_f
from scrapy.utils.project import get_project_settings

from contentcrawl.sources.base import ContentSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.server import FakeResponse, FakeServer

REQUESTS = 101
DELAY = 0.02  # 50 requests/s


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


async def crawl_arrivals(server: FakeServer, tmp_path: Path, *, pace: bool) -> list[float]:
    @server.route("GET", r"/n/\d+")
    def answer(request: Any) -> FakeResponse:
        return FakeResponse.json({})

    settings = {
        "DOWNLOAD_SLOTS": {"paced": {"concurrency": 4, "delay": DELAY, "jitter": 0, "pace": pace}},
        "AUTOTHROTTLE_ENABLED": False,
        "MONGO_URI": "",
        "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
        "RUNS_ENABLED": False,
    }
    await crawl(PacedSpider, settings, base_url=server.url)
    times = sorted(r.arrived for r in server.hits(r"/n/\d+"))
    assert len(times) == REQUESTS
    return times


@deferred_f_from_coro_f
async def test_paced_slot_keeps_its_rate(fake_server: FakeServer, tmp_path: Path) -> None:
    times = await crawl_arrivals(fake_server, tmp_path, pace=True)
    ideal = (REQUESTS - 1) * DELAY
    # Never faster than the pace, and lateness does not add up over 100 starts: the last
    # starts are as close to their due times as the first ones. (The median, so one stall
    # of a loaded machine, which the pace then catches up on, does not decide.)
    assert times[-1] - times[0] >= ideal * 0.98
    lateness = [arrived - (times[0] + n * DELAY) for n, arrived in enumerate(times)]
    assert statistics.median(lateness[-25:]) <= 0.01, lateness[-25:]
    # Starts are due DELAY apart: a second holds 1/DELAY + 1 due times at most, and the
    # arrival jitter of a late start followed by a punctual one can add one more.
    assert fake_server.max_requests_in_window(1.0) <= 1 / DELAY + 2


@deferred_f_from_coro_f
async def test_unpaced_slot_keeps_a_minimum_gap(fake_server: FakeServer, tmp_path: Path) -> None:
    times = await crawl_arrivals(fake_server, tmp_path, pace=False)
    # Every start waits DELAY after the previous one actually started: lateness adds up.
    assert times[-1] - times[0] > (REQUESTS - 1) * DELAY
    assert fake_server.max_requests_in_window(1.0) <= 1 / DELAY + 1


def test_the_project_uses_the_paced_downloader() -> None:
    assert get_project_settings()["DOWNLOADER"] == "contentcrawl.downloader.PacedDownloader"
