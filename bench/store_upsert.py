"""Upserts/s into each store: 50k records all new, then the same 50k unchanged.

The unchanged run is the daily top-up's common case: it must cost reads, not writes. The
figure to watch is its time as a ratio of the first run's (lower is better).

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


from contentcrawl.store import Record, Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.mongo_server import running_mongo

SAMPLE = Path(__file__).resolve().parent.parent / "spiders_tests/data/tmdb/movie_550_2024.json"


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


def measure(name: str, store: Store, count: int, batch: int) -> None:
    with store:
        first, written_first = run(store, count, batch)
        second, written_second = run(store, count, batch)
    assert written_first == count, f"{name}: first run wrote {written_first} of {count}"
    assert written_second == 0, f"{name}: unchanged run wrote {written_second}"
    print(
        f"{name:7} all new    {count:>7} records {first:7.2f} s {count / first:>9.0f} upserts/s\n"
        f"{name:7} unchanged  {count:>7} records {second:7.2f} s {count / second:>9.0f} upserts/s"
        f"  (0 writes)\n"
        f"{name:7} unchanged run cost / first run cost = {second / first:.2f}"
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
            measure("sqlite", SqliteStore(workdir / "bench.sqlite3"), args.records, args.batch)
        if "mongo" in stores:
            with running_mongo(workdir) as uri:
                measure("mongo", MongoStore(uri, "bench"), args.records, args.batch)


if __name__ == "__main__":
    main()
