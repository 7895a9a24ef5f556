"""Records/s of a distributed TMDB export run with 1, 2 and 4 workers on one Redis.

The fake answers every detail request after ``--latency`` seconds (latency-bound, not
CPU-bound) and each worker keeps its per-IP TMDB limit, so N workers should store about N
times the records per second of one. Prints records/s per worker count and the scaling
ratio against N (target >= 0.9 x N for N <= 4), measured in the same run. Throughput is
timed from the first to the last detail request the fake saw (process start-up excluded).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spiders_tests.distributed_workers import (
    DETAIL,
    movie_catalogue,
    setting_args,
    start_worker,
    stored_keys,
    tmdb_env,
    wait_all,
)
from spiders_tests.fakes.server import FakeServer
from spiders_tests.fakes.tmdb import TmdbFake
from spiders_tests.redis_server import redis_server


def run(workers: int, ids_per_worker: int, latency: float, rate: int) -> float:
    """Records/s of one run with ``workers`` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        api = FakeServer(latency=latency).start()
        exports = FakeServer().start()
        try:
            fake = TmdbFake(api, exports, rate_limit=100_000)
            ids = movie_catalogue(fake, ids_per_worker * workers)
            with redis_server(workdir) as url:
                env = tmdb_env(fake, workdir / "shared.sqlite3", rate=rate)
                args = ["-a", "mode=export", *setting_args(url), "-s", "LOG_LEVEL=WARNING"]
                procs = [start_worker("tmdb_movies", env, args, workdir, n) for n in range(workers)]
                wait_all(procs, timeout=300)
            hits = sorted(hit.arrived for hit in api.hits(DETAIL))
            stored = set(stored_keys(workdir / "shared.sqlite3", "movies", "tmdb_id"))
            if stored != set(ids):
                raise SystemExit(f"{workers} workers stored {len(stored)} of {len(ids)} records")
            return len(hits) / max(hits[-1] - hits[0], 1e-6)
        finally:
            api.stop()
            exports.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--ids-per-worker", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rate", type=int, default=40, help="TMDB requests/s per worker")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    started = time.monotonic()
    rates = {n: run(n, args.ids_per_worker, args.latency, args.rate) for n in counts}
    base = rates[counts[0]] / counts[0]
    print(f"latency {args.latency * 1000:.0f} ms, {args.rate} requests/s per worker")
    for n, rate in rates.items():
        ratio = rate / base
        verdict = "ok" if ratio >= 0.9 * n else "BELOW TARGET"
        print(
            f"{n} worker(s): {rate:7.1f} records/s  scaling {ratio:4.2f} "
            f"(target >= {0.9 * n:.1f}) {verdict}"
        )
    print(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
