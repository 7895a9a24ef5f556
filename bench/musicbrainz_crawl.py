"""musicbrainz_artists: API pace against MusicBrainz's 1 request/s, and dump import speed.

1. API: the spider, with the project's settings (the ``musicbrainz`` slot as settings.py
   configures it), crawls a fake ws/2 that takes ``--latency`` s per answer and refuses
   (503) any request less than 1 s after the previous one. Printed: API requests/s between
   the first and the last request as a ratio of MusicBrainz's 1/s (target 0.95-1.0, never
   above), the most requests the fake saw in any 1 s window (must be 1) and its 503s.
2. Dump: an ``artist.tar.xz`` of ``--dump-lines`` recorded artist documents (cycled under
   fresh MBIDs) is imported with ``-a mode=dump`` into SQLite; records/s as a ratio of a
   parse-only loop over the same file in this process (xz + tar + ``json.loads``).

    python bench/musicbrainz_crawl.py [--artists 20] [--latency 0.05] [--slot-delay 1.02]
                                      [--dump-lines 50000]

``--artists`` artists are looked up (one search page, then a lookup and a release-group page
each: 1 + 2 x artists requests, about as many seconds). ``--slot-delay`` tries another
musicbrainz slot delay than settings.py's. The default run takes about 70 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The bench reads no developer .env: every setting it needs is given below.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from scrapy.utils.log import configure_logging  # noqa: E402
from scrapy.utils.reactor import install_reactor  # noqa: E402

install_reactor("twisted.internet.asyncioreactor.AsyncioSelectorReactor")

from scrapy.utils.defer import deferred_from_coro  # noqa: E402
from scrapy.utils.project import get_project_settings  # noqa: E402
from twisted.internet import reactor  # noqa: E402

from contentcrawl.dumps import DumpFile  # noqa: E402
from contentcrawl.sources.musicbrainz import artist_item  # noqa: E402
from contentcrawl.sources.musicbrainz.archive import ArchiveLines  # noqa: E402
from contentcrawl.spiders.musicbrainz_artists import MusicBrainzArtistsSpider  # noqa: E402
from spiders_tests.crawling import crawl  # noqa: E402
from spiders_tests.fakes.musicbrainz import FakeMusicBrainz  # noqa: E402
from spiders_tests.fakes.musicbrainz_samples import (  # noqa: E402
    dump_lines,
    generated_docs,
    write_archive,
)
from spiders_tests.fakes.server import FakeServer  # noqa: E402

MUSICBRAINZ_RATE = 1.0  # requests/s per IP, on average
RATE_TARGET = (0.95, 1.0)


def parse_only(path: Path) -> tuple[int, float]:
    """Records and records/s of reading alone: xz, tar and json.loads of each line."""
    started = time.perf_counter()
    count = 0
    with DumpFile(path) as dump:
        for _, _, line in ArchiveLines(dump.stream):
            json.loads(line)
            count += 1
    return count, count / (time.perf_counter() - started)


def parse_and_map(path: Path) -> float:
    """Records/s of the spider's own per-line work: json.loads + artist_item."""
    started = time.perf_counter()
    count = 0
    with DumpFile(path) as dump:
        for _, _, line in ArchiveLines(dump.stream):
            artist_item(json.loads(line))
            count += 1
    return count / (time.perf_counter() - started)


async def run(args: argparse.Namespace, workdir: Path, dump: Path) -> dict[str, Any]:
    server = FakeServer(latency=args.latency).start()
    try:
        fake = FakeMusicBrainz(server)  # refuses a request < 1 s after the previous one
        settings = fake.settings(
            MONGO_URI="",
            SQLITE_PATH=str(workdir / "api.sqlite3"),
            MUSICBRAINZ_PAGE_SIZE=25,
            LOG_LEVEL="WARNING",
        )
        if args.slot_delay:
            slots = get_project_settings().getdict("DOWNLOAD_SLOTS")
            slots["musicbrainz"] = {**slots["musicbrainz"], "rate": 1.0 / args.slot_delay}
            settings["DOWNLOAD_SLOTS"] = slots
        api = await crawl(
            MusicBrainzArtistsSpider, settings, query="Solstice", limit=str(args.artists)
        )
        arrivals = sorted(hit.arrived for hit in fake.api_hits())
        seen = {
            "arrivals": arrivals,
            "rejected": len(fake.rejected),
            "most_in_1s": server.max_requests_in_window(1.0, r"/ws/2/.*"),
        }
    finally:
        server.stop()
    imported = await crawl(
        MusicBrainzArtistsSpider,
        {
            "MONGO_URI": "",
            "SQLITE_PATH": str(workdir / "dump.sqlite3"),
            "DUMPS_DIR": str(workdir / "dumps"),
            "LOG_LEVEL": "WARNING",
        },
        mode="dump",
        dump=str(dump),
    )
    return {"api": api.stats.get_stats(), "seen": seen, "dump": imported.stats.get_stats()}


