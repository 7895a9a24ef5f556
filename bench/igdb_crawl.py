"""igdb_games full crawl against a fake IGDB that answers 429 above 4 requests/s or 8 open.

Runs the spider with the project's settings (the ``igdb`` slot as settings.py configures
it) and prints what the fake saw: API requests/s as a ratio of IGDB's 4/s (target >= 0.9),
games/s, and the share of requests answered 429 (target < 1 %).

    python bench/igdb_crawl.py [--games 60000] [--latency 0.2] [--page-size 500]
                               [--slot-rate 3.7] [--no-pipelines]
                               [--dead-image-host closed|silent] [--seconds 60]

``--latency`` is how long the fake takes to answer each API request: with IGDB's real
answer times several requests are open at once, which is what the 8-open limit is about.
``--slot-rate`` tries another igdb slot rate than settings.py's; ``--no-pipelines`` shows the
pace without validation and storage. The fake runs in its own process so that its work does
not slow the crawler. The default run takes about 40 s.

The slot's rate (3.7/s) caps the ratio at 0.925; the rest is the reactor's lateness in
starting each request, which the item pipelines' work adds to.

``--dead-image-host`` runs with ``IMAGES_ENABLED`` and every game's cover (one per game) on
a dead host: a closed port, or a server that accepts connections and never answers
(``silent``). The crawl stops after ``--seconds``; the figure is the games stored per
minute (a run without ``--dead-image-host`` gives the pace without images).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The bench reads no developer .env: every setting it needs is given below.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from scrapy import signals  # noqa: E402
from scrapy.crawler import Crawler  # noqa: E402
from scrapy.utils.log import configure_logging  # noqa: E402
from scrapy.utils.reactor import install_reactor  # noqa: E402

install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")

from scrapy.utils.defer import deferred_from_coro  # noqa: E402
from scrapy.utils.project import get_project_settings  # noqa: E402
from twisted.internet import reactor  # noqa: E402

from contentcrawl.spiders.igdb_games import IgdbGamesSpider  # noqa: E402
from spiders_tests.crawling import make_crawler  # noqa: E402
from spiders_tests.fakes.igdb import OAUTH_MIDDLEWARE  # noqa: E402
from spiders_tests.fakes.server import FakeServer  # noqa: E402

IGDB_RATE = 4.0  # requests/s per client id
IGDB_OPEN = 8


def start_fake(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The fake in its own process, so its work does not slow the crawler's interpreter."""
    command = [
        sys.executable,
        "-m",
        "spiders_tests.fakes.igdb",
        f"--games={args.games}",
        f"--latency={args.latency}",
        f"--requests-per-second={IGDB_RATE:.0f}",
        f"--max-open={IGDB_OPEN}",
        *(["--own-covers"] if args.dead_image_host else []),
    ]
    fake = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return fake, json.loads(fake.stdout.readline())


def stop_fake(fake: subprocess.Popen[str]) -> dict[str, Any]:
    """Close the fake's stdin; it answers with what it saw."""
    fake.stdin.close()
    seen = json.loads(fake.stdout.readline())
    fake.wait(timeout=30)
    return seen


