"""Open Library editions import: workers against one process, re-imports, and peak RSS.

A dump is generated from the recorded real edition lines (each line given a fresh key) and
imported with ``scrapy crawl openlibrary_books`` in a subprocess, so the figures are those of
a real run: records/s from the crawl's own ``elapsed_time_seconds``, peak RSS from the
child's rusage. The ceiling is a parse-only loop over the same file in this process
(decompress, split, ``json.loads``); the issue's targets are an import at >= 50 % of it into
SQLite and < 50 MB of RSS growth between the two sizes. Two more loops show where the rest
goes: the spider's parse + map, and the whole import's work (parse, map, validate, store
record, SQLite upsert) in one thread with no Scrapy around it.

Then the figures of issue #17, each a ratio of two runs of this one bench: the first
import with ``DUMP_WORKERS=2`` against one process (``DUMP_WORKERS=0``; target >= 1.7, with
the per-core scaling and the projected time of a 55M-line dump), the re-import of the same
file with ``-a force=1`` (read, every line skipped by revision: <= 0.15 of the first), the
same file without force (not read: <= 2 s) and a next-month dump with 5 % of its lines at a
new revision (<= 0.25 of the first). The same for MongoDB with ``--mongo-lines``, with where
its time goes: the CPU seconds of the crawl and of the server (when the bench started it),
and the speed-up two workers can reach at best, the time of the one writer storing the same
records alone.

    python bench/openlibrary_ingest.py [--lines 200000] [--small 20000] [--mongo-lines 50000]
    python bench/openlibrary_ingest.py --small 200000 --lines 1000000   # the issue's sizes

MongoDB: CONTENTCRAWL_TEST_MONGO_URI when set, else a mongod on PATH, else nx-27017 (a wire-
protocol server on SQLite; bench/store_upsert.py shows its own ceiling). ``--mongo-lines 0``
skips it; ``--mongo-lines`` equal to ``--lines`` imports the same file as SQLite did.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A developer's .env must not change the figures.
os.environ["CONTENTCRAWL_ENV_FILE"] = os.devnull

from dump_runs import (
    NEXT_MONTH_CHANGED,
    NEXT_MONTH_TARGET,
    Run,
    cpu_shares,
    crawl_env,
    describe,
    import_series,
    server_pid,
    verdict,
)
from dump_runs import crawl as crawl_dump
from scrapy.utils.test import get_crawler

from contentcrawl.dumps import DumpFile, fewer_gc_passes, format_duration
from contentcrawl.pipelines.validation import ValidationPipeline
from contentcrawl.records import to_record
from contentcrawl.sources.openlibrary import book_from_edition, parse_line
from contentcrawl.store import Record, Store
from contentcrawl.store.mongo import MongoStore
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.fakes.openlibrary import generated_lines, write_dump
from spiders_tests.mongo_server import running_mongo

STORE_BATCH = 500  # STORE_BATCH_SIZE's default
CHUNK_LINES = 1000  # DUMP_CHUNK_LINES's default
SPEED_TARGET = 0.5
RSS_GROWTH_LIMIT_MB = 50.0
FULL_DUMP_LINES = 55_000_000


def parse_only(dump: Path) -> float:
    """Lines/s of decompress + split + json.loads: what reading alone costs."""
    started = time.perf_counter()
    count = 0
    with DumpFile(dump) as reader:
        for _, line in reader.lines():
            json.loads(line.split(b"\t", 4)[4])
            count += 1
    return count / (time.perf_counter() - started)


def parse_and_map(dump: Path) -> float:
    """Lines/s of the spider's own per-line work: parse_line + book_from_edition."""
    started = time.perf_counter()
    count = 0
    with DumpFile(dump) as reader:
        for _, line in reader.lines():
            parsed = parse_line(line, "/type/edition")
            assert not isinstance(parsed, str)
            book_from_edition(parsed.doc, covers_url="https://covers.example/b")
            count += 1
    return count / (time.perf_counter() - started)


