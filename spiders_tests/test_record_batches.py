"""A dump spider's record batches seen per record by Scrapy's feed exports and closespider."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from scrapy.utils.defer import deferred_f_from_coro_f

from contentcrawl.batches import ItemBatch, PreparedBatch
from contentcrawl.items import BookItem, MovieItem
from contentcrawl.records import to_record
from contentcrawl.spiders.openlibrary_books import OpenLibraryBooksSpider
from spiders_tests.crawling import crawl
from spiders_tests.fakes.openlibrary import generated_lines, write_dump

LINES = 2_500  # two full batches of 1,000 and a part one


def store_settings(tmp_path: Path) -> dict[str, str]:
    return {"MONGO_URI": "", "SQLITE_PATH": str(tmp_path / "s.sqlite3")}


@deferred_f_from_coro_f
async def test_feed_exports_write_one_entry_per_record(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", LINES))
    feeds = {
        str(tmp_path / "books.jsonl"): {"format": "jsonlines"},
        # Split by records, and filtered on the record's own class.
        str(tmp_path / "books-%(batch_id)d.csv"): {
            "format": "csv",
            "fields": ["ol_key", "title"],
            "batch_item_count": 1_000,
            "item_classes": ["contentcrawl.items.BookItem"],
        },
    }
    crawler = await crawl(
        OpenLibraryBooksSpider, {**store_settings(tmp_path), "FEEDS": feeds}, dump=str(dump)
    )

    assert crawler.stats.get_value("store/books/inserted") == LINES
    lines = (tmp_path / "books.jsonl").read_text().splitlines()
    books = [json.loads(line) for line in lines]
    assert len({book["ol_key"] for book in books}) == LINES
    assert all(book["title"] for book in books)
    rows_per_file = []
    for batch_id in (1, 2, 3):
        with (tmp_path / f"books-{batch_id}.csv").open(newline="") as file:
            rows_per_file.append(list(csv.DictReader(file)))
    assert [len(rows) for rows in rows_per_file] == [1_000, 1_000, 500]
    assert [row["ol_key"] for rows in rows_per_file for row in rows] == [
        book["ol_key"] for book in books
    ]
    assert not (tmp_path / "books-4.csv").exists()


@deferred_f_from_coro_f
async def test_closespider_itemcount_counts_records(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "editions.txt.gz", generated_lines("editions", 20_000))
    settings = {**store_settings(tmp_path), "CLOSESPIDER_ITEMCOUNT": 1_500}
    crawler = await crawl(OpenLibraryBooksSpider, settings, dump=str(dump))

    stats = crawler.stats.get_stats()
    assert stats["finish_reason"] == "closespider_itemcount"
    # What was in the pipelines when the count was reached is still stored.
    pending = settings.get("DUMP_MAX_PENDING_ITEMS", 4) * 1_000
    assert 1_500 <= stats["store/books/inserted"] <= 1_500 + pending
    assert stats["item_scraped_count"] == stats["store/books/inserted"]


def test_batches_join_only_batches_of_their_kind() -> None:
    """What lets a dump import send the records of short chunks as one batch."""
    movie = MovieItem(tmdb_id=1, title="One")
    book = BookItem(ol_key="/books/OL1M", title="Two")
    joined = ItemBatch([movie]).joined(ItemBatch([book]))
    assert joined is not None
    assert joined.items == [movie, book]

    movies = PreparedBatch(MovieItem, [to_record(movie)])
    more_movies = PreparedBatch(MovieItem, [to_record(MovieItem(tmdb_id=2, title="2"))])
    both = movies.joined(more_movies)
    assert isinstance(both, PreparedBatch)
    assert [record.key("tmdb_id") for record in both.records] == [1, 2]
    assert movies.joined(PreparedBatch(BookItem, [to_record(book)])) is None
    # Records already made do not join items still to be validated, nor the other way.
    assert movies.joined(ItemBatch([movie])) is None
    assert ItemBatch([movie]).joined(movies) is None
