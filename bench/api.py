"""Read API latency on a 500k-movie SQLite mirror, with and without the read indexes.

p50 / p95 of the queries behind ``/movies/search``, ``/movies?genre=&year=`` (sorted by
popularity) and ``/movies/{id}``, run through the API's own ``Mirror`` first on the bare
store (the same queries as plain SQL: a scan with ``LIKE`` and ``json_each``), then after
``ensure_read_indexes``. The figure to watch is each query's p50 without the indexes as a
ratio of its p50 with them (higher is better; the detail is a primary-key read either way,
so its ratio stays near 1). Also printed: the time to build the indexes on 500k records
and what their triggers add to a crawler's upserts.

    python bench/api.py [--records 500000] [--queries 200] [--baseline-queries 12]

SQLite only: it is the default store and the one whose indexes this project builds by hand
(MongoDB gets ordinary ``create_index`` calls; nx-27017, the test wire server, is too slow
to hold 500k records in a benchmark of minutes).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contentcrawl.api.kinds import KINDS
from contentcrawl.api.mirror import Mirror
from contentcrawl.api.read_indexes import ensure_read_indexes
from contentcrawl.store import Record
from contentcrawl.store.base import canonical_json, content_hash
from contentcrawl.store.sqlite import SqliteStore

GENRES = [
    *("Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama"),
    *("Family", "Fantasy", "History", "Horror", "Music", "Mystery", "Romance"),
    *("Science-Fiction", "Thriller", "War", "Western", "TV-Movie"),
]
LANGUAGES = ("en", "fr", "de", "ja", "es", "it", "ko", "hi", "ru", "pt")
STATUSES = ("Released", "Released", "Released", "Post Production", "Planned")
NOW = "2024-05-01T00:00:00Z"


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Pronounceable made-up words, so a title word matches a few hundred titles of 500k."""
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        length = rng.randint(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(length)))
    return sorted(words)


def movie(tmdb_id: int, words: list[str], rng: random.Random) -> dict[str, Any]:
    """A movie record of about 1 kB, shaped as the TMDB mapper stores it."""
    title = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4))).title()
    return {
        "tmdb_id": tmdb_id,
        "title": title,
        "original_title": title if rng.random() < 0.8 else rng.choice(words).title(),
        "original_language": rng.choice(LANGUAGES),
        "status": rng.choice(STATUSES),
        "release_date": f"{rng.randint(1920, 2024)}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}",
        "popularity": round(rng.expovariate(0.1), 3),
        "vote_average": round(rng.uniform(1, 10), 1),
        "vote_count": rng.randint(0, 30000),
        "genres": [
            {"id": GENRES.index(g), "name": g} for g in rng.sample(GENRES, rng.randint(1, 3))
        ],
        "overview": " ".join(rng.choice(words) for _ in range(40)),
        "credits": {
            "cast": [
                {"id": rng.randint(1, 2_000_000), "name": rng.choice(words).title(), "order": i}
                for i in range(5)
            ],
            "crew": [{"id": rng.randint(1, 2_000_000), "job": "Director", "name": "X"}],
        },
        "poster_url": f"https://image.tmdb.org/t/p/original/{tmdb_id}.jpg",
        "images": [],
    }


def crawled(tmdb_id: int, words: list[str]) -> Record:
    """A record a crawler adds meanwhile; no query of the benchmark can match it."""
    content = movie(tmdb_id, words, random.Random(tmdb_id))
    # No made-up word starts with x, and queries ask for years from 1920 on.
    content["title"] = content["original_title"] = f"Xeno {tmdb_id}"
    content["release_date"] = "1900-01-01"
    return Record(content, "tmdb")


def rows(count: int, words: list[str], seed: int) -> Iterator[tuple[Any, ...]]:
    """Rows of the store's ``movies`` table, written directly (no upsert) to save minutes."""
    rng = random.Random(seed)
    for tmdb_id in range(1, count + 1):
        content = movie(tmdb_id, words, rng)
        digest = content_hash(content)
        content["_meta"] = {
            "source": "tmdb",
            "fetched_at": NOW,
            "first_seen": NOW,
            "updated_at": NOW,
            "hash": digest,
            "revision": None,
        }
        yield str(tmdb_id), canonical_json(content), digest, None, NOW, NOW


def fill(store: SqliteStore, count: int, words: list[str]) -> float:
    started = time.perf_counter()
    connection = store.connection
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO movies (key, doc, hash, revision, first_seen, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows(count, words, seed=1),
    )
    connection.execute("COMMIT")
    return time.perf_counter() - started


def timed(function: Callable[[Any], Any], arguments: list[Any]) -> tuple[list[float], list[Any]]:
    """Milliseconds of each call, and each call's answer."""
    times, answers = [], []
    for argument in arguments:
        started = time.perf_counter()
        answers.append(function(argument))
        times.append((time.perf_counter() - started) * 1000)
    return times, answers


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