def without_scrapy(dump: Path, database: Path) -> float:
    """Records/s of the import's own work with no Scrapy around it: parse, map, validate,
    build the store record (canonical JSON, hash) and upsert in batches into SQLite, in one
    thread. What the pipelines cost before Scrapy's share and the threads' hand-offs."""
    validation = ValidationPipeline(get_crawler())
    store = SqliteStore(database)
    store.open()
    batch: list[Record] = []
    count = 0
    started = time.perf_counter()
    # The GC setting the spiders import under, so only Scrapy's share differs.
    with fewer_gc_passes(), DumpFile(dump) as reader:
        for _, line in reader.lines():
            parsed = parse_line(line, "/type/edition")
            assert not isinstance(parsed, str)
            book = book_from_edition(
                parsed.doc, covers_url="https://covers.example/b", revision=parsed.revision
            )
            batch.append(to_record(validation.process_item(book)))
            count += 1
            if len(batch) == STORE_BATCH:
                store.upsert_many("books", batch)
                batch = []
        store.upsert_many("books", batch)
    seconds = time.perf_counter() - started
    store.close()
    return count / seconds


def writer_alone(dump: Path, store: Store) -> float:
    """Seconds the store calls of an import take on one connection, its records made
    beforehand (untimed) as the workers make them: per chunk of ``CHUNK_LINES`` lines, the
    revisions of its keys, then its records in batches of ``STORE_BATCH``. The one writer
    every import waits for, whatever its number of workers."""
    validation = ValidationPipeline(get_crawler())
    seconds = 0.0
    with store, DumpFile(dump) as reader:
        lines = reader.lines()
        while chunk := list(islice(lines, CHUNK_LINES)):
            records = []
            for _, line in chunk:
                parsed = parse_line(line, "/type/edition")
                assert not isinstance(parsed, str)
                book = book_from_edition(
                    parsed.doc, covers_url="https://covers.example/b", revision=parsed.revision
                )
                made = to_record(validation.process_item(book))
                records.append(
                    Record.worked(
                        book.ol_key,
                        made.body,
                        made.hash,
                        made.source,
                        fetched_at=made.fetched_at,
                        revision=made.revision,
                    )
                )
            started = time.perf_counter()
            store.unchanged_keys(
                "books", {record.key("ol_key"): record.revision or 0 for record in records}
            )
            for start in range(0, len(records), STORE_BATCH):
                store.upsert_many("books", records[start : start + STORE_BATCH])
            seconds += time.perf_counter() - started
    return seconds


def crawl(
    dump: Path, env: dict[str, str], workdir: Path, *arguments: str, server: int | None = None
) -> Run:
    """``scrapy crawl openlibrary_books`` of ``dump`` (see ``dump_runs.crawl``)."""
    return crawl_dump("openlibrary_books", "books", dump, env, workdir, *arguments, server=server)


def next_month(dump: Path, lines: int, workdir: Path) -> Path:
    """The same dump with every 20th line at a new revision (5 %), the rest untouched."""
    every = round(1 / NEXT_MONTH_CHANGED)

    def changed() -> Iterator[bytes]:
        for number, line in enumerate(generated_lines("editions", lines)):
            if number % every == 0:
                type_, key, revision, rest = line.split(b"\t", 3)
                line = b"\t".join([type_, key, b"%d" % (int(revision) + 1), rest])
            yield line

    return write_dump(workdir / f"ol_dump_editions_next_{lines}.txt.gz", changed(), compresslevel=6)


def reimports(
    label: str,
    dump: Path,
    lines: int,
    env: dict[str, str],
    workdir: Path,
    server: int | None = None,
    writer_seconds: float | None = None,
) -> None:
    """The imports of ``dump_runs.import_series``, then a next-month dump; print the ratios
    (and, given the ``server`` process and the ``writer_alone`` time, where the time goes)."""
    imports = import_series(crawl, label, dump, env, workdir, server=server)
    one, two, forced, two_env = imports.one, imports.two, imports.forced, imports.two_env
    if writer_seconds:
        print(ceiling(label, one, writer_seconds))
    print(
        f"{label} projected {FULL_DUMP_LINES / 1e6:.0f}M-line dump: "
        f"{format_duration(FULL_DUMP_LINES / two.rate)} with 2 workers (1 process "
        f"{format_duration(FULL_DUMP_LINES / one.rate)})"
    )
    following = next_month(dump, lines, workdir)
    monthly = crawl(following, two_env, workdir, server=server)
    share = monthly.seconds / two.seconds
    print(
        f"{label} next month (5 % new revisions): {monthly.seconds:.1f} s, {share:.3f} of the "
        f"first  target <= {NEXT_MONTH_TARGET}  {verdict(share <= NEXT_MONTH_TARGET)}"
    )
    if server:
        for name, run in (
            ("first import, 1 process", one),
            ("first import, 2 workers", two),
            ("re-import -a force=1", forced),
            ("next month", monthly),
        ):
            print(f"{label} {name}: {cpu_shares(run)}")


