"""Operations benchmark: dead-letter writes and ``scrapy status`` on a busy SQLite store.

A bad day can leave thousands of dead letters, and a year of daily jobs thousands of run
records; ``status`` must still answer at a glance. Prints each figure against its limit
as a ratio measured in the same run (below 1.0 is within the limit).

    python bench/ops.py [--records 200000] [--runs 5000] [--failures 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentcrawl.commands.status import collect_status
from contentcrawl.store import Record
from contentcrawl.store.sqlite import SqliteStore

SPIDERS = [f"tmdb_{kind}" for kind in ("movies", "series", "people", "collections")]
# Limits: a status answer within a second; a dead letter kept within 5 ms (a run that
# gives up on thousands of requests must not spend minutes closing).
STATUS_LIMIT_S = 1.0
FAILURE_LIMIT_MS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5_000)
    parser.add_argument("--failures", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.sqlite3") as store:
        for start in range(0, args.records, 5_000):
            batch = [
                Record({"tmdb_id": i, "title": f"Movie {i}"}, "tmdb")
                for i in range(start, min(start + 5_000, args.records))
            ]
            store.upsert_many("movies", batch)
        for i in range(args.runs):
            day = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00.000Z"
            store.add_run(
                {"id": f"run-{i}", "spider": SPIDERS[i % 4], "started_at": day, "result": "ok"}
            )
        began = time.perf_counter()
        for i in range(args.failures):
            store.put_failure(
                {
                    "key": f"{SPIDERS[i % 4]}:{i}",
                    "spider": SPIDERS[i % 4],
                    "last_try": "2024-05-01T00:00:00Z",
                    "error": "503",
                    "attempts": 6,
                }
            )
        per_failure_ms = (time.perf_counter() - began) * 1000 / max(args.failures, 1)
        began = time.perf_counter()
        status = collect_status(store, SPIDERS)
        status_s = time.perf_counter() - began
    assert status["failures"]["pending"] == args.failures
    print(f"store: {args.records:,} movies, {args.runs:,} runs, {args.failures:,} failures")
    print(
        f"put_failure: {per_failure_ms:.3f} ms each, limit {FAILURE_LIMIT_MS} ms, "
        f"ratio {per_failure_ms / FAILURE_LIMIT_MS:.3f}"
    )
    print(
        f"status: {status_s:.3f} s, limit {STATUS_LIMIT_S} s, ratio {status_s / STATUS_LIMIT_S:.3f}"
    )


if __name__ == "__main__":
    main()
