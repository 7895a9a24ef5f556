"""Requests/s against a rate-limited fake, as a ratio of its limit, and how many drew a 429.

The fake answers 429 whenever more than R requests arrived within the last second (sliding
window, rejected requests included). The crawl's slot delay is set at the limit (1/R s).

1. contentcrawl: PoliteRetryMiddleware + SlotAutoThrottle (the project's settings).
2. baseline: stock RetryMiddleware + stock AutoThrottle on the same slot, for comparison.
3. Retry-After: the fake opens with a burst of 429 + Retry-After; the figure is the time from
   each of those 429s to the next request, as a ratio of Retry-After (>= 1 means honoured).

    python bench/backoff.py [--rate 20] [--requests 400] [--baseline-requests 100]
                            [--retry-after 2] [--burst 3] [--retry-after-requests 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A developer's .env must not change the figures.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from scrapy import Request
from scrapy.http import Response
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.reactor import install_reactor

from contentcrawl.sources.base import ContentSpider
from spiders_tests.crawling import make_crawler
from spiders_tests.fakes.server import FakeRequest, FakeResponse, FakeServer

SLOT = "bench"


class RateLimitedFake:
    """FakeServer routes: 429 above ``rate`` requests in any 1 s; an opening 429 burst."""

    def __init__(self, rate: int, burst: int = 0, retry_after: int = 0) -> None:
        self.rate = rate
        self.burst = burst
        self.retry_after = retry_after
        self.window: deque[float] = deque()
        self.answers: list[tuple[float, int]] = []  # (arrival, status)
        self.lock = threading.Lock()
        self.server = FakeServer()
        self.server.route("GET", r"/item/\d+")(self.item)

    def item(self, request: FakeRequest) -> FakeResponse:
        with self.lock:
            self.window.append(request.arrived)
            while self.window[0] <= request.arrived - 1.0:
                self.window.popleft()
            if len(self.answers) < self.burst:
                status, headers = 429, {"Retry-After": str(self.retry_after)}
            elif len(self.window) > self.rate:
                status, headers = 429, {}
            else:
                status, headers = 200, {}
            self.answers.append((request.arrived, status))
        return FakeResponse.json({"ok": status == 200}, status, **headers)


class BenchSpider(ContentSpider):
    """Fetches /item/0 .. /item/<count - 1> from ``base_url`` in the bench slot."""

    name = "bench_backoff"
    slot = SLOT

    async def start(self) -> AsyncIterator[Request]:
        for n in range(int(self.count)):
            yield self.request(f"{self.base_url}/item/{n}")

    def parse(self, response: Response) -> None:
        pass


def crawl_settings(rate: int, stock: bool) -> dict[str, Any]:
    delay = 1.0 / rate
    settings: dict[str, Any] = {
        "ITEM_PIPELINES": {},
        "LOG_LEVEL": "WARNING",
        "RETRY_TIMES": 10,
        "DOWNLOAD_SLOTS": {
            SLOT: {"concurrency": 4, "delay": delay, "jitter": 0, "target_concurrency": 4}
        },
    }
    if stock:
        settings["DOWNLOADER_MIDDLEWARES"] = {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": 550,
            "contentcrawl.middlewares.polite_retry.PoliteRetryMiddleware": None,
        }
        settings["EXTENSIONS"] = {
            "scrapy.extensions.throttle.AutoThrottle": 0,
            "contentcrawl.extensions.slot_throttle.SlotAutoThrottle": None,
        }
    return settings


async def run(fake: RateLimitedFake, count: int, stock: bool = False) -> dict[str, Any]:
    fake.server.start()
    try:
        crawler = make_crawler(BenchSpider, crawl_settings(fake.rate, stock))
        await crawler.crawl_async(base_url=fake.server.url, count=count)
    finally:
        fake.server.stop()
    arrivals = [arrived for arrived, _ in fake.answers]
    ok = sum(1 for _, status in fake.answers if status == 200)
    elapsed = max(arrivals) - min(arrivals)
    return {
        "ok": ok,
        "requests": len(fake.answers),
        "share_429": 1 - ok / len(fake.answers),
        "rate_ratio": ok / elapsed / fake.rate if elapsed else float("nan"),
        "peak_ratio": fake.server.max_requests_in_window(1.0) / fake.rate,
        "elapsed": elapsed,
        "stats": crawler.stats.get_stats(),
    }


def report(label: str, result: dict[str, Any]) -> None:
    stats = result["stats"]
    print(
        f"{label:<13} {result['ok']:>4} ok / {result['requests']:>4} requests in "
        f"{result['elapsed']:6.1f} s | achieved {result['rate_ratio']:.3f} x R | "
        f"429 share {result['share_429']:.3%} | busiest 1 s window "
        f"{result['peak_ratio']:.2f} x R | backoff "
        f"{stats.get(f'retry/{SLOT}/backoff_seconds', 0):.1f} s | gave up "
        f"{stats.get('retry/max_reached', 0)}"
    )


async def main(args: argparse.Namespace) -> None:
    rate = args.rate
    print(f"limit R = {rate} requests/s (sliding 1 s window), slot delay 1/R = {1 / rate:.3f} s")
    report("contentcrawl", await run(RateLimitedFake(rate), args.requests))
    baseline = await run(RateLimitedFake(rate), args.baseline_requests, stock=True)
    report("stock scrapy", baseline)

    fake = RateLimitedFake(rate, burst=args.burst, retry_after=args.retry_after)
    result = await run(fake, args.retry_after_requests)
    report("retry-after", result)
    arrivals = [arrived for arrived, _ in fake.answers]
    for n in range(args.burst):
        gap = min(a for a in arrivals if a > arrivals[n]) - arrivals[n]
        print(
            f"  429 #{n + 1} with Retry-After: {args.retry_after} -> next request "
            f"{gap:.3f} s later ({gap / args.retry_after:.3f} x Retry-After)"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=20, help="the fake's limit R, requests/s")
    parser.add_argument("--requests", type=int, default=400, help="requests per rate run")
    parser.add_argument(
        "--baseline-requests", type=int, default=100, help="requests in the stock run"
    )
    parser.add_argument("--retry-after", type=int, default=2, help="Retry-After of the burst")
    parser.add_argument("--burst", type=int, default=3, help="429s that open the third run")
    parser.add_argument(
        "--retry-after-requests", type=int, default=60, help="requests in the third run"
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from twisted.internet import reactor

    done = deferred_from_coro(main(arguments))
    done.addErrback(lambda failure: failure.printTraceback())
    done.addBoth(lambda _: reactor.stop())
    reactor.run()