# -- the same queries without the read indexes: what SQLite does with the bare store ----------

SCAN_SEARCH = (
    "SELECT key FROM movies WHERE deleted_at IS NULL AND "
    "(' ' || lower(json_extract(doc, '$.title')) LIKE ? "
    "OR ' ' || lower(json_extract(doc, '$.original_title')) LIKE ?) "
    "ORDER BY json_extract(doc, '$.popularity') DESC, json_extract(doc, '$.tmdb_id') DESC "
    "LIMIT 20"
)
SCAN_LIST = (
    "SELECT key FROM movies WHERE deleted_at IS NULL "
    "AND json_extract(doc, '$.release_date') >= ? AND json_extract(doc, '$.release_date') < ? "
    "AND EXISTS (SELECT 1 FROM json_each(doc, '$.genres') "
    "WHERE json_extract(value, '$.name') = ?) "
    "ORDER BY json_extract(doc, '$.popularity') DESC, json_extract(doc, '$.tmdb_id') DESC "
    "LIMIT 20"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=200, help="per query kind, indexed")
    parser.add_argument("--baseline-queries", type=int, default=12, help="per kind, no index")
    args = parser.parse_args()
    rng = random.Random(7)
    words = vocabulary(3000, rng)
    kind = KINDS["movies"]
    with tempfile.TemporaryDirectory() as workdir:
        store = SqliteStore(Path(workdir) / "mirror.sqlite3")
        store.open()
        seconds = fill(store, args.records, words)
        size = (Path(workdir) / "mirror.sqlite3").stat().st_size / 2**20
        print(f"{args.records} movies written in {seconds:.1f}s ({size:.0f} MiB)")
        mirror = Mirror(store, Path(workdir) / "images")
        searches = [rng.choice(words) for _ in range(args.queries)]
        lists = [(rng.choice(GENRES), rng.randint(1920, 2024)) for _ in range(args.queries)]
        details = [str(rng.randint(1, args.records)) for _ in range(args.queries)]
        base = args.baseline_queries
        connection = store.connection

        def scan_search(word: str) -> list[str]:
            pattern = f"% {word}%"
            return [key for (key,) in connection.execute(SCAN_SEARCH, (pattern, pattern))]

        def scan_list(query: tuple[str, int]) -> list[str]:
            genre, year = query
            found = connection.execute(SCAN_LIST, (f"{year}", f"{year + 1}", genre))
            return [key for (key,) in found]

        def search(word: str) -> list[str]:
            return [item["id"] for item in mirror.search(kind, word, 1, 20).items]

        def listing(query: tuple[str, int]) -> list[str]:
            genre, year = query
            page = mirror.list(kind, {"genre": genre, "year": year}, "popularity", 1, 20)
            return [item["id"] for item in page.items]

        def detail(record_id: str) -> str:
            return mirror.detail(kind, record_id)["title"]

        without = {
            "search": timed(scan_search, searches[:base]),
            "list": timed(scan_list, lists[:base]),
            "detail": timed(detail, details),
        }
        new = [crawled(args.records + i, words) for i in range(1, 5001)]
        started = time.perf_counter()
        for start in range(0, 2500, 500):
            store.upsert_many("movies", new[start : start + 500])
        upsert_bare = time.perf_counter() - started

        started = time.perf_counter()
        ensure_read_indexes(store)
        build = time.perf_counter() - started
        print(f"read indexes built in {build:.1f}s")

        started = time.perf_counter()
        for start in range(2500, 5000, 500):
            store.upsert_many("movies", new[start : start + 500])
        upsert_indexed = time.perf_counter() - started

        with_indexes = {
            "search": timed(search, searches),
            "list": timed(listing, lists),
            "detail": timed(detail, details),
        }
        # The comparison is fair only if both answer the same.
        assert without["search"][1] == with_indexes["search"][1][:base], "search answers differ"
        assert without["list"][1] == with_indexes["list"][1][:base], "list answers differ"
        hits = statistics.mean(len(answer) for answer in with_indexes["search"][1])
        print(f"search: one made-up word, {hits:.1f} results of 20 on average")
        print(
            f"{'query':<8} {'p50 ms':>9} {'p95 ms':>9} {'p50 no index':>13} {'p95 no index':>13}"
            f" {'ratio p50':>10}"
        )
        for name in ("search", "list", "detail"):
            p50, p95 = percentiles(with_indexes[name][0])
            bare50, bare95 = percentiles(without[name][0])
            print(
                f"{name:<8} {p50:>9.2f} {p95:>9.2f} {bare50:>13.2f} {bare95:>13.2f} "
                f"{bare50 / p50:>9.0f}x"
            )
        print(
            f"2500 new records upserted in {upsert_bare:.2f}s without the read indexes, "
            f"{upsert_indexed:.2f}s with their triggers "
            f"(x{upsert_indexed / upsert_bare:.2f})"
        )
        store.close()


if __name__ == "__main__":
    main()
