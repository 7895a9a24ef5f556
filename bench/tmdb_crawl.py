"""Sustained TMDB records/s against a fake that answers in ~50 ms and 429s above 40 requests/s.

A whole ``tmdb_movies -a mode=export`` crawl with the project's default settings (pipelines,
SQLite store, PacingMiddleware, PoliteRetryMiddleware, AutoThrottle) and the TMDB auth
middleware. The figure is the rate of stored records between the 10th and 90th percentile of
the run (ramp-up and tail left out), as a ratio of TMDB's 40 requests/s, and the share of 429
responses.
Target: ratio >= 0.95 with < 1 % 429s.

    python bench/tmdb_crawl.py [--records 1600] [--latency 0.05] [--limit 40] [--body full|plain]
                               [--rps 38.5] [-s NAME=VALUE ...]

``--body full`` serves Fight Club with its 2024 credits (~120 kB, what a real appended
response weighs); ``plain`` serves the 2 kB details only, to separate parsing cost from
pacing. ``--rps`` tries another rate for the ``tmdb`` slot (``TMDB_REQUESTS_PER_SECOND``
only takes effect when settings.py builds ``DOWNLOAD_SLOTS``, so it is set here directly).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os

# Benchmarks, like tests, never read a developer's .env.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from scrapy import signals
from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings

from contentcrawl.spiders.tmdb_movies import TmdbMoviesSpider
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake, load, movie_550

TMDB_LIMIT = 40.0


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        overrides[name] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1600)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=int(TMDB_LIMIT))
    parser.add_argument("--body", choices=("full", "plain"), default="full")
    parser.add_argument("--rps", type=float, help="the tmdb slot's rate (default: the setting's)")
    parser.add_argument("-s", dest="settings", action="append", default=[])
    args = parser.parse_args()

    api = FakeServer(latency=args.latency).start()
    exports = FakeServer().start()
    fake = TmdbFake(api, exports, rate_limit=args.limit)
    body = movie_550() if args.body == "full" else load("movie_550_2024.json")
    ids = list(range(100_000, 100_000 + args.records))
    for tmdb_id in ids:
        fake.add_clone("movie", body, tmdb_id)
    today = datetime.now(UTC).date()
    fake.add_export("movie_ids", today, [{"id": i, "popularity": 1.0} for i in ids])

    workdir = Path(tempfile.mkdtemp(prefix="tmdb_bench_"))
    settings = get_project_settings()
    middlewares = dict(settings.getdict("DOWNLOADER_MIDDLEWARES"))
    middlewares.setdefault("contentcrawl.middlewares.tmdb_auth.TmdbAuthMiddleware", 950)
    slots = {name: dict(conf) for name, conf in settings.getdict("DOWNLOAD_SLOTS").items()}
    if args.rps:
        slots["tmdb"]["rate"] = args.rps
    settings.setdict(
        {
            **fake.settings(),
            "DOWNLOADER_MIDDLEWARES": middlewares,
            "DOWNLOAD_SLOTS": slots,
            "MONGO_URI": "",
            "SQLITE_PATH": str(workdir / "store.sqlite3"),
            "DUMPS_DIR": str(workdir / "dumps"),
            "STORE_FAILED_DIR": str(workdir / "failed"),
            "IMAGES_ENABLED": False,
            "LOG_LEVEL": "WARNING",
            **parse_overrides(args.settings),
        },
        priority="cmdline",
    )
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(TmdbMoviesSpider)
    stored: list[float] = []

    def on_item(**_: Any) -> None:
        stored.append(time.monotonic())

    crawler.signals.connect(on_item, signal=signals.item_scraped)
    started = time.monotonic()
    process.crawl(crawler, mode="export")
    process.start()
    elapsed = time.monotonic() - started
    api.stop()
    exports.stop()

    stats = crawler.stats.get_stats()
    responses = len(api.requests)
    low, high = int(len(stored) * 0.1), int(len(stored) * 0.9) - 1
    sustained = (high - low) / (stored[high] - stored[low]) if high > low else 0.0
    share_429 = fake.rate_limited / responses if responses else 0.0
    slot = slots["tmdb"]
    slot_rate = slot["rate"]
    print(f"records stored:        {len(stored)} of {args.records} in {elapsed:.1f} s")
    print(f"API responses:         {responses} ({fake.rate_limited} were 429)")
    print(
        f"slot rate setting:     {slot_rate:.1f} requests/s, latency {args.latency * 1000:.0f} ms"
    )
    print(f"sustained records/s:   {sustained:.2f}")
    print(f"ratio of the limit:    {sustained / TMDB_LIMIT:.3f}  (target >= 0.95)")
    print(f"share of 429s:         {share_429:.2%}  (target < 1 %)")
    print(f"finish reason:         {stats.get('finish_reason')}")


if __name__ == "__main__":
    main()