async def run(args: argparse.Namespace, fake_settings: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        settings = {
            **fake_settings,
            "DOWNLOADER_MIDDLEWARES": {
                **get_project_settings().getdict("DOWNLOADER_MIDDLEWARES"),
                OAUTH_MIDDLEWARE: 560,
            },
            "MONGO_URI": "",
            "SQLITE_PATH": str(Path(workdir) / "bench.sqlite3"),
            "IGDB_PAGE_SIZE": args.page_size,
            "LOG_LEVEL": "WARNING",
        }
        if args.no_pipelines:
            settings["ITEM_PIPELINES"] = {}
        if args.dead_image_host:
            settings.update(
                IMAGES_ENABLED=True,
                IMAGES_STORE=str(Path(workdir) / "images"),
                IGDB_IMAGE_URL=f"{args.image_host_url}/t_cover_big",
                CLOSESPIDER_TIMEOUT=args.seconds,
                # The stop by timeout is the bench's own: no monitor report about it.
                SPIDERMON_ENABLED=False,
            )
        if args.slot_rate:
            slots = get_project_settings().getdict("DOWNLOAD_SLOTS")
            slots["igdb"] = {**slots["igdb"], "rate": args.slot_rate}
            settings["DOWNLOAD_SLOTS"] = slots
        crawler = make_crawler(IgdbGamesSpider, settings)
        if args.dead_image_host:
            print_stored_at(crawler, args.seconds)
        started = time.monotonic()
        await crawler.crawl_async(mode="full")
        elapsed = time.monotonic() - started
    return {"stats": crawler.stats.get_stats(), "elapsed": elapsed}


def most_in_window(arrivals: list[float], window: float) -> int:
    most, first = 0, 0
    for last, arrived in enumerate(arrivals):
        while arrived - arrivals[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def report(args: argparse.Namespace, result: dict[str, Any], seen: dict[str, Any]) -> None:
    stats = result["stats"]
    games = stats.get("item_scraped_count", 0)
    stored = stats.get("store/games/inserted", 0) + stats.get("store/games/updated", 0)
    arrivals = seen["api_arrivals"]
    requests = len(arrivals)
    # Requests/s between the first and the last API request: the crawl's steady pace.
    span = arrivals[-1] - arrivals[0] if requests > 1 else 0.0
    rate = (requests - 1) / span if span else 0.0
    games_per_second = games / result["elapsed"]
    status_429 = seen["statuses"].get("429", 0)
    share_429 = status_429 / requests if requests else 0.0
    print(f"games crawled       {games} of {args.games} (finish: {stats.get('finish_reason')})")
    print(f"games stored        {stored}" + (" (pipelines off)" if args.no_pipelines else ""))
    print(f"crawl time          {result['elapsed']:.1f} s")
    print(
        f"API requests        {requests} ({stats.get('igdb/pages/fetched', 0)} pages, "
        f"{seen['token_requests']} token request)"
    )
    print(f"requests/s          {rate:.2f} = {rate / IGDB_RATE:.3f} of IGDB's 4/s (target >= 0.9)")
    print(
        f"games/s             {games_per_second:.0f} = "
        f"{games_per_second / (IGDB_RATE * args.page_size):.3f} of 4 full pages/s"
    )
    print(f"429 share           {share_429:.2%} ({status_429} answers; target < 1 %)")
    print(f"most in any 1 s     {most_in_window(arrivals, 1.0)} (limit {IGDB_RATE:.0f}, with 429s)")
    print(f"most open at once   {seen['max_open']} (limit {IGDB_OPEN})")


def print_stored_at(crawler: Crawler, seconds: float) -> None:
    """Print the games stored ``seconds`` after the crawl opened, while it still runs: a
    crawl whose records wait for images may take minutes more to close."""

    def stored() -> None:
        stats = crawler.stats.get_stats()
        count = stats.get("store/games/inserted", 0) + stats.get("store/games/updated", 0)
        per_minute = count * 60 / seconds
        print(f"after {seconds:.0f} s{'':9}{count} games stored = {per_minute:.0f}/min", flush=True)

    def opened() -> None:
        reactor.callLater(seconds, stored)

    # weak=False: the signal would otherwise hold only a weak reference to this closure.
    crawler.signals.connect(opened, signal=signals.spider_opened, weak=False)


def dead_image_host(kind: str) -> tuple[str, FakeServer | None]:
    """The base URL of a dead image host: a closed port, or a server that never answers."""
    if kind == "silent":
        server = FakeServer().start()
        server.stall()
        return server.url, server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}", None  # nothing listens there once the probe closed


def report_dead_image_host(args: argparse.Namespace, result: dict[str, Any]) -> None:
    stats = result["stats"]
    stored = stats.get("store/games/inserted", 0) + stats.get("store/games/updated", 0)
    minutes = result["elapsed"] / 60
    print(f"dead image host     {args.dead_image_host} ({args.image_host_url})")
    print(f"games stored        {stored} in {result['elapsed']:.1f} s = {stored / minutes:.0f}/min")
    print(
        f"images              {stats.get('images/games/failed', 0)} failed, "
        f"{stats.get('images/games/missing', 0)} games noted for the next crawl"
    )
    print(f"finish              {stats.get('finish_reason')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=60_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument(
        "--slot-rate",
        type=float,
        help="requests/s of the igdb slot instead of settings.py's IGDB_REQUESTS_PER_SECOND",
    )
    parser.add_argument(
        "--no-pipelines",
        action="store_true",
        help="switch the item pipelines off: the crawl's pace without validation and storage",
    )
    parser.add_argument(
        "--dead-image-host",
        choices=("closed", "silent"),
        help="images on, every cover on a dead host: a closed port or a silent server",
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="crawl length with a dead image host"
    )
    args = parser.parse_args()
    configure_logging({"LOG_LEVEL": "WARNING"})
    image_host = None
    if args.dead_image_host:
        args.image_host_url, image_host = dead_image_host(args.dead_image_host)
    fake, fake_settings = start_fake(args)
    outcome: dict[str, Any] = {}

    def go() -> None:
        done = deferred_from_coro(run(args, fake_settings))
        done.addCallback(outcome.update)
        done.addErrback(lambda failure: outcome.update(error=failure))
        done.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    try:
        reactor.run()
    finally:
        seen = stop_fake(fake)
        if image_host is not None:
            image_host.stop()
    if "error" in outcome:
        outcome["error"].raiseException()
    if args.dead_image_host:
        report_dead_image_host(args, outcome)
    else:
        report(args, outcome, seen)


if __name__ == "__main__":
    main()