def report_api(args: argparse.Namespace, stats: dict[str, Any], seen: dict[str, Any]) -> None:
    arrivals = seen["arrivals"]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    rate = (len(arrivals) - 1) / span if span else 0.0
    ratio = rate / MUSICBRAINZ_RATE
    low, high = RATE_TARGET
    verdict = "ok" if low <= ratio <= high and seen["most_in_1s"] <= 1 else "OUT OF TARGET"
    slot = get_project_settings().getdict("DOWNLOAD_SLOTS")["musicbrainz"]
    delay = args.slot_delay or 1.0 / slot["rate"]
    print(f"API crawl           finish: {stats.get('finish_reason')}, slot delay {delay:.3f} s")
    print(
        f"API requests        {len(arrivals)} ({stats.get('musicbrainz/artists/looked_up', 0)}"
        f" lookups, {stats.get('musicbrainz/browse/pages', 0)} album pages, "
        f"{stats.get('store/albums/inserted', 0)} albums) in {span:.1f} s"
    )
    print(
        f"requests/s          {rate:.3f} = {ratio:.3f} of MusicBrainz's 1/s "
        f"(target {low}-{high}, never above)  {verdict}"
    )
    print(f"most in any 1 s     {seen['most_in_1s']} (limit 1)")
    print(
        f"503 from the fake   {seen['rejected']} (retries: {stats.get('retry/musicbrainz/503', 0)})"
    )


def report_dump(stats: dict[str, Any], lines: int, ceiling: float, mapped: float) -> None:
    stored = sum(
        stats.get(f"store/artists/{outcome}", 0) for outcome in ("inserted", "updated", "unchanged")
    )
    seconds = stats.get("elapsed_time_seconds", 0.0)
    rate = stored / seconds if seconds else 0.0
    print(f"dump records        {stored:,} of {lines:,} stored in {seconds:.1f} s")
    print(f"parse-only loop     {ceiling:>9,.0f} records/s  (ceiling: xz + tar + json.loads)")
    print(f"parse + map         {mapped:>9,.0f} records/s  ({mapped / ceiling:.2f} of ceiling)")
    print(f"dump import         {rate:>9,.0f} records/s  ({rate / ceiling:.2f} of ceiling)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artists", type=int, default=20, help="artists looked up (max 25)")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument(
        "--slot-delay",
        type=float,
        help="musicbrainz slot delay in seconds instead of settings.py's",
    )
    parser.add_argument("--dump-lines", type=int, default=50_000)
    args = parser.parse_args()
    configure_logging({"LOG_LEVEL": "WARNING"})
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        dump = write_archive(
            workdir / "artist.tar.xz",
            "artist",
            dump_lines(generated_docs("artist", args.dump_lines)),
            preset=1,
        )
        print(
            f"generated {args.dump_lines:,} artist lines, "
            f"{dump.stat().st_size / 1024**2:.1f} MiB xz ({time.perf_counter() - started:.1f} s)"
        )
        lines, ceiling = parse_only(dump)
        mapped = parse_and_map(dump)
        outcome: dict[str, Any] = {}

        def go() -> None:
            done = deferred_from_coro(run(args, workdir, dump))
            done.addCallback(outcome.update)
            done.addErrback(lambda failure: outcome.update(error=failure))
            done.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(go)
        reactor.run()
    if "error" in outcome:
        outcome["error"].raiseException()
    report_api(args, outcome["api"], outcome["seen"])
    report_dump(outcome["dump"], lines, ceiling, mapped)


if __name__ == "__main__":
    main()
