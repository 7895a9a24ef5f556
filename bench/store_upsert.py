"""Upserts/s into each store: 50k records all new, then the same 50k unchanged, then the
replay of 50k records a crawl saved while the store was down.

The unchanged run is the daily top-up's common case: it must cost reads, not writes. The
figure to watch is its time as a ratio of the first run's (lower is better). The replay
(``SavedBatches.replay``, at a crawl's start) reads each saved record's stored copy first,
so it may cost more than the first run, within REPLAY_LIMIT times its time.

    python bench/store_upsert.py [--records 50000] [--batch 500] [--stores sqlite,mongo]

MongoDB: CONTENTCRAWL_TEST_MONGO_URI when set, else a mongod on PATH, else nx-27017 (a wire-
protocol server on SQLite, far slower than mongod: compare its two runs, not its absolute
speed, with SQLite's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.test import get_crawler

from contentcrawl.pipelines.store import SavedBatches
from contentcrawl.store import Record, Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.mongo_server import running_mongo

SAMPLE = Path(__file__).resolve().parent.parent / "spiders_tests/data/tmdb/movie_550_2024.json"
REPLAY_LIMIT = 2.0


def records(count: int) -> Iterator[Record]:
    """Movie-shaped records (a real TMDB body, ~1.7 kB) with distinct ids and titles."""
    sample = json.loads(SAMPLE.read_text())
    sample.pop("id")
    for tmdb_id in range(1, count + 1):
        yield Record({**sample, "tmdb_id": tmdb_id, "title": f"Movie {tmdb_id}"}, "tmdb")


def run(store: Store, count: int, batch: int) -> tuple[float, int]:
    started = time.perf_counter()
    written = 0
    pending: list[Record] = []
    for record in records(count):
        pending.append(record)
        if len(pending) == batch:
            written += store.upsert_many("movies", pending).written
            pending = []
    if pending:
        written += store.upsert_many("movies", pending).written
    return time.perf_counter() - started, written


def replay(store: Store, count: int, batch: int, folder: Path) -> float:
    """Seconds to store ``count`` saved records into ``store``, which lacks them."""
    saved = SavedBatches(folder)
    pending: list[Record] = []
    for record in records(count):
        pending.append(record)
        if len(pending) == batch:
            saved.save("movies", pending)
            pending = []
    if pending:
        saved.save("movies", pending)
    stats = MemoryStatsCollector(get_crawler())
    started = time.perf_counter()
    saved.replay(store, batch, stats)
    took = time.perf_counter() - started
    replayed = stats.get_value("store/movies/replayed")
    assert replayed == count, f"replayed {replayed} of {count}"
    return took


def measure(name: str, store: Store, count: int, batch: int, fresh: Store, folder: Path) -> None:
    with store:
        first, written_first = run(store, count, batch)
        second, written_second = run(store, count, batch)
    with fresh:
        replayed = replay(fresh, count, batch, folder)
    assert written_first == count, f"{name}: first run wrote {written_first} of {count}"
    assert written_second == 0, f"{name}: unchanged run wrote {written_second}"
    print(
        f"{name:7} all new    {count:>7} records {first:7.2f} s {count / first:>9.0f} upserts/s\n"
        f"{name:7} unchanged  {count:>7} records {second:7.2f} s {count / second:>9.0f} upserts/s"
        f"  (0 writes)\n"
        f"{name:7} unchanged run cost / first run cost = {second / first:.2f}\n"
        f"{name:7} replay     {count:>7} records {replayed:7.2f} s {count / replayed:>9.0f} "
        f"records/s\n"
        f"{name:7} replay cost / first run cost = {replayed / first:.2f} "
        f"(limit {REPLAY_LIMIT:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--stores", default="sqlite,mongo")
    args = parser.parse_args()
    stores = args.stores.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "sqlite" in stores:
            measure(
                "sqlite",
                SqliteStore(workdir / "bench.sqlite3"),
                args.records,
                args.batch,
                SqliteStore(workdir / "replay.sqlite3"),
                workdir / "saved-sqlite",
            )
        if "mongo" in stores:
            with running_mongo(workdir) as uri:
                measure(
                    "mongo",
                    MongoStore(uri, "bench"),
                    args.records,
                    args.batch,
                    MongoStore(uri, "replay"),
                    workdir / "saved-mongo",
                )


if __name__ == "__main__":
    main()
