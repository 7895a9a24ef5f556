"""Requests/s against a rate-limited fake, as a ratio of its limit, and how many drew a 429.

The fake answers 429 whenever more than R requests arrived within the last second (sliding
window, rejected requests included). The crawl's slot rate is set at the limit (R/s).

1. contentcrawl: PacingMiddleware, PoliteRetryMiddleware, AutoThrottle (the project's settings).
2. baseline: stock RetryMiddleware + stock AutoThrottle on the same slot, for comparison.
3. Retry-After: the fake opens with a burst of 429 + Retry-After; the figure is the time from
   each of those 429s to the next request, as a ratio of Retry-After (>= 1 means honoured).
4. A lower limit: the slot is configured at ``--slot-rate`` (TMDB's 39/s) against a fake that
   allows ``--learn-rate`` (5/s) for ``--learn-seconds`` (60 s). Printed: the 429 share over
   the whole run and after its first ``--settle`` seconds (target < 1 %), the answered
   requests/s after them as a ratio of the fake's limit (target 0.8-1.0), and the 429s per
   10 s of the run.

    python bench/backoff.py [--rate 20] [--requests 400] [--baseline-requests 100]
                            [--retry-after 2] [--burst 3] [--retry-after-requests 60]
                            [--learn-rate 5] [--slot-rate 39] [--learn-seconds 60]
                            [--settle 20] [--learn-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A developer's .env must not change the figures.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from scrapy import Request
from scrapy.http import Response
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.reactor import install_reactor

from contentcrawl.sources.base import POSITIVE, Argument, ContentSpider
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
    spider_arguments: ClassVar[dict[str, Argument]] = {
        "base_url": Argument(str, "the fake's URL"),
        "count": POSITIVE,
    }

    async def start(self) -> AsyncIterator[Request]:
        for n in range(self.options["count"]):
            yield self.request(f"{self.options['base_url']}/item/{n}")

    def parse(self, response: Response) -> None:
        pass


def crawl_settings(rate: float, stock: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "ITEM_PIPELINES": {},
        "LOG_LEVEL": "WARNING",
        # No run record in a store, no monitor report: the figures are the output.
        "RUNS_ENABLED": False,
        "SPIDERMON_ENABLED": False,
        "RETRY_TIMES": 10,
        "DOWNLOAD_SLOTS": {SLOT: {"concurrency": 4, "delay": 0.0, "jitter": 0, "rate": rate}},
    }
    if stock:
        # Scrapy alone: the slot's delay, stock retries, AutoThrottle at its default target.
        settings["DOWNLOAD_SLOTS"] = {SLOT: {"concurrency": 4, "delay": 1.0 / rate, "jitter": 0}}
        settings["AUTOTHROTTLE_TARGET_CONCURRENCY"] = 1.0
        settings["DOWNLOADER_MIDDLEWARES"] = {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": 550,
            "contentcrawl.middlewares.polite_retry.PoliteRetryMiddleware": None,
            "contentcrawl.middlewares.pacing.PacingMiddleware": None,
        }
    return settings


async def run(
    fake: RateLimitedFake,
    count: int,
    stock: bool = False,
    slot_rate: float | None = None,
    seconds: float = 0,
) -> dict[str, Any]:
    fake.server.start()
    settings = crawl_settings(slot_rate or fake.rate, stock)
    if seconds:
        settings["CLOSESPIDER_TIMEOUT"] = seconds
    try:
        crawler = make_crawler(BenchSpider, settings)
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


async def learn(args: argparse.Namespace) -> None:
    fake = RateLimitedFake(args.learn_rate)
    count = int(args.slot_rate * args.learn_seconds * 2)  # more than the run can send
    result = await run(fake, count, slot_rate=args.slot_rate, seconds=args.learn_seconds)
    first = min(arrived for arrived, _ in fake.answers)
    settled = [status for arrived, status in fake.answers if arrived >= first + args.settle]
    settled_429 = sum(1 for status in settled if status == 429)
    span = result["elapsed"] - args.settle
    ok_rate = (len(settled) - settled_429) / span if span > 0 else float("nan")
    print(
        f"lower limit   slot at {args.slot_rate:g}/s, fake allows {args.learn_rate}/s, "
        f"{result['elapsed']:.0f} s: {result['requests']} requests, 429 share "
        f"{result['share_429']:.2%} overall; after the first {args.settle:g} s "
        f"{settled_429 / len(settled):.2%} ({settled_429} of {len(settled)}), answered "
        f"{ok_rate:.2f}/s = {ok_rate / args.learn_rate:.3f} x the limit"
    )
    buckets: dict[int, list[int]] = {}
    for arrived, status in fake.answers:
        buckets.setdefault(int((arrived - first) // 10), []).append(status)
    print(
        "  429s / requests per 10 s: "
        + "  ".join(
            f"{10 * n}-{10 * n + 10}s {statuses.count(429)}/{len(statuses)}"
            for n, statuses in sorted(buckets.items())
        )
    )


async def main(args: argparse.Namespace) -> None:
    if args.learn_only:
        await learn(args)
        return
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
    await learn(args)


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
    parser.add_argument("--learn-rate", type=int, default=5, help="the lower limit, requests/s")
    parser.add_argument(
        "--slot-rate", type=float, default=39.0, help="the slot's configured rate, requests/s"
    )
    parser.add_argument("--learn-seconds", type=float, default=60.0, help="length of that run")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds left out at its start")
    parser.add_argument("--learn-only", action="store_true", help="run only the lower-limit run")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")
    from twisted.internet import reactor

    outcome: dict[str, Any] = {}
    done = deferred_from_coro(main(arguments))
    done.addErrback(lambda failure: outcome.update(error=failure))
    done.addBoth(lambda _: reactor.stop())
    reactor.run()
    if "error" in outcome:
        outcome["error"].raiseException()