def ceiling(label: str, one: Run, writer_seconds: float) -> str:
    """The best speed-up of 2 workers over the one-process run ``one``: no import ends
    before its one writer has stored every chunk, in order, on one connection."""
    return (
        f"{label} one writer alone: {writer_seconds:.1f} s (revision lookups + upserts of the "
        f"same records, made beforehand); 2 workers can reach at best "
        f"{one.seconds / writer_seconds:.2f}x the 1 process; 1 process: {cpu_shares(one)}"
    )


def generate(workdir: Path, lines: int) -> Path:
    started = time.perf_counter()
    # Compressed as hard as the real dumps are, so reading it costs what reading them does.
    dump = write_dump(
        workdir / f"ol_dump_editions_{lines}.txt.gz",
        generated_lines("editions", lines),
        compresslevel=6,
    )
    size = dump.stat().st_size / 1024**2
    took = time.perf_counter() - started
    print(f"generated {lines:>9,} lines  {size:7.1f} MiB gzip  ({took:.1f} s)")
    return dump


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="speed run and large RSS size")
    parser.add_argument("--small", type=int, default=20_000, help="small RSS size")
    parser.add_argument("--mongo-lines", type=int, default=50_000, help="0 skips MongoDB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        small_dump = generate(workdir, args.small)
        large_dump = generate(workdir, args.lines)

        ceiling = parse_only(large_dump)
        mapped = parse_and_map(large_dump)
        print(f"parse-only loop       {ceiling:>9,.0f} records/s  (ceiling)")
        print(
            f"parse + map (spider)  {mapped:>9,.0f} records/s  ({mapped / ceiling:.2f} of ceiling)"
        )
        bare = without_scrapy(large_dump, workdir / "bare.sqlite3")
        print(
            f"import without Scrapy {bare:>9,.0f} records/s  ({bare / ceiling:.2f} of ceiling: "
            "parse, map, validate, record, SQLite upsert in one thread)"
        )

        reimports("SQLite ", large_dump, args.lines, crawl_env(), workdir)

        small = crawl(small_dump, crawl_env(SQLITE_PATH=str(workdir / "small.sqlite3")), workdir)
        large = crawl(large_dump, crawl_env(SQLITE_PATH=str(workdir / "large.sqlite3")), workdir)
        for run in (small, large):
            print(f"import -> SQLite      {describe(run)}")

        if args.mongo_lines:
            mongo_dump = (
                large_dump
                if args.mongo_lines == args.lines
                else generate(workdir, args.mongo_lines)
            )
            with running_mongo(workdir) as uri:
                reimports(
                    "MongoDB",
                    mongo_dump,
                    args.mongo_lines,
                    crawl_env(MONGO_URI=uri),
                    workdir,
                    server_pid(workdir),
                    writer_alone(mongo_dump, MongoStore(uri, "bench_writer")),
                )

        growth = large.peak_rss_mb - small.peak_rss_mb
        verdict_text = verdict(growth < RSS_GROWTH_LIMIT_MB)
        print(
            f"peak RSS {args.small:,} lines: {small.peak_rss_mb:.0f} MB, "
            f"{args.lines:,} lines: {large.peak_rss_mb:.0f} MB; growth {growth:+.1f} MB, "
            f"limit < {RSS_GROWTH_LIMIT_MB:.0f} MB ({growth / RSS_GROWTH_LIMIT_MB:.2f} of it)"
            f"  {verdict_text}"
        )


if __name__ == "__main__":
    main()
