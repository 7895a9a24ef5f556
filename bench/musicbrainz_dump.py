"""MusicBrainz artist dump import: workers against one process, re-imports, and peak RSS.

An ``artist.tar.xz`` is generated from the recorded artist documents (cycled under fresh
MBIDs) and imported with ``scrapy crawl musicbrainz_artists -a dump=…`` in a subprocess, so
the figures are those of a real run: seconds from the crawl's own ``elapsed_time_seconds``,
peak RSS from the child's rusage (the crawl's process; its workers are counted apart).

The figures of issue #17 for MusicBrainz, each a ratio of two runs of this one bench: the
first import with ``DUMP_WORKERS=2`` against one process (``DUMP_WORKERS=0``; target >= 1.7,
with the per-core scaling), the re-import of the same file with ``-a force=1`` against the
first (<= 0.15: every line is skipped before the workers, its record holding the line's
digest), the same file without force (not read: <= 2 s), a next-month dump with 5 % of its
artists renamed against the first import (<= 0.25) and the peak RSS growth from
``--small`` to ``--lines`` lines (< 50 MB). The same for MongoDB with ``--mongo-lines``,
with the server's CPU when the bench started it, and the speed-up that CPU leaves 2 workers
at best: nx-27017 answers one request at a time, on the machine's cores.

    python bench/musicbrainz_dump.py [--lines 100000] [--small 20000] [--mongo-lines 20000]

MongoDB: CONTENTCRAWL_TEST_MONGO_URI when set, else a mongod on PATH, else nx-27017 (a wire-
protocol server on SQLite). ``--mongo-lines 0`` skips it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A developer's .env must not change the figures.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from dump_runs import (
    NEXT_MONTH_CHANGED,
    NEXT_MONTH_TARGET,
    Imports,
    Run,
    cpu_shares,
    crawl_env,
    describe,
    import_series,
    server_pid,
    verdict,
)
from dump_runs import crawl as crawl_dump

from spiders_tests.fakes.musicbrainz_samples import dump_lines, generated_docs, write_archive
from spiders_tests.mongo_server import running_mongo

RSS_GROWTH_LIMIT_MB = 50.0


def crawl(
    dump: Path, env: dict[str, str], workdir: Path, *arguments: str, server: int | None = None
) -> Run:
    """``scrapy crawl musicbrainz_artists`` of ``dump`` (see ``dump_runs.crawl``)."""
    return crawl_dump(
        "musicbrainz_artists", "artists", dump, env, workdir, *arguments, server=server
    )


def server_ceiling(label: str, one: Run) -> str:
    """The best speed-up of 2 workers over the one-process run ``one`` when the server
    answers one request at a time (nx-27017): no import ends before the server has spent
    the CPU that storing these records costs it."""
    server = one.server_cpu_seconds or 0.0
    return (
        f"{label} the server answers one request at a time: 2 workers can reach at best "
        f"{one.seconds / server:.2f}x the 1 process; 1 process: {cpu_shares(one)}"
    )


def generate(workdir: Path, lines: int) -> Path:
    """``artist.tar.xz`` of ``lines`` artists, in a directory of its own (the file name
    names the entity and the sync state)."""
    started = time.perf_counter()
    dump = write_archive(
        workdir / f"lines_{lines}" / "artist.tar.xz",
        "artist",
        dump_lines(generated_docs("artist", lines)),
        preset=1,
    )
    size = dump.stat().st_size / 1024**2
    took = time.perf_counter() - started
    print(f"generated {lines:>9,} artist lines  {size:7.1f} MiB xz  ({took:.1f} s)")
    return dump


def next_month(workdir: Path, lines: int) -> Path:
    """The ``generate`` dump with every 20th artist renamed: 5 % of its lines at a new
    digest, under the same file name."""
    every = round(1 / NEXT_MONTH_CHANGED)

    def docs() -> Iterator[dict[str, Any]]:
        for number, doc in enumerate(generated_docs("artist", lines)):
            yield {**doc, "name": f"{doc['name']} (renamed)"} if number % every == 0 else doc

    return write_archive(
        workdir / f"next_{lines}" / "artist.tar.xz", "artist", dump_lines(docs()), preset=1
    )


def reimports(
    label: str,
    dump: Path,
    lines: int,
    env: dict[str, str],
    workdir: Path,
    server: int | None = None,
) -> Imports:
    """The imports of ``dump_runs.import_series``, then a next-month dump; print the ratios."""
    imports = import_series(crawl, label, dump, env, workdir, server=server)
    monthly = crawl(next_month(workdir, lines), imports.two_env, workdir, server=server)
    share = monthly.seconds / imports.two.seconds
    print(
        f"{label} next month (5 % new digests): {monthly.seconds:.1f} s, {share:.3f} of the "
        f"first  target <= {NEXT_MONTH_TARGET}  {verdict(share <= NEXT_MONTH_TARGET)}"
    )
    return imports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="speed run and large RSS size")
    parser.add_argument("--small", type=int, default=20_000, help="small RSS size")
    parser.add_argument("--mongo-lines", type=int, default=20_000, help="0 skips MongoDB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        small_dump = generate(workdir, args.small)
        large_dump = generate(workdir, args.lines)

        reimports("SQLite ", large_dump, args.lines, crawl_env(), workdir)

        small = crawl(small_dump, crawl_env(SQLITE_PATH=str(workdir / "small.sqlite3")), workdir)
        large = crawl(large_dump, crawl_env(SQLITE_PATH=str(workdir / "large.sqlite3")), workdir)
        for run in (small, large):
            print(f"import -> SQLite      {describe(run)}")
        growth = large.peak_rss_mb - small.peak_rss_mb
        print(
            f"peak RSS {args.small:,} lines: {small.peak_rss_mb:.0f} MB, "
            f"{args.lines:,} lines: {large.peak_rss_mb:.0f} MB; growth {growth:+.1f} MB, "
            f"limit < {RSS_GROWTH_LIMIT_MB:.0f} MB  {verdict(growth < RSS_GROWTH_LIMIT_MB)}"
        )

        if args.mongo_lines:
            lines = args.mongo_lines
            mongo_dump = (
                large_dump
                if lines == args.lines
                else small_dump
                if lines == args.small
                else generate(workdir, lines)
            )
            with running_mongo(workdir) as uri:
                server = server_pid(workdir)
                imports = reimports(
                    "MongoDB", mongo_dump, lines, crawl_env(MONGO_URI=uri), workdir, server
                )
                if server:
                    print(server_ceiling("MongoDB", imports.one))
                    print(f"MongoDB first import, 2 workers: {cpu_shares(imports.two)}")


if __name__ == "__main__":
    main()
